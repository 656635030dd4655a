"""ONE registry of benchmark and parity cases: shapes, dtypes and the presets.

Everything that measures or compares backends reads its grid from here: the
``mlpbench bench`` and ``mlpbench parity`` commands, the asv suite in
``bench/``, the pytest-benchmark suite in ``tests/benchmarks/`` and the parity
tests. Nothing here names a backend's code; presets only list default backend
names (``None`` means every available backend).

Presets
-------
``quick``     the README's main job: NumPy + Numba, a small float64 grid (< 1 min on 2 cores, JIT included)
``standard``  the step grid: features 32, N in {1, 64, 1024, 16384}, H in {4, 64, 512, 2048}, both dtypes
``full``      a wider grid, ops forward, backward, step and train, every available backend
``gpu``       GPU-sized points (N = 65536, D = 1024, H = 4096, float32) for ``bench/gpu_check.sh``
``peers``     the jax and torch backends beside plain code of their own library (reference rows
              ``idiomatic-*``), on the lab and the step at N=16384, [32, 2048, 1], both dtypes
``lab``       the lab's workload only (AND, 5000 epochs, float64): numpy vs numba[loop] vs jax vs torch
              (``--backends numpy,cupy,torch`` on a GPU machine: the GPU lab timing)
``minibatch`` op ``epoch`` (one shuffled pass of mini-batch SGD): N = 16384, ``[64, H, 10]``, H in {64, 512},
              batch size in {16, 64, 256, 1024}, both dtypes, softmax head; every available backend whose
              ``outputs`` include softmax, against numpy, plus scikit-learn's ``MLPClassifier`` as an external
              reference row (``references.py``; skipped with its reason when scikit-learn is missing)

Every preset also times the lab (AND, ``[2, 4, 1]``, lr 0.1, 5000 epochs, op ``train``).

Ops: ``forward``, ``backward``, ``step`` (one full-batch update), ``train`` (``epochs`` epochs) and
``epoch`` (one epoch: full batch, or ``N / batch_size`` mini-batch updates when the case has a
``batch_size``). ``batch_size`` applies to ``train`` and ``epoch`` only; ``output`` is the head.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..core.validation import DTYPES, OUTPUTS, check_choice

OPS = ("forward", "backward", "step", "train", "epoch")
#: the ops a ``batch_size`` applies to (the others are one full-batch pass)
BATCHED_OPS = ("train", "epoch")
DTYPE_SHORT = {"float64": "f64", "float32": "f32"}

#: learning rate and reduction used when timing synthetic cases: stable for any N
TIMING_LR = 0.01
TIMING_REDUCTION = "mean"


@dataclass(frozen=True)
class LabRun:
    """One of the lab's runs: the data, the net and its training settings."""

    dataset: str
    epochs: int
    lr: float = 0.1
    seed: int = 42
    layer_sizes: tuple = (2, 4, 1)


#: the lab's main run (AND, section 6) and its XOR challenge
LABS = {"and": LabRun("and", 5000), "xor": LabRun("xor", 8000)}


