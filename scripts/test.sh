#!/usr/bin/env bash
# The test command from the README: installs the system tools the tests drive (when missing),
# sets up .venv (dev requirements), lints (ruff), checks the import contracts (lint-imports, in
# pyproject.toml) and the types (mypy, over src/), then runs the suite.
# Extra arguments go to pytest, e.g. scripts/test.sh -k features
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/ensure-system-tools.sh
scripts/ensure-venv.sh requirements.txt requirements-dev.txt
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
