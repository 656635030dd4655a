"""Forward, backward, a training step and the lab's 5000 epochs, per backend x batch x hidden x dtype."""

from mlpbench.suite import cases, parity
from mlpbench.measure import engine as measure, peaks as perf

from .common import BACKENDS, DTYPES, FEATURES, GRID, Prepared, backend_or_skip


class Ops:
    """One op on ``[features, hidden, 1]`` with ``batch`` rows (the quick preset's grid)."""

    params = (BACKENDS, list(GRID["batch"]), list(GRID["hidden"]), DTYPES)
    param_names = ("backend", "batch", "hidden", "dtype")
    timeout = 300

    def setup(self, backend, batch, hidden, dtype):
        sizes = [FEATURES, hidden, 1]
        self.ops = {op: Prepared(backend, batch, sizes, dtype, op=op) for op in ("forward", "backward", "step")}

    def time_forward(self, backend, batch, hidden, dtype):
        self.ops["forward"]()

    def time_backward(self, backend, batch, hidden, dtype):
        self.ops["backward"]()

    def time_train_step(self, backend, batch, hidden, dtype):
        self.ops["step"]()

    def peakmem_train_step(self, backend, batch, hidden, dtype):
        self.ops["step"]()


class Lab:
    """The lab: AND, ``[2, 4, 1]``, lr 0.1, 5000 epochs in one ``train`` call."""

    params = (BACKENDS, DTYPES)
    param_names = ("backend", "dtype")
    number = 1
    repeat = (2, 5, 10.0)
    timeout = 300

    def setup(self, backend, dtype):
        self.case = Prepared(backend, case=cases.lab_case("and", dtype))

    def time_lab_and_5000_epochs(self, backend, dtype):
        self.case()


class Parity:
    """Worst normwise error against the NumPy reference over the quick parity cases (tolerance: parity.py)."""

    params = (BACKENDS, DTYPES)
    param_names = ("backend", "dtype")
    timeout = 600

    def setup(self, backend, dtype):
        self.be = backend_or_skip(backend)

    def track_parity_error(self, backend, dtype):
        errors = [r.error for c in cases.parity_cases("quick")
                  for r in parity.check_backend(self.be, c.layer_sizes, c.n_samples, dtype, c.activation,
                                                c.grad_reduction, c.steps)]
        return max(errors)

    track_parity_error.unit = "relative error"


class Throughput:
    """GFLOP/s of a training step: analytic FLOPs over the median of the engine's samples (``measure.measure``)."""

    params = Ops.params
    param_names = Ops.param_names
    timeout = 300

    def setup(self, backend, batch, hidden, dtype):
        self.case = Prepared(backend, batch, [FEATURES, hidden, 1], dtype, op="step")

    def track_gflops_step(self, backend, batch, hidden, dtype):
        m = measure.measure([self.case.subject], control=False, min_time=0.01, max_time=2.0, max_rounds=8)
        return perf.flops_step(batch, self.case.layer_sizes) / m[self.case.subject.label].median / 1e9

    track_gflops_step.unit = "GFLOP/s"