@dataclass(frozen=True)
class Case:
    """One timed point: an op on ``n_samples`` rows through ``layer_sizes`` in ``dtype``."""

    op: str
    n_samples: int
    layer_sizes: tuple
    dtype: str
    activation: str = "relu"
    epochs: int = 1  # train only
    lr: float = TIMING_LR
    grad_reduction: str = TIMING_REDUCTION
    dataset: str | None = None  # "and" / "xor" for the lab; None: seeded random data
    seed: int = 0
    batch_size: int | None = None  # train / epoch only; None: full batch
    output: str = "sigmoid"  # the head: "sigmoid" or "softmax" (one-hot targets)

    def __post_init__(self):
        if self.op not in OPS:
            raise ValueError(f"op must be one of {list(OPS)}; got {self.op!r}")
        if self.output not in OUTPUTS:
            raise ValueError(f"output must be one of {list(OUTPUTS)}; got {self.output!r}")
        if self.batch_size is not None:
            if isinstance(self.batch_size, bool) or not isinstance(self.batch_size, (int, np.integer)) \
                    or self.batch_size < 1:
                raise ValueError(f"batch_size must be None or an int >= 1; got {self.batch_size!r}")
            if self.op not in BATCHED_OPS:
                raise ValueError(f"batch_size applies to ops {list(BATCHED_OPS)} only; got op {self.op!r}")

    @property
    def hidden(self) -> int:
        """The widest hidden layer (the grid's H); the output size for a net with no hidden layer."""
        inner = self.layer_sizes[1:-1]
        return max(inner) if inner else self.layer_sizes[-1]

    @property
    def features(self) -> int:
        return self.layer_sizes[0]

    @property
    def label(self) -> str:
        """Short name, the same for every backend: the pytest-benchmark group and the table's case column."""
        sizes = "-".join(map(str, self.layer_sizes))
        short = DTYPE_SHORT.get(self.dtype, self.dtype)
        if self.dataset:
            return f"lab-{self.dataset} {short} {sizes} x{self.epochs}"
        extra = f" x{self.epochs}" if self.op == "train" else ""
        act = "" if self.activation == "relu" else f" {self.activation}"
        batches = "" if self.batch_size is None else f" B={self.batch_size}"
        head = "" if self.output == "sigmoid" else f" {self.output}"
        return f"{self.op} {short} N={self.n_samples}{batches} {sizes}{act}{head}{extra}"

    def key(self) -> tuple:
        """What identifies the point across runs (``--compare`` matches on it, with the backend)."""
        return (self.op, self.dtype, self.n_samples, tuple(self.layer_sizes), self.activation, self.epochs,
                self.dataset or "", self.batch_size, self.output)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["layer_sizes"] = list(self.layer_sizes)
        return d


def lab_case(name="and", dtype="float64") -> Case:
    """The lab's training run as a timed ``train`` case."""
    run = LABS[name]
    return Case("train", 4, tuple(run.layer_sizes), dtype, epochs=run.epochs, lr=run.lr, grad_reduction="sum",
                dataset=run.dataset, seed=run.seed)


@dataclass(frozen=True)
class ParityCase:
    """One parity configuration: compared on forward, grads, params after ``steps`` steps and ``train``.

    ``output`` is the head; with a ``batch_size``, ``train`` runs ``steps`` epochs of mini-batches
    (shuffled by the case's seed), so the trajectory compared is the mini-batch one.
    """

    layer_sizes: tuple
    n_samples: int
    activation: str = "relu"
    grad_reduction: str = "sum"
    steps: int = 3
    output: str = "sigmoid"
    batch_size: int | None = None

    @property
    def label(self) -> str:
        sizes = "-".join(map(str, self.layer_sizes))
        head = "" if self.output == "sigmoid" else f"/{self.output}"
        batches = "" if self.batch_size is None else f" B={self.batch_size}"
        return f"{self.activation}/{self.grad_reduction}{head} N={self.n_samples}{batches} {sizes}"


#: mini-batch trajectories and the softmax head: several depths, batch sizes that do and do not divide N
_PARITY_WORKLOAD = (
    ParityCase((8, 16, 3), 37, "tanh", "mean", output="softmax"),
    ParityCase((8, 16, 3), 37, "tanh", "mean", output="softmax", batch_size=10),
    ParityCase((6, 12, 2), 40, "relu", "mean", batch_size=8),
    ParityCase((5, 12, 4), 50, "sigmoid", "sum", output="softmax", batch_size=16),
    ParityCase((16, 32, 24, 10), 64, "tanh", "mean", output="softmax", batch_size=64),
    ParityCase((12, 16, 16, 8, 6), 90, "tanh", "mean", output="softmax", batch_size=7),
    # big enough batches for numba's threaded kernel (``backends/numba/minibatch.py``: ``parallel_batches``),
    # a partial last batch
    ParityCase((64, 512, 10), 200, "relu", "mean", output="softmax", batch_size=64),
)


