"""The records of a many-molecule input (an SDF record, a SMILES line), split without
parsing them, and the output name of each."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hybridff.exceptions import MoleculeInputError

#: input suffixes read record by record
BATCH_SUFFIXES = (".sdf", ".sd", ".mol", ".smi")
#: longest output name (characters, before the suffix)
MAX_STEM = 80


@dataclass(frozen=True)
class MoleculeRecord:
    """Record ``index`` (from 0, in file order) of an input: its ``kind`` (``"sdf"`` or
    ``"smi"``), its ``text``, where it is (for messages) and its output ``name``."""

    index: int
    name: str
    kind: str
    text: str
    where: str


def _safe_stem(title: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._+-]+", "_", title.strip())
    return stem.strip("._")[:MAX_STEM].rstrip("._")


def output_stems(titles: list[str]) -> list[str]:
    """The output name of each record: its title with characters other than letters, digits
    and ``._+-`` replaced by ``_`` (at most :data:`MAX_STEM` characters), ``mol<k>`` (k from 1)
    when nothing is left; a name taken by an earlier record (ignoring case) gets ``-<k>``."""
    taken: set[str] = set()
    stems = []
    for k, title in enumerate(titles, start=1):
        stem = _safe_stem(title) or f"mol{k}"
        if stem.casefold() in taken:
            base, n = f"{stem}-{k}", 1
            stem = base
            while stem.casefold() in taken:
                n += 1
                stem = f"{base}-{n}"
        taken.add(stem.casefold())
        stems.append(stem)
    return stems


def read_records(source: str | os.PathLike) -> list[MoleculeRecord]:
    """The records of an SDF/MOL or SMI file (a SMILES string: one record), unparsed.

    SDF records end at ``$$$$`` lines; a SMI line holds a SMILES and optionally a name (blank
    lines and ``#`` comments skipped)."""
    from hybridff.io.molecule import _names_a_file

    text_source = str(source)
    if not isinstance(source, Path) and not _names_a_file(text_source):
        return [MoleculeRecord(0, "mol1", "smi", text_source.strip(), "the SMILES")]
    path = Path(source)
    suffix = path.suffix.lower()
    if not path.exists():
        raise MoleculeInputError(f"molecule file {str(path)!r} does not exist")
    if path.is_dir():
        raise MoleculeInputError(f"{path} is a folder, not a molecule file; give an SDF or SMI "
                                 "file")
    if suffix not in BATCH_SUFFIXES:
        raise MoleculeInputError(
            f"{path}: one output per molecule reads {', '.join(BATCH_SUFFIXES)} files, not "
            f"{suffix or 'a file without suffix'}; convert it to SDF (e.g. obabel in.mol2 "
            "-O in.sdf)")
    try:
        lines = path.read_text(errors="replace").splitlines(keepends=True)
    except OSError as exc:
        raise MoleculeInputError(f"{path}: cannot read the file ({exc.strerror}); check its "
                                 "permissions") from None
    raw: list[tuple[str, str, str]] = []  # (title, text, where)
    if suffix == ".smi":
        for lineno, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields or fields[0].startswith("#"):
                continue
            raw.append((fields[1] if len(fields) > 1 else "", line.strip(), f"{path}:{lineno}"))
        kind = "smi"
    else:
        start = 0
        for lineno, line in enumerate(lines, start=1):
            if line.strip() == "$$$$" or lineno == len(lines):
                block = lines[start:lineno]
                if any(x.strip() for x in block):
                    raw.append((block[0].strip(), "".join(block),
                                f"{path}, record {len(raw) + 1} (line {start + 1})"))
                start = lineno
        kind = "sdf"
    if not raw:
        raise MoleculeInputError(f"{path}: no molecule records found (empty, or not an "
                                 f"{'SMI' if kind == 'smi' else 'SDF'} file)")
    stems = output_stems([title for title, _, _ in raw])
    return [MoleculeRecord(k, stems[k], kind, text, where)
            for k, (_, text, where) in enumerate(raw)]
