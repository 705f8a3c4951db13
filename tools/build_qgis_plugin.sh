#!/usr/bin/env bash
# Build the QGIS plugin zip: dist/mmretina_qgis.zip (Plugins > Manage and
# Install Plugins > Install from ZIP). Usage: bash tools/build_qgis_plugin.sh [OUT.zip]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${1:-$ROOT/dist/mmretina_qgis.zip}"
mkdir -p "$(dirname "$OUT")"
PY="$(command -v python3 || command -v python)"
"$PY" - "$ROOT/qgis/mmretina_qgis" "$OUT" <<'PYEOF'
import os, os.path as osp, sys, zipfile
src, out = sys.argv[1], sys.argv[2]
name = osp.basename(src)
tmp = out + '.tmp'
with zipfile.ZipFile(tmp, 'w', zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk(src):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for f in sorted(files):
            if f.endswith(('.pyc', '.pyo')):
                continue
            path = osp.join(root, f)
            z.write(path, osp.join(name, osp.relpath(path, src)))
os.replace(tmp, out)
print(f'wrote {out}')
PYEOF
