#!/usr/bin/env bash
# The GPU measurements of docs/benchmarks.md in one bounded pass, for a short lease on a GPU machine:
# bf16 parity, throughput, the study-000 grid's wall time and packing, and a real Ray sweep at 1/4 GPU per trial.
#
#   benchmarks/gpu_session.sh [OUT_DIR] [DATA_DIR]
#
# Each step runs under its own time limit (seconds below) and writes its full output to OUT_DIR/<step>.txt, so
# a step cut short still leaves what it printed. Ray may come from RAY_SITE_TAR: a tar.xz of a site-packages
# folder (ray without ray/jars, plus what the machine lacks), unpacked onto PYTHONPATH; scripts/pack_device_site.sh
# builds it as .devray/site.tar.xz, and the data as .devdata/cifar-10-subset, here, before the lease. The grid runs at
# --scale 0.1 (5,000 images, 10 epochs) to fit a short lease; multiply by 10 for the full grid's training time.
# STEPS picks the steps (default: the first four). `STEPS="search_efficiency search_efficiency_grace3"` runs issue
# 23's search benchmark on 4,410 images of the subset, 8 trials per GPU, at ASHA grace 1 and then 3 (a call of its
# own): on 490 images, the CPU run's size, epoch 1 is eight optimizer steps (batch 64) and told ASHA nothing about the deep
# cells' lr.
set -uo pipefail
cd "$(dirname "$0")/.."
steps=" ${STEPS:-bf16_parity throughput grid_wall ray_sweep} "
known=" bf16_parity throughput grid_wall ray_sweep search_efficiency search_efficiency_grace3 "
for name in $steps; do
    [[ $known == *" $name "* ]] || { echo "error: STEPS: no step '$name' (steps:$known)" >&2; exit 2; }
done
out=${1:-${OUT:-gpu-out}}
data=${2:-../shared/data/cifar-10-subset}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -n "${RAY_SITE_TAR:-}" ]; then
    mkdir -p /tmp/site && tar -C /tmp/site -xJf "$RAY_SITE_TAR" && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc
  python3 -c "import sys, torch, ray; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(), 'ray', ray.__version__)"
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

step() {  # step NAME SECONDS COMMAND...: run it with a limit, keep its output, say how it ended; skip it unless in STEPS
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    [[ $steps == *" $name "* ]] || return 0
    timeout "$limit" "$@" >"$out/$name.txt" 2>&1
    local rc=$?
    echo "== $name: rc $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$out/steps.txt"
    tail -n 4 "$out/$name.txt"
}

step bf16_parity "${BF16_S:-90}" python3 benchmarks/bf16_parity.py --data-dir "$data" --depths 5,12 --seeds 3 --epochs 10
step throughput "${THROUGHPUT_S:-170}" python3 benchmarks/throughput.py --rounds 3
step grid_wall "${GRID_S:-170}" python3 benchmarks/grid_wall.py --scale 0.1 --procs 4,8
step ray_sweep "${SWEEP_S:-90}" python3 sweeps/depth_grid.py --data-dir "$data" --trials-per-gpu 4 \
    --storage /tmp/gpu_sweep --name gpu_grid --progress-every 20
step search_efficiency "${SEARCH_S:-330}" python3 benchmarks/search_efficiency.py --data-dir "$data" --scale 0.09 \
    --trials-per-gpu 8 --storage /tmp/se_grace1
step search_efficiency_grace3 "${SEARCH3_S:-200}" python3 benchmarks/search_efficiency.py --data-dir "$data" \
    --scale 0.09 --trials-per-gpu 8 --grace-period 3 --storage /tmp/se_grace3
