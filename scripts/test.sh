#!/usr/bin/env bash
# The test command from the README: installs the system tools the tests drive (when missing),
# sets up .venv (dev requirements) and runs lint + the suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k features
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/ensure-system-tools.sh
scripts/ensure-venv.sh requirements.txt requirements-dev.txt
.venv/bin/ruff check src tests benchmarks
exec .venv/bin/python -m pytest "$@"
