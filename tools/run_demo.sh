#!/usr/bin/env bash
# The main job, from a fresh machine: install, prepare the DeepForest tree
# crowns, train RetinaNet R18-FPN from scratch, evaluate (COCO metrics) and
# draw the detections on a validation image. Idempotent: a finished step is
# reused (training resumes from the last checkpoint, or is skipped when done).
#
#   bash tools/run_demo.sh
#   CONFIG=... WORK_DIR=... bash tools/run_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
CONFIG=${CONFIG:-configs/retinanet_r18_fpn_deepforest.py}
WORK_DIR=${WORK_DIR:-work_dirs/$(basename "$CONFIG" .py)}
IMAGE=${IMAGE:-data/deepforest/images/OSBS_029.png}
say() { echo "[demo $(date +%H:%M:%S)] $*"; }

say "1/8 install"
bash tools/install.sh

job_start=$(date +%s)  # the 20-minute target counts from here (install excluded)
say "2/8 prepare data/deepforest (COCO json + images)"
"$PY" tools/dataset_converters/prepare_deepforest.py --out-dir data/deepforest

# What this machine is (CPU, native bf16 or fp32, threads) and how long the
# training will take here, from 4 real iterations of $CONFIG (ESTIMATE=0:
# the CPU line only). docs/user_guides/speed.md has the figures per CPU.
if [ "${ESTIMATE:-1}" != 0 ]; then
  BANNER=$("$PY" -m mmretina.cli.cpu_info --estimate "$CONFIG") ||
    BANNER="$("$PY" -m mmretina.cli.cpu_info)"$'\n''(could not time the training here; going on)'
else
  BANNER=$("$PY" -m mmretina.cli.cpu_info)
fi
while IFS= read -r line; do say "$line"; done <<< "$BANNER"
CPU_LINE=${BANNER%%$'\n'*}  # repeated beside the results at the end

say "3/8 train $CONFIG -> $WORK_DIR (resumes if interrupted)"
# Resume only a run of this very config: a work dir left by another config
# (or an older version of this one) is moved aside, not resumed.
"$PY" tools/claim_work_dir.py "$CONFIG" "$WORK_DIR"
start=$(date +%s)
"$PY" tools/train.py "$CONFIG" --work-dir "$WORK_DIR" --resume
train_s=$(( $(date +%s) - start ))
say "training took $train_s s"
CKPT=$(cat "$WORK_DIR/last_checkpoint")

say "4/8 evaluate $CKPT on the test images (OSBS_029, SOAP_061)"
"$PY" tools/test.py "$CONFIG" "$CKPT" --work-dir "$WORK_DIR/test"
# the metrics of tools/test.py's latest run under that work dir
ACCURACY=$("$PY" tools/demo_record.py accuracy "$WORK_DIR/test")
say "test accuracy (OSBS_029 + SOAP_061, never used to choose the recipe): $ACCURACY"
# the field's figures on the same images (precision / recall at IoU 0.4 per
# image; the GIS training guide renders the record)
"$PY" tools/demo_record.py field --out "$WORK_DIR/field_test.json" "$CONFIG" "$CKPT" \
  --coco data/deepforest/annotations/val.json --img-dir data/deepforest/images \
  --out-dir "$WORK_DIR/field_test" --device cpu --no-progress ||
  say "field evaluation failed (see above)"

say "5/8 draw detections on $IMAGE"
"$PY" tools/infer.py "$IMAGE" "$CONFIG" "$CKPT" --device cpu --fuse-conv-bn \
  --out "$WORK_DIR/$(basename "$IMAGE" .png)_detections.png"
say "training curves (loss, val mAP) -> $WORK_DIR/training_curves.png"
"$PY" tools/analysis_tools/analyze_logs.py plot_curve "$WORK_DIR" \
  --keys loss loss_cls loss_bbox coco/bbox_mAP_50 coco/bbox_mAP \
  --title "$(basename "$CONFIG" .py)" --out "$WORK_DIR/training_curves.png"
