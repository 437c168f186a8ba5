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
