#!/usr/bin/env bash
# Install hybridff into a cached virtual environment and (unless --no-demo) run the demo job.
#
# The environment lives outside the clone, at ${HYBRIDFF_VENV:-$HOME/.venvs/hybridff}, and is
# reused while requirements.txt is unchanged (its sha256 is stored inside the environment).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
venv=${HYBRIDFF_VENV:-$HOME/.venvs/hybridff}
python=${PYTHON:-python3}
want=$(sha256sum "$here/requirements.txt" | cut -d' ' -f1)
have=$(cat "$venv/.requirements-sha256" 2>/dev/null || true)

if [[ "$want" != "$have" ]]; then
    echo "[setup] creating/updating the environment in $venv (first time: several minutes, ~7 GB)"
    [[ -x "$venv/bin/python" ]] || "$python" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
    echo "$want" > "$venv/.requirements-sha256"
else
    echo "[setup] reusing the environment in $venv (requirements unchanged)"
fi
"$venv/bin/python" -m pip install --quiet --no-deps --no-build-isolation -e "$here"
echo "[setup] installed: $("$venv/bin/hybridff" --version)"

if [[ "${1:-}" != "--no-demo" ]]; then
    out=${HYBRIDFF_DEMO_OUT:-$here/demo-output}
    echo "[setup] demo: parameterizing examples/data/paracetamol.sdf -> $out/"
    mkdir -p "$out"
    "$venv/bin/hybridff" parameterize "$here/examples/data/paracetamol.sdf" \
        -o "$out/paracetamol.xml" --report "$out/paracetamol-report.json"
    "$venv/bin/python" "$here/examples/energy_of_ligand.py" "$out/paracetamol.xml" \
        "$here/examples/data/paracetamol.sdf"
fi
