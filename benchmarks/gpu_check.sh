#!/usr/bin/env bash
# The one-GPU check (about 5-8 minutes on one H100): run it on a machine with a CUDA GPU.
#   bash benchmarks/gpu_check.sh            # uses .venv/bin/python if there, else python3
# 1. the CUDA tests (pytest -m cuda): MoIPool / RoIPool / RoIAlign forward and backward on CUDA
#    equal to the CPU, mining on cuda giving the CPU's first 20 losses, a GPU run loading on
#    the CPU;
# 2. training throughput at VOC shapes (480-1216 px, 2000 and 4000 proposals, ResNet18-WS and
#    ResNet50, random weights), mine and refine, on the GPU and, beside it, a few CPU steps;
# 3. the pooling benchmark on CUDA beside torchvision's RoIPool / RoIAlign.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONUNBUFFERED=1
if ! "$PY" -c "import jtsm" 2>/dev/null; then
  # a machine whose Python already has torch: jtsm itself, its other needs as they are
  "$PY" -m pip install --quiet --no-deps --no-build-isolation -e . || exit 1
fi
status=0
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || status=1
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print('torch', torch.__version__, torch.cuda.get_device_name(0))" || exit 1

echo "== 1. CUDA tests"
timeout 240 "$PY" -m pytest -q -m cuda -p no:cacheprovider tests || status=1

echo "== 2. training throughput (GPU, then 1 CPU step each for the ratio)"
timeout 300 "$PY" benchmarks/bench_train_throughput.py --device cuda --steps 8 \
  --device cpu --cpu-steps 1 --cpu-subset || status=1

echo "== 3. pooling on CUDA beside torchvision"
timeout 120 "$PY" benchmarks/bench_pooling.py || status=1
exit $status
