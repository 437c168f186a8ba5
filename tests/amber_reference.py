"""The independent reference route: antechamber (GAFF2 types) -> parmchk2 -> tleap -> prmtop.

Used by the tests to compare hybridff's Systems term by term against AmberTools' own
parameterization of the same molecule with the same charges.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import openmm
from openmm import app, unit
from rdkit import Chem

from hybridff.io.molecule import atom_names
from hybridff.mm.ambertools import mol2_text, run_program


@dataclass
class AmberReference:
    atom_types: list[str]
    system: openmm.System
    prmtop: app.AmberPrmtopFile


def antechamber_types(mol: Chem.Mol, workdir: Path) -> list[str]:
    """GAFF2 atom types that antechamber assigns to ``mol`` (RDKit atom order)."""
    sdf = workdir / "in.sdf"
    w = Chem.SDWriter(str(sdf))
    w.SetKekulize(True)
    w.write(mol)
    w.close()
    run_program("antechamber", ["-i", "in.sdf", "-fi", "sdf", "-o", "ac.mol2", "-fo", "mol2",
                                "-at", "gaff2", "-c", "dc", "-nc", str(Chem.GetFormalCharge(mol)),
                                "-pf", "y", "-dr", "no"], cwd=workdir)
    types = []
    in_atoms = False
    for line in (workdir / "ac.mol2").read_text().splitlines():
        if line.startswith("@<TRIPOS>"):
            in_atoms = line.strip() == "@<TRIPOS>ATOM"
            continue
        if in_atoms and line.strip():
            types.append(line.split()[5])
    if len(types) != mol.GetNumAtoms():
        raise RuntimeError("antechamber changed the number of atoms")
    return types


def amber_reference(mol: Chem.Mol, charges: np.ndarray, nonbonded_method=app.NoCutoff,
                    **create_kwargs) -> AmberReference:
    """Parameterize ``mol`` with AmberTools alone, with the given charges."""
    with tempfile.TemporaryDirectory(prefix="hybridff-ref-") as tmp:
        d = Path(tmp)
        types = antechamber_types(mol, d)
        (d / "mol.mol2").write_text(mol2_text(mol, atom_names(mol), types, charges))
        run_program("parmchk2", ["-i", "mol.mol2", "-f", "mol2", "-o", "mol.frcmod", "-s", "2"],
                    cwd=d)
        (d / "leap.in").write_text(
            "source leaprc.gaff2\nloadamberparams mol.frcmod\nm = loadmol2 mol.mol2\n"
            "saveamberparm m mol.prmtop mol.inpcrd\nquit\n")
        run_program("tleap", ["-f", "leap.in"], cwd=d)
        prmtop = app.AmberPrmtopFile(str(d / "mol.prmtop"))
        system = prmtop.createSystem(nonbondedMethod=nonbonded_method, **create_kwargs)
    undo_tleap_pi(system)
    return AmberReference(types, system, prmtop)


#: tleap converts degrees to radians with PI = 3.141594 (AmberTools' own constant), which
#: shifts every angle minimum and torsion phase by 4.3e-7 relative. Undo it, so the comparison
#: measures parameter assignment rather than that constant.
TLEAP_PI = 3.141594


def undo_tleap_pi(system: openmm.System) -> None:
    """Rescale equilibrium angles and torsion phases of a tleap-made System to the exact pi."""
    scale = np.pi / TLEAP_PI
    for f in system.getForces():
        if isinstance(f, openmm.HarmonicAngleForce):
            for i in range(f.getNumAngles()):
                a, b, c, theta, k = f.getAngleParameters(i)
                f.setAngleParameters(i, a, b, c, theta * scale, k)
        elif isinstance(f, openmm.PeriodicTorsionForce):
            for i in range(f.getNumTorsions()):
                a, b, c, d, n, phase, k = f.getTorsionParameters(i)
                f.setTorsionParameters(i, a, b, c, d, n, phase * scale, k)


def group_energies(system: openmm.System, positions_nm: np.ndarray, box=None) -> dict[str, float]:
    """Energy (kJ/mol) per Force class, each class in its own group, Reference platform."""
    system = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    names = {}
    for i, f in enumerate(system.getForces()):
        f.setForceGroup(i)
        names[i] = type(f).__name__
    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    if box is not None:
        ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions_nm * unit.nanometer)
    out: dict[str, float] = {}
    for i, name in names.items():
        e = ctx.getState(getEnergy=True, groups={i}).getPotentialEnergy()
        out[name] = out.get(name, 0.0) + e.value_in_unit(unit.kilojoule_per_mole)
    return out


# --- parameters of a System, keyed by atoms, for direct comparison ---------------------------

Key = tuple[int, ...]


@dataclass
class SystemParameters:
    """The bonded and nonbonded parameters of a System in plain floats (nm, rad, kJ/mol, e).

    Bonds and angles are keyed by their atoms in canonical direction (first index < last);
    torsions by their four atoms in canonical direction with a sorted list of
    ``(periodicity, phase, k)`` terms (terms with k == 0 are dropped: they add no energy, and
    the two routes differ in whether they keep the zero-barrier terms some GAFF2 torsions list).
    """

    bonds: dict[Key, tuple[float, float]]
    angles: dict[Key, tuple[float, float]]
    torsions: dict[Key, list[tuple[int, float, float]]]
    particles: list[tuple[float, float, float]]
    exceptions: dict[Key, tuple[float, float, float]]


def _canonical(atoms: tuple[int, ...]) -> Key:
    return atoms if atoms[0] < atoms[-1] else tuple(reversed(atoms))


def system_parameters(system: openmm.System) -> SystemParameters:
    """Extract :class:`SystemParameters` (each Force class must occur at most once)."""
    bonds: dict[Key, tuple[float, float]] = {}
    angles: dict[Key, tuple[float, float]] = {}
    torsions: dict[Key, list[tuple[int, float, float]]] = {}
    particles: list[tuple[float, float, float]] = []
    exceptions: dict[Key, tuple[float, float, float]] = {}
    seen: set[str] = set()
    for f in system.getForces():
        name = type(f).__name__
        if name in seen and name != "CMMotionRemover":
            raise ValueError(f"System has more than one {name}")
        seen.add(name)
        if isinstance(f, openmm.HarmonicBondForce):
            for i in range(f.getNumBonds()):
                a, b, r0, k = f.getBondParameters(i)
                key = _canonical((a, b))
                if key in bonds:
                    raise ValueError(f"bond {key} listed twice")
                bonds[key] = (r0.value_in_unit(unit.nanometer),
                              k.value_in_unit(unit.kilojoule_per_mole / unit.nanometer**2))
        elif isinstance(f, openmm.HarmonicAngleForce):
            for i in range(f.getNumAngles()):
                a, b, c, theta, k = f.getAngleParameters(i)
                key = _canonical((a, b, c))
                if key in angles:
                    raise ValueError(f"angle {key} listed twice")
                angles[key] = (theta.value_in_unit(unit.radian),
                               k.value_in_unit(unit.kilojoule_per_mole / unit.radian**2))
        elif isinstance(f, openmm.PeriodicTorsionForce):
            for i in range(f.getNumTorsions()):
                a, b, c, d, n, phase, k = f.getTorsionParameters(i)
                kk = k.value_in_unit(unit.kilojoule_per_mole)
                if kk == 0.0:
                    continue
                torsions.setdefault(_canonical((a, b, c, d)), []).append(
                    (int(n), phase.value_in_unit(unit.radian), kk))
        elif isinstance(f, openmm.NonbondedForce):
            for i in range(f.getNumParticles()):
                q, sig, eps = f.getParticleParameters(i)
                particles.append((q.value_in_unit(unit.elementary_charge),
                                  sig.value_in_unit(unit.nanometer),
                                  eps.value_in_unit(unit.kilojoule_per_mole)))
            for i in range(f.getNumExceptions()):
                a, b, qq, sig, eps = f.getExceptionParameters(i)
                exceptions[_canonical((a, b))] = (
                    qq.value_in_unit(unit.elementary_charge**2),
                    sig.value_in_unit(unit.nanometer), eps.value_in_unit(unit.kilojoule_per_mole))
    for terms in torsions.values():
        terms.sort()
    return SystemParameters(bonds, angles, torsions, particles, exceptions)


def _close(a: float, b: float, rel: float, abs_: float) -> bool:
    return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))


@dataclass
class Tolerances:
    """Relative (and absolute floor) tolerances of the direct parameter comparison."""

    rel: float = 1e-6
    length_abs: float = 1e-9  # nm
    angle_abs: float = 1e-6  # rad
    energy_abs: float = 1e-9  # kJ/mol (epsilon, torsion k)
    charge_abs: float = 1e-8  # e (and e^2 for chargeProd)


def compare_parameters(ours: SystemParameters, ref: SystemParameters,
                       tol: Tolerances | None = None, labels: list[str] | None = None
                       ) -> list[str]:
    """Differences between two Systems' parameters, one readable line each (empty: same)."""
    tol = tol or Tolerances()
    out: list[str] = []

    def lab(key: Key) -> str:
        return "-".join(labels[i] if labels else str(i) for i in key)

    def compare_keyed(kind, a, b, check):
        for key in sorted(a.keys() - b.keys()):
            out.append(f"{kind} {lab(key)}: only in hybridff {a[key]}")
        for key in sorted(b.keys() - a.keys()):
            out.append(f"{kind} {lab(key)}: only in reference {b[key]}")
        for key in sorted(a.keys() & b.keys()):
            if not check(a[key], b[key]):
                out.append(f"{kind} {lab(key)}: hybridff {a[key]} reference {b[key]}")

    compare_keyed("bond", ours.bonds, ref.bonds,
                  lambda x, y: _close(x[0], y[0], tol.rel, tol.length_abs)
                  and _close(x[1], y[1], tol.rel, tol.energy_abs))
    compare_keyed("angle", ours.angles, ref.angles,
                  lambda x, y: _close(x[0], y[0], tol.rel, tol.angle_abs)
                  and _close(x[1], y[1], tol.rel, tol.energy_abs))

    def same_terms(x, y):
        return len(x) == len(y) and all(
            n1 == n2 and _close(p1, p2, tol.rel, tol.angle_abs)
            and _close(k1, k2, tol.rel, tol.energy_abs)
            for (n1, p1, k1), (n2, p2, k2) in zip(x, y, strict=True))

    compare_keyed("torsion", ours.torsions, ref.torsions, same_terms)

    def same_nonbonded(x, y):
        q_ok = _close(x[0], y[0], tol.rel, tol.charge_abs)
        eps_ok = _close(x[2], y[2], tol.rel, tol.energy_abs)
        # sigma is meaningless where epsilon is zero (either route may store any value)
        sig_ok = max(x[2], y[2]) == 0.0 or _close(x[1], y[1], tol.rel, tol.length_abs)
        return q_ok and eps_ok and sig_ok

    if len(ours.particles) != len(ref.particles):
        out.append(f"particles: hybridff {len(ours.particles)} reference {len(ref.particles)}")
    for i, (x, y) in enumerate(zip(ours.particles, ref.particles, strict=False)):
        if not same_nonbonded(x, y):
            out.append(f"particle {lab((i,))}: hybridff (q, sigma, eps) {x} reference {y}")
    compare_keyed("exception", ours.exceptions, ref.exceptions, same_nonbonded)
    return out


