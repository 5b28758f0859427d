#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv/ with the package
# installed in editable mode and everything it needs.  Safe to run again: a second
# run only checks that nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.cnnvis-setup-stamp
want=$(cat pyproject.toml | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && .venv/bin/python -c "import cnnvis_tasks" 2>/dev/null; then
    echo "setup: .venv is up to date"
    exit 0
fi
# This machine's pip configuration names package folders that may not exist;
# pip's notices about them are noise, not errors.
quiet_pip() { .venv/bin/python -m pip "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
quiet_pip install --quiet --upgrade pip
quiet_pip install --quiet -e ".[test]"
echo "$want" > "$stamp"
echo "setup: .venv ready (source .venv/bin/activate)"