_PARITY_QUICK = (
    ParityCase((2, 4, 1), 4),
    ParityCase((32, 64, 1), 64, "tanh"),
    ParityCase((16, 32, 24, 1), 100, "sigmoid", "mean"),
    ParityCase((8, 16, 3), 33, "relu", "mean"),
    ParityCase((32, 512, 1), 256, "relu"),
) + _PARITY_WORKLOAD
_PARITY_STANDARD = _PARITY_QUICK + (
    ParityCase((32, 2048, 1), 1024, "tanh", "mean"),
    ParityCase((64, 256, 128, 1), 2048, "tanh", "mean"),
)
_PARITY_GPU = _PARITY_QUICK + (ParityCase((1024, 4096, 1), 2048, "tanh", "mean", steps=2),)


#: sweeps over the grid, each with freshly prepared subjects, pooled per point (``sweep.run_sweep``): a preset's
#: default (``Preset.passes``, ``bench --passes``)
PASSES = 2


@dataclass(frozen=True)
class Preset:
    """A named sweep: the grid, default backends, timing budget and parity cases."""

    name: str
    backends: tuple | None  # None: every available backend
    batch: tuple
    hidden: tuple
    features: tuple
    dtypes: tuple
    ops: tuple
    min_time: float  # seconds each sample lasts at least (calls are batched to reach it)
    max_time: float  # seconds of interleaved rounds a point may take when its verdicts are not firm sooner
    labs: tuple = ("and",)
    grid: bool = True  # False: only the labs and the extra cases (the ``lab`` preset)
    train_epochs: int = 100  # epochs of a synthetic ``train`` case
    parity: tuple = _PARITY_QUICK
    extra: tuple = field(default=())  # further Cases appended to the grid
    batch_sizes: tuple = (None,)  # mini-batch sizes of the ops in BATCHED_OPS (None: full batch)
    output: str = "sigmoid"  # the grid's head
    n_out: int = 1  # output units (classes for softmax)
    references: tuple = ()  # external reference rows (``references.REFERENCES`` names) timed beside the backends
    passes: int = PASSES  # sweeps over the grid, pooled per point (``--passes``'s default)

    def describe(self) -> dict:
        d = asdict(self)
        d["parity"] = [c.label for c in self.parity]
        d["extra"] = [c.label for c in self.extra]
        return d


