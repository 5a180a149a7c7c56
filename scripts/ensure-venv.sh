#!/usr/bin/env bash
# Create ./.venv on first use and (re)install the given requirements files only when they or
# pyproject.toml changed since the last install. Shared by launcher.sh and scripts/test.sh.
# Usage: scripts/ensure-venv.sh REQUIREMENTS_FILE... (run from the project root)
set -euo pipefail

venv=".venv"
if [ "$#" -eq 0 ]; then
    echo "usage: scripts/ensure-venv.sh REQUIREMENTS_FILE..." >&2
    exit 2
fi

python_bin="${PYTHON:-python3}"
if ! command -v "$python_bin" >/dev/null 2>&1; then
    echo "error: $python_bin not found. Install Python 3.11 or newer (Debian/Ubuntu: sudo apt-get install python3 python3-venv)" >&2
    exit 1
fi
if ! "$python_bin" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "error: Python 3.11 or newer is needed; $python_bin is $("$python_bin" --version 2>&1)" >&2
    exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
    echo "creating virtual environment in $venv ..."
    if ! "$python_bin" -m venv "$venv"; then
        echo "error: could not create $venv (Debian/Ubuntu: sudo apt-get install python3-venv)" >&2
        exit 1
    fi
fi

# One stamp per requirements file: launcher.sh (runtime) and scripts/test.sh (runtime + dev) then
# never undo each other's work.
for requirements in "$@"; do
    stamp="$venv/.installed-$(basename "$requirements").sha256"
    wanted=$(cat "$requirements" pyproject.toml | sha256sum | cut -d' ' -f1)
    if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$wanted" ]; then
        echo "installing $requirements into $venv (first run, or it changed) ..."
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e .
        echo "$wanted" > "$stamp"
    fi
done
