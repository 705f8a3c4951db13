#!/usr/bin/env bash
# The test command: installs what is missing, then runs the test suite.
#   bash tools/run_tests.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/install.sh
exec "${PYTHON:-python}" -m pytest tests -q "$@"