PRESETS = {
    # float64 only: a fresh Numba compiles its kernels once per dtype (about 30 s on 2 cores); add
    # ``--dtype float64,float32`` for both
    "quick": Preset("quick", ("numpy", "numba"), (1, 64, 1024), (4, 64, 512), (32,), ("float64",), ("step",),
                    min_time=0.002, max_time=1.5),
    # three passes, the same time per point: its between-pass variance from 2 degrees of freedom instead of 1.
    # Two back-to-back runs on the 2-core AMD EPYC VM, the same afternoon: 2 passes, coverage of each other's
    # ratios 90.7%, unresolved 41 / 36 of 102, 180 / 165 s; 3 passes 98.5%, 37 / 38, 188 / 195 s
    "standard": Preset("standard", None, (1, 64, 1024, 16384), (4, 64, 512, 2048), (32,), DTYPES, ("step",),
                       min_time=0.005, max_time=2.5, parity=_PARITY_STANDARD, passes=3),
    "full": Preset("full", None, (1, 16, 64, 256, 1024, 4096, 16384, 65536), (4, 16, 64, 256, 512, 1024, 2048, 4096),
                   (32, 256), DTYPES, ("forward", "backward", "step", "train"), min_time=0.02, max_time=10.0,
                   labs=("and", "xor"), parity=_PARITY_STANDARD),
    "gpu": Preset("gpu", None, (4096, 16384, 65536), (4096,), (1024,), ("float32",), ("step",),
                  min_time=0.01, max_time=3.0, parity=_PARITY_GPU,
                  extra=(Case("forward", 65536, (1024, 4096, 1), "float32"),
                         Case("step", 16384, (1024, 4096, 1), "float64"),
                         Case("train", 16384, (1024, 4096, 1), "float32", epochs=5),
                         lab_case("and", "float64"))),
    "lab": Preset("lab", ("numpy", "numba[loop]", "jax", "torch"), (4,), (4,), (2,), ("float64",), ("train",),
                  min_time=0.05, max_time=5.0, grid=False),
    # the jax and torch backends beside plain code of their own library (``references.py``: idiomatic-*), on
    # the lab and one large step, both dtypes
    "peers": Preset("peers", ("numpy", "torch", "jax"), (16384,), (2048,), (32,), DTYPES, ("step",), min_time=0.02,
                    max_time=4.0, references=("idiomatic-jax", "idiomatic-torch", "idiomatic-torch.compile")),
    # an epoch is 16 to 1024 updates (6 to 300 ms); backends=None here means every available backend whose
    # ``outputs`` include the preset's head (``default_backends``). After a call on two BLAS threads,
    # OpenBLAS's idle worker spins about 0.1 s, and a threaded epoch right after it pays for that (numba,
    # float32, H=512, batch 64, samples of one epoch right after NumPy's: 28 to 97 ms, median 55; with 0.2 s
    # samples: 28 to 35 ms, median 30, one engine run each, without the sweep's settling pause). The sweep
    # now pauses up to ``SWEEP_SETTLE_S`` (0.1 s) before each sample, and its verdicts carry the between-pass
    # variance with follow-up passes where they are open: samples of 0.1 s (was 0.2 s: the minimum rounds of
    # 6 subjects then cost about 17 s a point, most of the preset's 450 s) and a cap of 6 s a point.
    "minibatch": Preset("minibatch", None, (16384,), (64, 512), (64,), DTYPES, ("epoch",), min_time=0.1,
                        max_time=6.0, batch_sizes=(16, 64, 256, 1024), output="softmax", n_out=10,
                        references=("sklearn",)),
}


def get_preset(name) -> Preset:
    return PRESETS[check_choice("preset", name, PRESETS)]


def _check_values(name, values, allowed=None, positive=False):
    values = tuple(values)
    if not values:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        if allowed is not None and v not in allowed:
            raise ValueError(f"{name} must be among {list(allowed)}; got {v!r}")
        if positive and (not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1):
            raise ValueError(f"{name} must hold ints >= 1; got {v!r}")
    return values


def default_backends(preset, output=None) -> list[str]:
    """The preset's backends; for ``backends=None``, every registered one whose ``outputs`` include the head
    (``output``, else the preset's)."""
    p = get_preset(preset) if isinstance(preset, str) else preset
    if p.backends is not None:
        return list(p.backends)
    from ..backends import supporting

    return supporting(p.output if output is None else output)


