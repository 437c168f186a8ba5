"""docs/architecture.md stays true to the package: its "Modules" section has one line per
module of hybridff/, each module once, and none that no longer exists."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hybridff"


def _listed() -> list[str]:
    """The module each line of the Modules section is about (its first name in backticks)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^- `([\w/]+\.py)`:", section, flags=re.MULTILINE)


def test_every_module_is_listed_once_and_every_listed_one_exists() -> None:
    listed = Counter(_listed())
    modules = {p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
               if "__pycache__" not in p.parts}
    twice = [m for m, n in listed.items() if n > 1]
    assert not twice, f"listed twice in docs/architecture.md: {twice}"
    missing = sorted(modules - set(listed))
    assert not missing, f"add a line to docs/architecture.md for {missing}"
    gone = sorted(set(listed) - modules)
    assert not gone, f"docs/architecture.md lists modules that do not exist: {gone}"
