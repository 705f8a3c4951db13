#!/usr/bin/env bash
# Regenerate docs/images/qgis_osbs_029.jpg, the picture of
# docs/user_guides/qgis.md: QGIS (3.22, headless) runs mmretina:detect on the
# DeepForest wheel's OSBS_029.tif as the Processing Toolbox does, loads the
# detections over the raster with the plugin's style (outlines graded by
# score) and draws the project with its map renderer. It is the test
# tests/qgis/test_toolbox.py::test_guide_picture_* run with a trained model
# and MMRETINA_UPDATE_DOCS_IMAGES=1, so the picture passes the test's checks.
#
# Usage: bash tools/render_qgis_guide_image.sh [CHECKPOINT [CONFIG]]
#   CHECKPOINT  default work_dirs/retinanet_r18_fpn_deepforest/epoch_66.pth
#   CONFIG      default configs/retinanet_r18_fpn_deepforest.py
# Needs QGIS (apt-get install qgis python3-qgis) and mmretina installed in
# the python that runs pytest ($PYTHON, default python).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CKPT="$(realpath -m "${1:-$ROOT/work_dirs/retinanet_r18_fpn_deepforest/epoch_66.pth}")"
CONFIG="$(realpath -m "${2:-$ROOT/configs/retinanet_r18_fpn_deepforest.py}")"
for f in "$CKPT" "$CONFIG"; do
  [ -f "$f" ] || { echo "render_qgis_guide_image: $f does not exist" >&2; exit 2; }
done
cd "$ROOT"
MMRETINA_UPDATE_DOCS_IMAGES=1 MMRETINA_GUIDE_CHECKPOINT="$CKPT" \
MMRETINA_GUIDE_CONFIG="$CONFIG" exec "${PYTHON:-python}" -m pytest \
  tests/qgis/test_toolbox.py -k test_guide_picture -q -s -p no:cacheprovider
