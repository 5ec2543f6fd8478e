#!/usr/bin/env bash
# Train any config on GPUS GPUs of this machine through torchrun (MMEngine's pytorch launcher).
#   tools/dist_train.sh CONFIG GPUS [tool options...]
# configs/deeplab/* go through tools/train_seg.py, every other config through tools/train.py.
# Several machines: set NNODES, NODE_RANK, MASTER_ADDR (and PORT) as torchrun expects.
set -euo pipefail
if [ $# -lt 2 ]; then
  echo "usage: $0 CONFIG GPUS [options of tools/train.py or tools/train_seg.py]" >&2
  exit 2
fi
CONFIG=$1
GPUS=$2
shift 2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
DIR=$(cd "$(dirname "$0")" && pwd)
case "$CONFIG" in
  *configs/deeplab/*) TOOL="$DIR/train_seg.py" ;;
  *) TOOL="$DIR/train.py" ;;
esac
PYTHON=${PYTHON:-python}  # e.g. PYTHON=.venv/bin/python
PYTHONPATH="$DIR/..${PYTHONPATH:+:$PYTHONPATH}" exec "$PYTHON" -m torch.distributed.run \
  --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
  --nproc_per_node="$GPUS" --master_port="$PORT" \
  "$TOOL" "$CONFIG" --launcher pytorch "$@"