def sweep(preset="quick", *, batch=None, hidden=None, features=None, dtypes=None, ops=None, activation="relu",
          labs=None, batch_sizes=None, output=None) -> list[Case]:
    """The preset's cases, with any axis overridden: ops x dtypes x features x batch x hidden (x batch sizes
    for ops ``train`` / ``epoch``), then the labs.

    ``batch`` is N, the rows of a case; ``batch_sizes`` the mini-batch sizes
    (``None`` in it: full batch), which apply to ``train`` and ``epoch`` only
    (a ``ValueError`` when no such op is swept). ``output`` is the head (the
    output layer has the preset's ``n_out`` units, at least 2 for softmax).
    The lab (op ``train``) is included when ``train`` is among the ops or no op
    override was given; ``labs=()`` leaves it out.
    """
    p = get_preset(preset) if isinstance(preset, str) else preset
    grid_overridden = any(v is not None for v in (batch, hidden, features, batch_sizes, output))
    dtypes_given = dtypes
    batch = _check_values("batch", p.batch if batch is None else batch, positive=True)
    hidden = _check_values("hidden", p.hidden if hidden is None else hidden, positive=True)
    features = _check_values("features", p.features if features is None else features, positive=True)
    dtypes = _check_values("dtype", p.dtypes if dtypes is None else dtypes, DTYPES)
    op_list = _check_values("op", p.ops if ops is None else ops, OPS)
    if batch_sizes is not None:
        batch_sizes = _check_values("batch_size", batch_sizes, positive=True)
        if not set(op_list) & set(BATCHED_OPS):
            raise ValueError(f"batch_size applies to ops {list(BATCHED_OPS)} only; the ops swept are {list(op_list)}")
    output = _check_values("output", (p.output if output is None else output,), OUTPUTS)[0]
    n_out = max(p.n_out, 2) if output == "softmax" else p.n_out
    cases = []
    for op in op_list if p.grid or grid_overridden else ():
        for dtype in dtypes:
            for d in features:
                for n in batch:
                    for h in hidden:
                        epochs = p.train_epochs if op == "train" else 1
                        for b in (batch_sizes or p.batch_sizes) if op in BATCHED_OPS else (None,):
                            cases.append(Case(op, int(n), (int(d), int(h), n_out), dtype, activation,
                                              epochs=epochs, batch_size=None if b is None else int(b),
                                              output=output))
    if not grid_overridden:  # the preset's extra points, unless an axis was narrowed past them
        cases.extend(c for c in p.extra
                     if (ops is None or c.op in op_list) and (dtypes_given is None or c.dtype in dtypes))
    lab_names = p.labs if labs is None else tuple(labs)
    if ops is None or "train" in op_list:
        for name in lab_names:
            for dtype in dtypes:
                cases.append(lab_case(name, dtype))
    return cases


def parity_cases(preset="quick") -> tuple:
    """The preset's parity configurations (the labs' trajectories are checked besides)."""
    return (get_preset(preset) if isinstance(preset, str) else preset).parity


def asv_grid() -> dict:
    """The asv / pytest-benchmark parameter grid: the quick preset's batch x hidden, in both dtypes."""
    p = PRESETS["quick"]
    return {"batch": p.batch, "hidden": p.hidden, "features": p.features[0], "dtypes": DTYPES}


def make_data(n_samples, layer_sizes, dtype="float64", seed=0, dataset=None, output="sigmoid"):
    """``(X, y)`` NumPy arrays for a case: the lab's logic table, or seeded random data.

    Random data: ``X ~ N(0, 1)``; ``y`` in {0, 1} with probability 1/2, or for
    ``output="softmax"`` one-hot rows of uniformly drawn classes (after the same ``X``).
    """
    dtype = np.dtype(dtype)
    if dataset is not None:
        from ..core.data import load

        X, y = load(dataset)
        return X.astype(dtype), y.astype(dtype)
    rng = np.random.RandomState(seed)
    X = rng.randn(n_samples, layer_sizes[0]).astype(dtype)
    if output == "softmax":
        k = layer_sizes[-1]
        return X, np.eye(k, dtype=dtype)[rng.randint(0, k, n_samples)]
    y = (rng.rand(n_samples, layer_sizes[-1]) > 0.5).astype(dtype)
    return X, y


def case_data(case: Case):
    """``make_data`` for a ``Case``."""
    return make_data(case.n_samples, case.layer_sizes, case.dtype, case.seed, case.dataset, case.output)


__all__ = ["BATCHED_OPS", "Case", "LABS", "LabRun", "OPS", "OUTPUTS", "PRESETS", "ParityCase", "Preset", "asv_grid",
           "case_data", "default_backends", "get_preset", "lab_case", "make_data", "parity_cases", "sweep"]
