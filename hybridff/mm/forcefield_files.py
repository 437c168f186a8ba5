"""Where hybridff's ForceField XML files live (registered with OpenMM's entry point)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

DEFAULT_FORCEFIELD = "hybridff-gaff2.xml"


def forcefield_dir() -> str:
    """Directory holding the shipped XML files; OpenMM's ``ForceField`` searches it."""
    try:
        return str(resources.files("hybridff.forcefields"))
    except ModuleNotFoundError:  # running from a source checkout that is not installed
        return str(Path(__file__).resolve().parents[2] / "forcefields")


def forcefield_path(name: str = DEFAULT_FORCEFIELD) -> Path:
    """Absolute path of a shipped force-field file (``.xml`` is appended if missing)."""
    from hybridff.exceptions import ForceFieldNotFoundError

    if not name.endswith(".xml"):
        name = name + ".xml"
    candidate = Path(name)
    if candidate.is_file():
        return candidate.resolve()
    path = Path(forcefield_dir()) / name
    if not path.is_file():
        known = sorted(p.name for p in Path(forcefield_dir()).glob("*.xml"))
        raise ForceFieldNotFoundError(f"force field {name!r} not found; shipped files: {known}")
    return path