def amber_solvated_reference(pm, topology: app.Topology, positions_nm: np.ndarray, box_nm: float,
                             **create_kwargs) -> tuple[openmm.System, app.AmberPrmtopFile]:
    """The same solvated system made by tleap: GAFF2 + frcmod + ligand mol2 + TIP3P, loadpdb.

    ``pm`` is the ParameterizedMolecule of the ligand (residue ``pm.residue_name``, its atom
    names, charges); the waters are residues HOH with atoms O, H1, H2 (tleap maps HOH to TP3).
    Returns the System (tleap's PI undone) and the prmtop; the prmtop's atom order is checked
    against ``topology`` (residue and atom names), so the same positions can be used.
    """
    with tempfile.TemporaryDirectory(prefix="hybridff-ref-solv-") as tmp:
        d = Path(tmp)
        types = antechamber_types(pm.mol, d)
        res = pm.residue_name
        (d / "mol.mol2").write_text(mol2_text(pm.mol, pm.names, types, pm.charges, resname=res))
        run_program("parmchk2", ["-i", "mol.mol2", "-f", "mol2", "-o", "mol.frcmod", "-s", "2"],
                    cwd=d)
        with open(d / "solvated.pdb", "w") as fh:
            app.PDBFile.writeFile(topology, positions_nm * 10.0 * unit.angstrom, fh)
        b = box_nm * 10.0
        (d / "leap.in").write_text(
            "source leaprc.gaff2\nsource leaprc.water.tip3p\nloadamberparams mol.frcmod\n"
            f"{res} = loadmol2 mol.mol2\nsys = loadpdb solvated.pdb\n"
            f"set sys box {{{b:.6f} {b:.6f} {b:.6f}}}\n"
            "saveamberparm sys sys.prmtop sys.inpcrd\nquit\n")
        log = run_program("tleap", ["-f", "leap.in"], cwd=d)
        if not (d / "sys.prmtop").exists():
            raise RuntimeError(f"tleap wrote no prmtop:\n{log[-3000:]}")
        prmtop = app.AmberPrmtopFile(str(d / "sys.prmtop"))
    ours = [(a.residue.name, a.name) for a in topology.atoms()]
    theirs = [(a.residue.name, a.name) for a in prmtop.topology.atoms()]
    water = {"HOH", "WAT", "TP3"}
    for i, ((r1, n1), (r2, n2)) in enumerate(zip(ours, theirs, strict=True)):
        if n1 != n2 or (r1 != r2 and not {r1, r2} <= water):
            raise RuntimeError(f"atom {i}: {r1}:{n1} here but {r2}:{n2} in tleap's prmtop")
    system = prmtop.createSystem(**create_kwargs)
    undo_tleap_pi(system)
    return system, prmtop
