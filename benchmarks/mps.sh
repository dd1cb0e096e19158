#!/usr/bin/env bash
# Start, stop or check the CUDA MPS daemon, so that several trials packed on one GPU
# (`--pack N` in the runner, procs-N in benchmarks/grid_wall.py) run their kernels
# concurrently instead of time-slicing the GPU between N CUDA contexts.
#
#   benchmarks/mps.sh start    # before `ray start` / the sweep, on every GPU node
#   benchmarks/mps.sh status
#   benchmarks/mps.sh stop     # after the sweep
#
# Needs the NVIDIA driver's nvidia-cuda-mps-control and a user allowed to run it. Processes
# must be started AFTER the daemon (start Ray after this script) and by the same user. On a
# cluster, put `benchmarks/mps.sh start` in cluster.yaml's setup/start commands of GPU nodes.
set -euo pipefail
export CUDA_MPS_PIPE_DIRECTORY="${CUDA_MPS_PIPE_DIRECTORY:-/tmp/nvidia-mps}"
export CUDA_MPS_LOG_DIRECTORY="${CUDA_MPS_LOG_DIRECTORY:-/tmp/nvidia-mps-log}"
command -v nvidia-cuda-mps-control >/dev/null || { echo "mps.sh: nvidia-cuda-mps-control not found (no NVIDIA driver here?)" >&2; exit 2; }
case "${1:-status}" in
  start)
    mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
    if [ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ]; then echo "MPS already running ($CUDA_MPS_PIPE_DIRECTORY)"; exit 0; fi
    nvidia-cuda-mps-control -d
    echo "MPS started: pipes in $CUDA_MPS_PIPE_DIRECTORY, logs in $CUDA_MPS_LOG_DIRECTORY" ;;
  stop)
    echo quit | nvidia-cuda-mps-control && echo "MPS stopped" ;;
  status)
    if [ -e "$CUDA_MPS_PIPE_DIRECTORY/control" ]; then echo "MPS running"; else echo "MPS not running"; exit 1; fi ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
