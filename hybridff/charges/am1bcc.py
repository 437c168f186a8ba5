"""AM1-BCC charges from AmberTools' ``antechamber`` (AM1 by ``sqm``, then bond charge corrections).

The molecule is written as an SDF (RDKit bond orders and formal charges), so antechamber
does not have to guess the chemistry; ``-j 5`` keeps the input bond orders and only fills in
what is missing, ``-seq n`` keeps the atom order, and charges are read back from the mol2
antechamber writes, in RDKit atom order.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from rdkit import Chem

from hybridff.charges import register_charge_method
from hybridff.exceptions import ChargeAssignmentError, ExternalToolError
from hybridff.io.molecule import ensure_conformer, formal_charge
from hybridff.mm.ambertools import find_program

#: sqm keywords: AM1, tight SCF; ``maxcyc`` is filled in from the ``optimize`` option.
SQM_KEYWORDS = "qm_theory='AM1', grms_tol=0.0005, scfconv=1.d-10, ndiis_attempts=700, maxcyc={maxcyc}"

#: Largest |sum(q) - formal charge| of antechamber's output accepted as its rounding (e).
MAX_OUTPUT_RESIDUAL = 0.02

_OPTIONS = ("timeout", "optimize", "atom_type", "keep_files")


def find_antechamber() -> str:
    """Path of the ``antechamber`` executable; :class:`ExternalToolError` with a hint if missing
    (:func:`hybridff.mm.ambertools.find_program`: PATH, then this interpreter's bin/)."""
    return find_program("antechamber", needed_for="AM1-BCC charges")


def _tail(path: Path, lines: int = 15) -> str:
    if not path.exists():
        return "(no output file)"
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])


def parse_mol2_charges(path: Path) -> np.ndarray:
    """Partial charges (9th column of @<TRIPOS>ATOM) of a mol2 file, in file order."""
    charges: list[float] = []
    in_atoms = False
    for line in path.read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            in_atoms = line.strip() == "@<TRIPOS>ATOM"
            continue
        if in_atoms and line.strip():
            fields = line.split()
            if len(fields) < 9:
                raise ExternalToolError(f"{path}: malformed mol2 atom line {line!r}")
            charges.append(float(fields[8]))
    return np.array(charges, dtype=np.float64)


def _describe(mol: Chem.Mol) -> str:
    name = mol.GetProp("_Name") if mol.HasProp("_Name") else ""
    smi = Chem.MolToSmiles(Chem.RemoveHs(mol, sanitize=False))
    return f"{name + ' ' if name else ''}{smi} (formal charge {formal_charge(mol):+d})"


@register_charge_method("am1bcc")
def am1bcc_charges(
    mol: Chem.Mol,
    timeout: float = 600.0,
    optimize: bool = True,
    atom_type: str = "gaff2",
    keep_files: str | None = None,
    **unknown,
) -> np.ndarray:
    """AM1-BCC charges (e) of ``mol`` (explicit hydrogens) computed by antechamber/sqm.

    ``optimize``: let sqm relax the geometry at AM1 first (the AM1-BCC recipe); ``False``
    computes the charges on the given conformer as is (faster). ``timeout`` in seconds.
    ``keep_files``: a directory to keep antechamber's working files in (debugging).
    """
    if unknown:
        raise ChargeAssignmentError(
            f"am1bcc: unknown option(s) {', '.join(sorted(unknown))}; known: {', '.join(_OPTIONS)}"
        )
    exe = find_antechamber()
    if any(a.GetNumImplicitHs() for a in mol.GetAtoms()):
        raise ChargeAssignmentError(
            "am1bcc needs explicit hydrogens; load the molecule with hybridff.io.molecule.load_molecule"
        )
    work = Chem.Mol(mol)
    if work.GetNumConformers() == 0 or not work.GetConformer().Is3D():
        work = ensure_conformer(work)
    net = formal_charge(work)
    tmp = tempfile.mkdtemp(prefix="hybridff-am1bcc-")
    tmpdir = Path(tmp)
    try:
        Chem.MolToMolFile(work, str(tmpdir / "in.sdf"), kekulize=True)
        cmd = [
            exe, "-i", "in.sdf", "-fi", "mdl", "-o", "out.mol2", "-fo", "mol2",
            "-c", "bcc", "-nc", str(net), "-at", atom_type, "-j", "5", "-seq", "n",
            "-dr", "n", "-pf", "y", "-s", "0",
            "-ek", SQM_KEYWORDS.format(maxcyc=9999 if optimize else 0),
        ]
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        bindir = str(Path(exe).parent)
        env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
        try:
            proc = subprocess.run(
                cmd, cwd=tmpdir, capture_output=True, text=True, timeout=timeout, env=env
            )
        except subprocess.TimeoutExpired as exc:
            raise ExternalToolError(
                f"antechamber/sqm did not finish within {timeout:g} s for {_describe(work)}; "
                "raise the timeout option or use the 'ml' charge method"
            ) from exc
        out_mol2 = tmpdir / "out.mol2"
        if proc.returncode != 0 or not out_mol2.exists():
            sqm_tail = _tail(tmpdir / "sqm.out")
            raise ExternalToolError(
                f"antechamber -c bcc failed (exit code {proc.returncode}) for {_describe(work)}.\n"
                f"antechamber output (tail):\n{(proc.stdout + proc.stderr).strip()[-1500:]}\n"
                f"sqm.out (tail):\n{sqm_tail}"
            )
        q = parse_mol2_charges(out_mol2)
    finally:
        if keep_files:
            shutil.copytree(tmpdir, keep_files, dirs_exist_ok=True)
        shutil.rmtree(tmpdir, ignore_errors=True)
    if q.shape != (mol.GetNumAtoms(),):
        raise ExternalToolError(
            f"antechamber returned {q.size} charges for {mol.GetNumAtoms()} atoms of {_describe(work)}"
        )
    residual = float(q.sum()) - net
    if abs(residual) > MAX_OUTPUT_RESIDUAL:
        raise ExternalToolError(
            f"antechamber's AM1-BCC charges of {_describe(work)} sum to {q.sum():.4f} e, not the "
            f"formal charge {net:+d} e; check the formal charges and protonation of the input"
        )
    # antechamber writes charges rounded to 1e-4 e and then averages equivalent atoms, which
    # leaves a residual of a few 1e-3 e: spread it evenly (keeps equivalent atoms equal)
    return q - residual / q.size
