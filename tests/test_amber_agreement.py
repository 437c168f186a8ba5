"""hybridff's Systems equal AmberTools' (antechamber -> parmchk2 -> tleap) term by term.

For each molecule below, both routes get the same molecule (same atom order and conformer) and
the same charges (gasteiger); the Systems are built in vacuum without cutoff. Compared:
energies per Force at the conformer and at a seeded distorted geometry, and the parameters
themselves (bonds, angles, torsion terms, particles, exceptions).

Atom types come from hybridff's own typer when ``hybridff.mm.atomtyping`` is importable (then the
types are first checked against antechamber's), otherwise from antechamber, in which case
parameter assignment and System building alone are under test.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from amber_reference import (
    AmberReference,
    Tolerances,
    amber_reference,
    antechamber_types,
    compare_parameters,
    group_energies,
    system_parameters,
)
from conftest import have_program, hybridff_typer

from hybridff.io.molecule import load_molecule
from hybridff.mm.parameters import ParameterizedMolecule, parameterize
from hybridff.mm.system import create_system

pytestmark = [
    pytest.mark.amber,
    pytest.mark.skipif(not have_program("tleap"), reason="AmberTools (tleap) not installed"),
]

#: name -> SMILES: charge states, aromatics and heteroaromatics, halogens, S and P groups.
MOLECULES: dict[str, str] = {
    "paracetamol": "CC(=O)Nc1ccc(O)cc1",  # secondary amide, phenol
    "acetate": "CC(=O)[O-]",  # carboxylate, anion
    "ethylammonium": "CC[NH3+]",  # ammonium, cation
    "glycine_zwitterion": "[NH3+]CC(=O)[O-]",
    "methylthiophene": "Cc1cccs1",  # thiophene
    "benzenesulfonamide": "NS(=O)(=O)c1ccccc1",
    "dimethylsulfone": "CS(C)(=O)=O",
    "ethyl_methyl_sulfide": "CCSC",  # thioether
    "methyl_thioacetate": "CSC(=O)C",  # thioester
    "mesylate": "CS(=O)(=O)[O-]",  # sulfonate, anion
    "nitrobenzene": "O=[N+]([O-])c1ccccc1",
    "naphthonitrile": "N#Cc1ccc2ccccc2c1",  # nitrile, fused aromatic
    "ethyl_acetate": "CCOC(C)=O",  # ester
    "diethylamine": "CCNCC",  # secondary amine
    "methylguanidinium": "CNC(N)=[NH2+]",
    "benzamidinium": "NC(=[NH2+])c1ccccc1",  # amidinium
    "phenylpropyne": "CC#Cc1ccccc1",  # alkyne
    "trifluorotoluene": "FC(F)(F)c1ccccc1",
    "dichloroethane": "ClCCCl",
    "bromochlorobenzene": "Brc1ccc(Cl)cc1",
    "iodobenzene": "Ic1ccccc1",
    "dimethylphosphate": "COP(=O)([O-])OC",  # phosphate, anion
    "dimethyl_methylphosphonate": "CP(=O)(OC)OC",  # phosphonate
    "pyridine": "c1ccncc1",
    "imidazole": "c1c[nH]cn1",
    "imidazolium": "c1c[nH+]c[nH]1",  # aromatic cation
    "indole": "c1ccc2[nH]ccc2c1",
    "thiazole": "c1cscn1",
    "acetophenone": "CC(=O)c1ccccc1",  # ketone
    "cyclopropanecarboxamide": "C1CC1C(=O)N",  # three-ring, primary amide
    "tert_butanol": "CC(C)(C)O",
    "ibuprofen": "CC(C)Cc1ccc(cc1)C(C)C(=O)O",  # carboxylic acid
    "ribofuranose": "OC1OC(CO)C(O)C1O",  # five-ring ether, polyol
}

_BUG_IMPROPER = (
    "known gap (improper atom order): for gaff2.dat's ca-ca-ca-c3 on ibuprofen's C8, tleap "
    "orders the atoms C11, C7, C8, C9 and OpenMM's amber ordering C7, C9, C8, C11. OpenMM breaks "
    "ties between equal outer types by the atom's index in the matched template, and template "
    "matching is by graph, so for symmetric molecules an automorphism decides; tleap's own order "
    "depends on the input order too (it even omits the ipso improper of a substituted benzene "
    "whose substituent is atom 0). Sorting the outer classes alphabetically or by atomic number "
    "fixes ibuprofen but breaks bromobenzene and aromatic C-H. 3.5e-5 relative in torsion energy")
#: molecule -> (bug, checks it breaks). Strict xfail: fixing the bug turns them into failures.
KNOWN_BUGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ibuprofen": (_BUG_IMPROPER, ("parameters", "energies")),  # improper on ca(-c3)
}

TERMS = ("HarmonicBondForce", "HarmonicAngleForce", "PeriodicTorsionForce", "NonbondedForce")
#: Energies: the two routes store the same parameters to ~1e-8 relative (prmtop %16.8E), so
#: a term agrees to far better than 1e-5 relative; 1e-4 kJ/mol absolute covers terms near zero.
ENERGY_REL, ENERGY_ABS = 1e-5, 1e-4
#: Parameters: prmtop keeps 8-9 significant digits; 1e-6 relative is tight but safe.
PARAMETER_TOLERANCES = Tolerances(rel=1e-6)


def _params(check: str) -> list:
    out = []
    for name in MOLECULES:
        marks = []
        if name in KNOWN_BUGS and check in KNOWN_BUGS[name][1]:
            marks.append(pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name][0]))
        out.append(pytest.param(name, id=name, marks=marks))
    return out


@dataclass
class Case:
    """One molecule through both routes."""

    name: str
    pm: ParameterizedMolecule
    reference: AmberReference
    typed_by: str  # "hybridff" or "antechamber"


def _build_case(name: str) -> Case:
    smiles = MOLECULES[name]
    if hybridff_typer() is not None:
        # the Amber route labels pairs and orders impropers by input atom order: compare with
        # hybridff's antechamber-compatible mode (the default is input-order independent)
        pm = parameterize(smiles, "gasteiger", pair_order="index")
        typed_by = "hybridff"
    else:
        mol = load_molecule(smiles)
        with tempfile.TemporaryDirectory(prefix="hybridff-test-") as tmp:
            types = antechamber_types(mol, Path(tmp))
        pm = parameterize(mol, "gasteiger", atom_types=types, pair_order="index")
        typed_by = "antechamber"
    return Case(name, pm, amber_reference(pm.mol, pm.charges), typed_by)


@pytest.fixture(scope="module")
def cases():
    """Cached per module: each molecule goes through both routes once (~0.5 s each)."""
    cache: dict[str, Case] = {}

    def get(name: str) -> Case:
        if name not in cache:
            cache[name] = _build_case(name)
        return cache[name]

    return get


def assert_same_types(case: Case) -> None:
    """hybridff's atom types equal antechamber's (trivially so when antechamber typed both)."""
    ours, ref = case.pm.atom_types, case.reference.atom_types
    bad = [f"{i} {case.pm.names[i]}: hybridff {a}, antechamber {b}"
           for i, (a, b) in enumerate(zip(ours, ref, strict=True)) if a != b]
    assert not bad, (f"{case.name} ({MOLECULES[case.name]}): hybridff's typer disagrees with "
                     "antechamber -at gaff2 on " + "; ".join(bad))


def energy_table(ours: dict[str, float], ref: dict[str, float]) -> str:
    """The energy components side by side, for failure messages."""
    lines = [f"{'term':24s}{'hybridff':>18s}{'reference':>18s}{'abs diff':>12s}{'rel diff':>12s}"]
    for term in TERMS:
        a, b = ours.get(term, float("nan")), ref.get(term, float("nan"))
        rel = abs(a - b) / max(abs(b), 1e-30)
        lines.append(f"{term:24s}{a:18.8f}{b:18.8f}{abs(a - b):12.3e}{rel:12.3e}")
    return "\n".join(lines)


def geometries(pm: ParameterizedMolecule) -> dict[str, np.ndarray]:
    """The conformer and a seeded distortion of it (0.01 nm per coordinate), in nm."""
    pos = pm.mol.GetConformer().GetPositions() * 0.1
    rng = np.random.default_rng(20240611)
    return {"conformer": pos, "distorted": pos + rng.normal(0.0, 0.01, pos.shape)}


@pytest.mark.parametrize("name", _params("types"))
def test_atom_types_match_antechamber(name: str, cases) -> None:
    if hybridff_typer() is None:
        pytest.skip("hybridff.mm.atomtyping not available: antechamber's types are used")
    assert_same_types(cases(name))


@pytest.mark.parametrize("name", _params("parameters"))
def test_parameters_match_amber(name: str, cases) -> None:
    """Every bond, angle, torsion term, particle and exception has the reference's values."""
    case = cases(name)
    assert_same_types(case)
    system, _, _ = create_system(case.pm, "NoCutoff")
    diffs = compare_parameters(system_parameters(system), system_parameters(case.reference.system),
                               PARAMETER_TOLERANCES, labels=case.pm.names)
    assert not diffs, (f"{name} (types by {case.typed_by}): {len(diffs)} parameter differences\n"
                       + "\n".join(diffs[:40]))


