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
exec "${PYTHON:-python}" -m pytest tests -q "$@"
