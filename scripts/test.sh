#!/usr/bin/env bash
# The test command from the README: installs the system tools the tests drive (when missing),
# sets up .venv (dev requirements), lints (ruff), checks the import contracts (lint-imports, in
# pyproject.toml) and the types (mypy, over src/), then runs the suite on two workers (pytest-xdist:
# most of the suite's time is spent waiting on daemons, fakes and clocks, so two halve it even on two
# cores). Extra arguments go to pytest, e.g. scripts/test.sh -k features, or -n 0 for one process.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/ensure-system-tools.sh
scripts/ensure-venv.sh requirements.txt requirements-dev.txt
.venv/bin/ruff check src tests benchmarks
.venv/bin/lint-imports
.venv/bin/mypy
exec .venv/bin/python -m pytest -n "${TEST_WORKERS:-2}" "$@"
