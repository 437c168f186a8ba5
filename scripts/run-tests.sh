#!/usr/bin/env bash
# Run the default (non-slow) test suite in the project's environment.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HYBRIDFF_VENV:-$HOME/.venvs/hybridff}
cd "$here"
export PATH="$venv/bin:$PATH"
exec "$venv/bin/python" -m pytest -m "not slow" "$@"