@pytest.mark.parametrize("name", _params("energies"))
def test_energies_match_amber(name: str, cases) -> None:
    """Each term's energy equals the reference's, at the conformer and a distorted geometry."""
    case = cases(name)
    assert_same_types(case)
    system, _, _ = create_system(case.pm, "NoCutoff")
    failures = []
    for label, pos in geometries(case.pm).items():
        ours = group_energies(system, pos)
        ref = group_energies(case.reference.system, pos)
        bad = [t for t in TERMS
               if not abs(ours[t] - ref[t]) <= max(ENERGY_ABS, ENERGY_REL * abs(ref[t]))]
        if bad:
            failures.append(f"{label}: {', '.join(bad)} differ\n{energy_table(ours, ref)}")
    assert not failures, f"{name} ({MOLECULES[name]}):\n" + "\n".join(failures)


def test_every_term_is_exercised(cases) -> None:
    """Guard against a vacuous comparison: the set covers each term with non-zero energy."""
    seen = {t: 0.0 for t in TERMS}
    for name in ("paracetamol", "acetate", "benzenesulfonamide", "dimethylphosphate"):
        case = cases(name)
        system, _, _ = create_system(case.pm, "NoCutoff")
        energies = group_energies(system, geometries(case.pm)["distorted"])
        for t in TERMS:
            seen[t] = max(seen[t], abs(energies[t]))
    assert all(v > 1.0 for v in seen.values()), seen
    charges = {round(float(np.sum(cases(n).pm.charges))) for n in
               ("acetate", "ethylammonium", "glycine_zwitterion", "paracetamol")}
    assert charges == {-1, 0, 1}


