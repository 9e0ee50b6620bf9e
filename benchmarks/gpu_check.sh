#!/usr/bin/env bash
# The prepared GPU check: everything that needs a CUDA device, in one run of under 8 minutes.
#
#   benchmarks/gpu_check.sh [OUTDIR]     default OUTDIR: gpu-check/
#   PYTHON=...        the interpreter (default python3)
#   STEPS="train bench-training-step"    only these steps (e.g. to rerun the ones that failed)
#   DEVICE=cpu        a dry run of the mechanics on a machine without a GPU (default cuda)
#
# Steps (each under its own time limit; each step's output goes to OUTDIR/<step>.log and a line
# "step rc seconds" to OUTDIR/summary.txt, so a step that fails or runs out of time loses nothing
# of the others):
#   env        torch, CUDA and the device as torch sees them; nvidia-smi
#   tests      the default test suite on the GPU machine (pytest-xdist when installed): every CLI
#              test runs with --device auto, i.e. on CUDA, and the tests marked for CUDA run
#   train      one epoch of the quick recipe on CUDA with AMP + channels_last and one in fp32;
#              then `evaluate --all` of the AMP model on CUDA and on the CPU, and every metric of
#              the two records compared (TF32 convolutions may move a few images, nothing more)
#   bench-*    the benchmarks that take --device, on CUDA (quick mode)
#   quickstart the whole `cutmix-eval quickstart` (4 methods x 3 seeds, every analysis, the report)
#              on the device, timed: the README's claim of under 3 minutes on a GPU (not in the
#              default STEPS, which must fit 8 minutes: add it with STEPS="... quickstart")
#
# The project must be importable by PYTHON (installed, or this checkout: PYTHONPATH is set to it).
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}
STEPS=${STEPS:-env tests train bench-training-step bench-full-evaluation}
OUTDIR=${1:-gpu-check}
mkdir -p "$OUTDIR"
export PY DEVICE OUTDIR PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
: > "$OUTDIR/summary.txt"

step() {  # step NAME SECONDS COMMAND...: run under a time limit (functions too), log, summarize
    local name=$1 limit=$2 start rc
    shift 2
    [[ " $STEPS " == *" $name "* ]] || return 0
    start=$(date +%s)
    timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" > "$OUTDIR/$name.log" 2>&1
    rc=$?
    echo "$name rc=$rc $(( $(date +%s) - start ))s$([ $rc = 124 ] && echo " (ran past ${limit}s)")" \
        | tee -a "$OUTDIR/summary.txt"
    tail -n 4 "$OUTDIR/$name.log"
}

env_report() {
    "$PY" -c "import torch, sys; print(sys.version); print('torch', torch.__version__, 'cuda', torch.version.cuda,
'available', torch.cuda.is_available()); print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no device')"
    nvidia-smi || true
}

run_tests() {
    local parallel=()
    "$PY" -c "import xdist" 2>/dev/null && parallel=(-n "$(( $(nproc) > 12 ? 12 : $(nproc) ))")
    "$PY" -m pytest -q "${parallel[@]}" --tb=short -p no:cacheprovider tests
}

train_and_compare() {
    local work
    work=$(mktemp -d)
    "$PY" -m cutmix_eval train --method cutmix --data synthetic --epochs 1 --amp --channels-last --device "$DEVICE" \
        --out "$work/amp" --json | tail -n 1 > "$work/amp.json" || return 1
    "$PY" -m cutmix_eval train --method cutmix --data synthetic --epochs 1 --no-amp --no-channels-last --device "$DEVICE" \
        --out "$work/fp32" --json | tail -n 1 > "$work/fp32.json" || return 1
    for device in "$DEVICE" cpu; do
        "$PY" -m cutmix_eval evaluate --ckpt "$work/amp/last.pth" --data synthetic --all --device $device \
            --results "$work/results-$device" --json | tail -n 1 > "$work/eval-$device.json" || return 1
    done
    "$PY" - "$work" "$DEVICE" <<'EOF'
import json, math, sys
from pathlib import Path

work, device = Path(sys.argv[1]), sys.argv[2]
for name in ("amp", "fp32"):
    run = json.loads((work / f"{name}.json").read_text())["runs"][0]
    print(f"train {name}: {run['minutes'] * 60:.1f} s for 1 epoch, top-1 error {run['final top-1 error (%)']:.2f}%")
def metrics(tree, path=""):
    """(path, number) for every numeric metric of every record in an `evaluate --json` object."""
    if isinstance(tree, dict) and "metrics" in tree:
        for key, value in tree["metrics"].items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                yield f"{path}/{key}", value
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from metrics(value, f"{path}/{key}")


ours, cpu = (dict(metrics(json.loads((work / f"eval-{d}.json").read_text()))) for d in (device, "cpu"))
worst = max(abs(value - cpu[key]) for key, value in ours.items())
for key, value in ours.items():
    if abs(value - cpu[key]) > 1e-3:
        print(f"  {key}: {device} {value:.6g} vs cpu {cpu[key]:.6g}")
print(f"evaluate --all on {device} vs CPU: {len(ours)} metrics, largest difference {worst:.3g}")
sys.exit(0 if worst <= 0.01 else 1)
EOF
}

quickstart_timed() {
    local work
    work=$(mktemp -d)
    local TIMEFORMAT="quickstart wall time %R s"
    time "$PY" -m cutmix_eval quickstart --device "$DEVICE" --out "$work/report" --checkpoints "$work/ckpt" \
        2>&1 | grep -E "^\[|^total|report:"
}

export -f env_report run_tests train_and_compare quickstart_timed
step env 30 env_report
step tests 300 run_tests
step train 120 train_and_compare
step bench-training-step 60 "$PY" benchmarks/bench_training_step.py --quick --device "$DEVICE"
step bench-full-evaluation 75 "$PY" benchmarks/bench_full_evaluation.py --quick --device "$DEVICE"
step quickstart 300 quickstart_timed
