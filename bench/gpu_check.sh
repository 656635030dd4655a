#!/usr/bin/env bash
# The GPU checks in one run, from source, without network: bench/gpu_check.sh OUTDIR
#
#   env.txt            nvidia-smi, nvcc, Python / NumPy / CuPy / torch / Numba versions, `mlpbench backends`
#   gpu_tests.log      MLPBENCH_REQUIRE_GPU=1 pytest -m gpu (a missing GPU fails instead of skipping)
#   parity.log/.json   mlpbench parity --backends cupy,torch
#   lab_timing.log, lab/  mlpbench bench --preset lab: the lab's 5000 epochs, cupy persistent / graph / step
#                      and torch (CUDA) against numpy, with intervals and verdicts (lab/results.json)
#   bench.log, bench/  mlpbench bench --preset gpu --backends cupy,numpy,numba,torch
#   minibatch.log, minibatch/  mlpbench bench --preset minibatch (H=512, batch sizes 64 and 1024, float32,
#                      softmax epochs): cupy's replayed graph and torch against numba
#   summary.txt        one line per step: exit status and seconds
#
# Every step has its own time limit and the run goes on after a failure; the
# limits add up to under 6 minutes. Exit status: the number of failed steps.
set -u

OUT=${1:?usage: bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT" || exit 1
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.." || exit 1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
PY=${PYTHON:-python}
FAILED=0
: > "$OUT/summary.txt"

step() {  # step NAME LIMIT_S LOGFILE COMMAND...
    local name=$1 limit=$2 log=$3 start rc
    shift 3
    start=$(date +%s)
    echo "== $name (limit ${limit}s): $*" | tee -a "$OUT/summary.txt"
    timeout -k 5 "$limit" "$@" > "$log" 2>&1
    rc=$?
    [ "$rc" -eq 124 ] && echo "(timed out after ${limit}s)" >> "$log"
    [ "$rc" -ne 0 ] && FAILED=$((FAILED + 1))
    echo "   $name: rc=$rc in $(( $(date +%s) - start ))s -> $log" | tee -a "$OUT/summary.txt"
}

env_report() {
    echo "# date: $(date -u +%Y-%m-%dT%H:%M:%SZ)  host: $(hostname)"
    echo "# git: $(git rev-parse --short HEAD 2>/dev/null) $(git status --porcelain 2>/dev/null | wc -l) changed files"
    echo; echo "## nvidia-smi"; nvidia-smi 2>&1 || echo "nvidia-smi failed"
    echo; echo "## nvcc"; nvcc --version 2>&1 || echo "nvcc not found"
    echo; echo "## versions"
    "$PY" - <<'EOF'
import platform, importlib
print("python", platform.python_version(), platform.machine())
for name in ("numpy", "cupy", "torch", "numba", "scipy", "jax"):
    try:
        m = importlib.import_module(name)
    except Exception as exc:
        print(name, "not importable:", type(exc).__name__, (str(exc).splitlines() or [""])[0])
        continue
    try:
        extra = ""
        if name == "torch":
            extra = f" cuda={m.version.cuda} available={m.cuda.is_available()}"
        if name == "cupy":
            rt = m.cuda.runtime
            extra = f" runtime={rt.runtimeGetVersion()} driver={rt.driverGetVersion()} devices={rt.getDeviceCount()}"
    except Exception as exc:
        extra = f" ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
    print(name, m.__version__ + extra)
EOF
    echo; echo "## mlpbench backends"; "$PY" -m mlpbench backends
}

export -f env_report
export PY
step env 30 "$OUT/env.txt" bash -c env_report
step gpu_tests 110 "$OUT/gpu_tests.log" \
    env MLPBENCH_REQUIRE_GPU=1 "$PY" -m pytest -m gpu tests -q -p no:cacheprovider -rfEs
step parity 40 "$OUT/parity.log" "$PY" -m mlpbench parity --backends cupy,torch --json "$OUT/parity.json"
step lab_timing 40 "$OUT/lab_timing.log" \
    "$PY" -m mlpbench bench --preset lab --backends "numpy,cupy[*],torch" --max-time 2 --no-plots --out "$OUT/lab"
step bench 60 "$OUT/bench.log" \
    "$PY" -m mlpbench bench --preset gpu --backends cupy,numpy,numba,torch --out "$OUT/bench"
step minibatch 50 "$OUT/minibatch.log" \
    "$PY" -m mlpbench bench --preset minibatch --backends cupy,numba,torch --baseline numba --hidden 512 \
    --batch-size 64,1024 --dtype float32 --references none --no-lab --passes 1 --max-time 2 --no-plots \
    --out "$OUT/minibatch"

echo "failed steps: $FAILED" | tee -a "$OUT/summary.txt"
exit "$FAILED"