# --- periodic: the ligand in TIP3P water with PME ---------------------------------------------

PME_LIGAND = "CC(=O)Nc1ccc(O)cc1"
PME_BOX_NM = 3.0
#: PME: both Systems hold the same parameters to ~1e-9 relative (checked below) and the
#: Reference platform picks the same alpha and grid from the same box and tolerance, so the
#: energies differ only by rounding of the stored charges. Measured (paracetamol, 2612 atoms):
#: bonds 2e-15, angles 5e-8, torsions 1e-15, nonbonded 4e-10 relative (1.5e-5 of -34114 kJ/mol).
#: 1e-7 relative (1e-4 kJ/mol absolute floor) leaves two orders of magnitude of margin.
PME_REL, PME_ABS = 1e-7, 1e-4


def _pme_parameters(system, positions_nm: np.ndarray, box) -> tuple:
    import openmm
    from openmm import unit

    ctx = openmm.Context(system, openmm.VerletIntegrator(0.001),
                         openmm.Platform.getPlatformByName("Reference"))
    ctx.setPeriodicBoxVectors(*box)
    ctx.setPositions(positions_nm * unit.nanometer)
    nb = next(f for f in system.getForces() if type(f).__name__ == "NonbondedForce")
    return tuple(nb.getPMEParametersInContext(ctx))


def test_pme_solvated_matches_tleap() -> None:
    """Ligand + ~870 TIP3P waters, PME 1.0 nm / switch 0.9 nm / dispersion correction."""
    from amber_reference import amber_solvated_reference
    from conftest import solvated
    from openmm import app, unit

    from hybridff.mm.system import build_system

    sol = solvated(PME_LIGAND, PME_BOX_NM)
    settings = dict(cutoff=1.0, switch=0.9, tol=5e-4)
    ours = build_system(sol.forcefield, sol.topology, "PME", settings["cutoff"], settings["switch"],
                        dispersion_correction=True, ewald_error_tolerance=settings["tol"],
                        remove_cmmotion=False)
    ref, _ = amber_solvated_reference(
        sol.pm, sol.topology, sol.positions_nm, sol.box_nm, nonbondedMethod=app.PME,
        nonbondedCutoff=settings["cutoff"] * unit.nanometer,
        switchDistance=settings["switch"] * unit.nanometer,
        ewaldErrorTolerance=settings["tol"], rigidWater=True, constraints=None)
    for f in ref.getForces():
        if type(f).__name__ == "NonbondedForce":
            f.setUseDispersionCorrection(True)  # explicit: the comparison must not rely on defaults
    diffs = compare_parameters(system_parameters(ours), system_parameters(ref), PARAMETER_TOLERANCES)
    assert not diffs, "\n".join(diffs[:40])
    box = sol.box_vectors
    alpha_ours, *grid_ours = _pme_parameters(ours, sol.positions_nm, box)
    alpha_ref, *grid_ref = _pme_parameters(ref, sol.positions_nm, box)
    assert grid_ours == grid_ref and abs(alpha_ours - alpha_ref) < 1e-12
    e_ours = group_energies(ours, sol.positions_nm, box)
    e_ref = group_energies(ref, sol.positions_nm, box)
    bad = [t for t in TERMS if not abs(e_ours[t] - e_ref[t]) <= max(PME_ABS, PME_REL * abs(e_ref[t]))]
    assert not bad, f"PME terms {bad} differ\n{energy_table(e_ours, e_ref)}"
