#!/usr/bin/env bash
# The test command: installs what is missing, then runs the test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
# SAHI and supervision, for the interoperability tests only
"${PYTHON:-python}" -c "import sahi, supervision" 2>/dev/null ||
  "${PYTHON:-python}" -m pip install -q --only-binary=:all: \
    -r requirements/interop.txt ||
  echo "[tests] sahi / supervision not installed: their tests are skipped"
# QGIS 3.22 (Debian's packages) for tests/qgis; they skip, saying why,
# without it
if [ ! -x /usr/bin/qgis_process.bin ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq qgis python3-qgis; } >/tmp/qgis_apt.log 2>&1 ||
      echo "[tests] QGIS could not be installed (/tmp/qgis_apt.log): tests/qgis are skipped"
  else
    echo "[tests] no apt-get as root: QGIS not installed, tests/qgis are skipped"
  fi
fi
exec "${PYTHON:-python}" -m pytest tests -q "$@"
