"""The generated documentation is current."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cli_reference_matches_the_parser(monkeypatch) -> None:
    spec = importlib.util.spec_from_file_location("make_cli_docs", ROOT / "scripts" / "make_cli_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setenv("COLUMNS", "80")
    expected = module.render()
    current = (ROOT / "docs" / "cli.md").read_text()
    assert current == expected, "docs/cli.md is stale: run python scripts/make_cli_docs.py"


def test_readme_drop_in_snippet_runs_as_written(tmp_path, monkeypatch) -> None:
    """The README's drop-in snippet, with ligand.sdf a real file (paracetamol) and gasteiger
    charges for speed, builds a solvated PME System with the ligand parameterized."""
    import re
    import shutil

    import openmm

    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
                 if "HybridTemplateGenerator" in b and "createSystem" in b)
    shutil.copy(Path(__file__).resolve().parents[1] / "examples/data/paracetamol.sdf",
                tmp_path / "ligand.sdf")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(block.replace('charge_method="ml"', 'charge_method="gasteiger"'),
                 "README.md", "exec"), namespace)
    system = namespace["system"]
    assert isinstance(system, openmm.System) and system.usesPeriodicBoundaryConditions()
    assert system.getNumParticles() == namespace["modeller"].topology.getNumAtoms() > 20


def test_readme_python_api_and_command_line_snippets_run_as_written(tmp_path, monkeypatch) -> None:
    """The README's Python API block and command-line block, as written (ligand.sdf is
    paracetamol; AM1-BCC as the README says, through AmberTools)."""
    import os
    import re
    import shutil
    import subprocess
    import sys

    import openmm

    text = (ROOT / "README.md").read_text()
    api = next(b for b in re.findall(r"```python\n(.*?)```", text, re.S)
               if "hybridff.parameterize(" in b and "create_system" in b)
    shell = next(b for b in re.findall(r"```bash\n(.*?)```", text, re.S)
                 if b.lstrip().startswith("hybridff parameterize ligand.sdf"))
    shutil.copy(ROOT / "examples/data/paracetamol.sdf", tmp_path / "ligand.sdf")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(api, "README.md", "exec"), namespace)
    assert isinstance(namespace["system"], openmm.System)
    assert namespace["system"].getNumParticles() == 20
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for line in shell.strip().splitlines():  # `hybridff` and `python` of this environment
        run = subprocess.run(line, shell=True, cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=600)
        assert run.returncode == 0, (line, run.stdout[-2000:], run.stderr[-2000:])
    assert (tmp_path / "ligand.xml").stat().st_size > 0 and (tmp_path / "report.json").exists()