# The wheel's largest image (2299x2472 px; its 400-px tiles are training
# data), window by window: 400-px windows overlapping by 100 px, merged.
# from_wheel FILE: a file of the deepforest==2.1.0 wheel's data folder,
# extracted once to data/deepforest/large/FILE
from_wheel() {
  local out=data/deepforest/large/$1
  if [ ! -f "$out" ]; then
    ls data/deepforest/wheel/deepforest-2.1.0-*.whl >/dev/null 2>&1 ||
      "$PY" -m pip download --disable-pip-version-check --no-deps -q \
        deepforest==2.1.0 -d data/deepforest/wheel
    "$PY" -c "import sys, zipfile, glob, os; os.makedirs(os.path.dirname(sys.argv[1]), exist_ok=True); open(sys.argv[1], 'wb').write(zipfile.ZipFile(glob.glob('data/deepforest/wheel/deepforest-2.1.0-*.whl')[0]).read('deepforest/data/' + os.path.basename(sys.argv[1])))" "$out"
  fi
  echo "$out"
}
LARGE=$(from_wheel 2019_YELL_2_528000_4978000_image_crop2.png)
say "6/8 tiled detections over $LARGE -> $WORK_DIR/large_image/"
"$PY" tools/infer.py "$LARGE" "$CONFIG" "$CKPT" --device cpu --fuse-conv-bn --tile 400 \
  --overlap 0.25 --batch 4 --score-thr 0.3 --out-dir "$WORK_DIR/large_image"
# A GIS layer: the georeferenced test raster OSBS_029.tif (EPSG:32617,
# 0.1 m) through the windowed raster path, the detections written as a
# GeoPackage in the raster's CRS and drawn over the raster on map axes.
GEO=$(from_wheel OSBS_029.tif)
say "7/8 GIS layer: detections over $GEO -> $WORK_DIR/geo/OSBS_029.gpkg"
"$PY" tools/infer.py "$GEO" "$CONFIG" "$CKPT" --device cpu --fuse-conv-bn \
  --tile 400 --score-thr 0.3 --out-dir "$WORK_DIR/geo"
"$PY" tools/analysis_tools/plot_layer.py "$GEO" "$WORK_DIR/geo/OSBS_029.gpkg" \
  --labels "detections, score >= 0.3" --score-thr 0.3 \
  --out "$WORK_DIR/geo/OSBS_029_map.png"
# Deployment (DEPLOY=0 skips): the model exported (static 416x416), INT8
# calibrated on its training tiles and checked on the training site's
# hold-out, both scored on the test images like the checkpoint.
FIGURES=()  # --figure 'MODEL on RUNTIME test mAP50=VALUE' for the record
if [ "${DEPLOY:-1}" != 0 ]; then
  say "8/8 deployment: ONNX fp32 and INT8 -> $WORK_DIR/deploy/"
  "$PY" tools/deployment/export_onnx.py "$CONFIG" "$CKPT" --shape 416 416 \
    --out "$WORK_DIR/deploy/model.onnx" || say "ONNX export failed (see above)"
  [ -f "$WORK_DIR/deploy/model.onnx" ] &&
  "$PY" tools/deployment/quantize.py "$CONFIG" "$WORK_DIR/deploy/model.onnx" \
    --calib-data data/deepforest/annotations/train.json --num-calib 32 \
    --val-ann data/deepforest/annotations/choose_val.json --threads 1 \
    --out "$WORK_DIR/deploy/model.int8.onnx" || say "INT8 refused (see above)"
  for m in model.onnx model.int8.onnx; do
    [ -f "$WORK_DIR/deploy/$m" ] || continue
    for be in onnxruntime openvino; do
      line=$("$PY" tools/test.py "$CONFIG" "$WORK_DIR/deploy/$m" --backend $be \
        --threads 1 --work-dir "$WORK_DIR/deploy/test" 2>&1 |
        grep -o 'coco/bbox_mAP_50: [0-9.]*' | tail -1) || true
      say "test images, $m on $be: ${line:-failed}"
      value=${line#coco/bbox_mAP_50: }
      FIGURES+=(--figure "$m on $be test mAP50=${value:-failed}")
    done
  done
fi
say "done: checkpoint $CKPT, picture $WORK_DIR/$(basename "$IMAGE" .png)_detections.png"
say "$CPU_LINE"
job_s=$(( $(date +%s) - job_start ))
say "test accuracy: $ACCURACY; whole job $job_s s (install excluded), training $train_s s"
# The record of these figures (the README's results table renders it:
# copy it to docs/user_guides/records/ and run benchmarks/report.py update)
"$PY" tools/demo_record.py write "$CONFIG" --job-s "$job_s" --train-s "$train_s" \
  --test-dir "$WORK_DIR/test" ${FIGURES[@]+"${FIGURES[@]}"} --out "$WORK_DIR/main_job.json"
say "records: $WORK_DIR/main_job.json, $WORK_DIR/field_test.json"
