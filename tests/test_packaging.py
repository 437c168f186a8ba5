"""Every subpackage ships: pyproject.toml lists packages by hand, so a new room must be added."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "hybridff").rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def _path_literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module (docstrings left out) that name a folder outside the package."""
    import ast
    import re

    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    outside = re.compile(r"^(scripts|benchmarks|tests)(/|$)")
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings and outside.match(node.value)]


def test_the_package_reads_nothing_of_the_checkout() -> None:
    """Installed code has no scripts/, tests/ or benchmarks/ beside it: it reads its package
    data only. ``hybridff bench`` alone looks for the checkout's benchmarks/ (and says so in
    one line when there is none, tests/test_bench_cli.py)."""
    allowed = {("hybridff/cli/bench.py", "benchmarks")}
    found = [f"{p.relative_to(ROOT)}:{line}: {text!r}"
             for p in sorted((ROOT / "hybridff").rglob("*.py")) if "__pycache__" not in p.parts
             for line, text in _path_literals(p) if (str(p.relative_to(ROOT)), text) not in allowed]
    assert not found, "package code names a folder outside the package:\n" + "\n".join(found)
