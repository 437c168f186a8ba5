"""hybridff/mm/ imports without loops: no module of mm/ reaches itself through the imports of
mm/ (at the top or inside a function; imports for type checking only are left out), and the
MM signature hashes a refit record without importing the refit."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import numpy as np
from rdkit import Chem

ROOT = Path(__file__).resolve().parents[1]
MM = ROOT / "hybridff" / "mm"


def _imports(path: Path) -> set[str]:
    """hybridff modules ``path`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            if isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.add(child.module)
                found.update(f"{child.module}.{alias.name}" for alias in child.names)
            elif isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _mm_graph() -> dict[str, set[str]]:
    modules = {f"hybridff.mm.{p.stem}": p for p in MM.glob("*.py") if p.stem != "__init__"}
    return {name: (_imports(path) & set(modules)) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import loop of ``graph`` (its modules in order), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def walk(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (found := walk(nxt)):
                return found
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (found := walk(start)):
            return found
    return None


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_mm_has_no_import_loop() -> None:
    graph = _mm_graph()
    assert "hybridff.mm.bespoke" not in graph["hybridff.mm.signature"]
    assert "hybridff.mm.ffxml" in graph["hybridff.mm.parameters"]
    loop = _cycle(graph)
    assert loop is None, "import loop in hybridff/mm/: " + " -> ".join(loop)


def test_signature_needs_no_refit_machinery() -> None:
    code = ("import sys, hybridff.mm.signature, hybridff.mm.ffxml; "
            "print(sorted(m for m in ('hybridff.mm.bespoke', 'hybridff.mm.refit', 'scipy.optimize') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=ROOT).stdout.strip()
    assert out == "[]"


def test_refit_hash_has_one_meaning() -> None:
    from hybridff.io.molecule import canonical_smiles
    from hybridff.mm import bespoke, signature

    mol = Chem.AddHs(Chem.MolFromSmiles("CO"))
    rng = np.random.default_rng(0)
    record = {"version": 4, "smiles": canonical_smiles(mol), "n_atoms": mol.GetNumAtoms(),
              "bonds": [[[0, 1], rng.normal(size=7).tolist()]], "angles": [], "propers": [],
              "cross": []}
    for version in (1, 4):
        rec = {**record, "version": version}
        assert signature.refit_sha256(rec) == bespoke.refit_sha256(rec)
    assert signature.refit_sha256(record) != signature.refit_sha256({**record, "bonds": []})
