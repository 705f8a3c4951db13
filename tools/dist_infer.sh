#!/usr/bin/env bash
# Distributed inference over rasters, on torchrun like tools/dist_train.sh:
#   bash tools/dist_infer.sh CONFIG CHECKPOINT INPUT NPROC --out-dir DIR \
#       [tools/infer.py options: --tile 400 --bands 1,2,3 --format gpkg ...]
# Env: NNODES (1), NODE_RANK (0), PORT (29500), MASTER_ADDR (127.0.0.1);
# on several machines INPUT and --out-dir must be on a shared file system.
# NPROC processes per machine: gloo on CPU, NCCL on GPUs (one per process).
# The windows of all rasters still to do (a folder's, or one huge raster's)
# are shared across the ranks; each rank writes its part to
# DIR/.mmretina/parts, rank 0 merges the windows of each raster (NMS / WBF,
# cut-box rule) and writes the outputs; a killed run resumes at the windows
# it had not finished. Every flag and default is mmretina predict's
# (--tile auto, --gsd auto, ...): one command line, the same detections.

CONFIG=$1
CHECKPOINT=$2
INPUT=$3
NPROC=$4
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PYTHON=${PYTHON:-python}

if [ $# -lt 4 ]; then
  echo "usage: $0 CONFIG CHECKPOINT INPUT NPROC --out-dir DIR [infer.py options]" >&2
  exit 2
fi

PYTHONPATH="$(dirname $0)/..":$PYTHONPATH \
$PYTHON -m torch.distributed.run \
    --nnodes=$NNODES \
    --node_rank=$NODE_RANK \
    --master_addr=$MASTER_ADDR \
    --nproc_per_node=$NPROC \
    --master_port=$PORT \
    $(dirname "$0")/infer.py \
    "$INPUT" "$CONFIG" "$CHECKPOINT" \
    --launcher pytorch "${@:5}"
