#!/usr/bin/env bash
# Installs what mmretina needs, reusing whatever is already installed.
# Idempotent: a second run checks versions and does nothing.
#
#   bash tools/install.sh            # torch 2.13 CPU, mmcv 2.1.0, mmdet 3.3.0
#   MMRETINA_WHEELS=DIR bash tools/install.sh   # use a prebuilt mmcv wheel
#
# mmcv 2.1.0 has no wheel for torch 2.13 on PyPI: without a wheel it is built
# from source (about 16 minutes on 2 cores, once).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
pip_q() { "$PY" -m pip install --disable-pip-version-check -q "$@"; }
have() {  # have DIST VERSION_PREFIX
  "$PY" - "$1" "$2" <<'PYEOF'
import sys
from importlib import metadata
try:
    v = metadata.version(sys.argv[1])
except metadata.PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if v.split('+')[0].startswith(sys.argv[2]) else 1)
PYEOF
}
step() { echo "[install] $*"; }

# A torch already installed (a CUDA build, another version) is kept: mmretina
# needs torch>=2.1. Only where there is none is it pinned, to the CPU build
# tested here (a bare `torch` would pull a multi-GB CUDA build).
if "$PY" -c "import torch" 2>/dev/null; then
  step "torch $("$PY" -c 'import torch; print(torch.__version__)') present (kept)"
else
  step "installing torch==2.13.0"; pip_q torch==2.13.0; fi

if have mmcv 2.1.0 && "$PY" -c "import mmcv.ops" 2>/dev/null; then
  step "mmcv 2.1.0 (with ops) present"
else
  wheel=""
  # The prebuilt wheels were compiled against torch 2.13.0: another torch
  # builds mmcv from source instead.
  have torch 2.13.0 || MMRETINA_WHEELS="" NO_PREBUILT=1
  for dir in "${MMRETINA_WHEELS:-}" ../shared/wheels; do
    [ -z "${NO_PREBUILT:-}" ] || break
    [ -n "$dir" ] || continue
    cand=$(ls "$dir"/mmcv-2.1.0-*.whl 2>/dev/null | head -n 1 || true)
    [ -n "$cand" ] && { wheel=$cand; break; }
  done
  if [ -n "$wheel" ]; then
    step "installing mmcv from $wheel"; pip_q --no-deps "$wheel"
  else
    step "building mmcv 2.1.0 with ops from source (~16 min on 2 cores)"
    # mmcv's setup.py needs pkg_resources: setuptools < 70 while building,
    # then back to what torch 2.13 requires.
    pip_q "setuptools<70" wheel ninja
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} "$PY" -m pip install \
      --disable-pip-version-check --no-build-isolation mmcv==2.1.0
    pip_q "setuptools>=77.0.3,<82"
  fi
  # mmcv's runtime dependencies (the wheel was installed without them).
  pip_q addict mmengine "numpy" packaging Pillow pyyaml yapf opencv-python
fi

if have mmdet 3.3.0 && have mmengine 0.10 && "$PY" -c "import pycocotools" 2>/dev/null; then
  step "mmdet 3.3.0, mmengine 0.10, pycocotools present"
else
  step "installing mmdet 3.3.0, mmengine, pycocotools"
  pip_q mmdet==3.3.0 "mmengine>=0.10.5,<0.11" pycocotools
fi

# ONNX export and onnxruntime inference (the 'deploy' extra; its tests run
# in CI). mmdeploy is not used: it pins an old protobuf.
if "$PY" -c "import onnx, onnxscript, onnxruntime" 2>/dev/null; then
  step "onnx, onnxscript, onnxruntime present"
else
  step "installing requirements/deploy.txt (onnx, onnxscript, onnxruntime)"
  pip_q -r requirements/deploy.txt
fi

# Rasters and GIS layers (the 'geo' extra): wheels only, no GDAL build.
if "$PY" -c "import rasterio, geopandas, pyogrio, shapely, pyproj" 2>/dev/null; then
  step "rasterio, geopandas, pyogrio, shapely, pyproj present"
else
  step "installing requirements/geo.txt (rasterio, geopandas, ...; wheels)"
  pip_q --only-binary=:all: -r requirements/geo.txt
fi

# Oriented boxes (the 'rotated' extra): mmrotate-dev, pure Python; its
# dependencies beyond torch / mmcv / mmdet are small (terminaltables, six).
if "$PY" -c "import mmrotate" 2>/dev/null; then
  step "mmrotate present"
else
  step "installing requirements/rotated.txt (mmrotate-dev 1.0.1)"
  pip_q -r requirements/rotated.txt
fi

# every package of requirements/tests.txt (a machine that ships pytest may
# still lack safetensors)
if "$PY" -c "import pytest, safetensors" 2>/dev/null; then :; else pip_q -r requirements/tests.txt; fi

# mmengine resolves `mmdet::` base configs through pkg_resources, which
# setuptools 82+ no longer ships; torch 2.13 needs setuptools>=77.0.3.
if "$PY" -c "import pkg_resources" 2>/dev/null; then :; else
  step "installing setuptools<82 (pkg_resources, for mmdet:: base configs)"
  pip_q "setuptools>=77.0.3,<82"
fi

here=$(pwd)
if [ "$(cd / && "$PY" -c 'import mmretina, os; print(os.path.dirname(os.path.dirname(os.path.abspath(mmretina.__file__))))' 2>/dev/null)" = "$here" ]; then
  step "mmretina (editable) present"
else
  step "installing mmretina (editable)"
  pip_q --no-deps --no-build-isolation -e .
fi
# The runtime requirements the steps above do not bring (defusedxml, scipy;
# everything else in the file is already satisfied, so nothing is upgraded).
"$PY" -c "import defusedxml, scipy" 2>/dev/null ||
  pip_q -r requirements/runtime.txt
(cd / && "$PY" -c "import mmretina, mmdet, mmcv.ops, torch; print('[install] ok: mmretina', mmretina.__version__, 'mmdet', mmdet.__version__, 'torch', torch.__version__)")
