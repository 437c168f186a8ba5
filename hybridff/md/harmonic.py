"""QM harmonic IR reference: normal modes and IR intensities of one molecule.

The geometry is optimized with ASE's BFGS on the QM engine (:mod:`hybridff.labels.qm`, GFN2-xTB by
default), then the Hessian comes from central finite differences of the engine's forces and
the dipole derivatives (atomic polar tensors) from the same displaced geometries' dipoles:

- mass-weighted Hessian ``H_ij / sqrt(m_i m_j)`` (masses of :mod:`hybridff.elements`) with the
  translations and rotations (5 for a linear molecule) projected out: ``3N - 6`` (``3N - 5``)
  internal modes;
- wavenumbers ``sqrt(lambda) / (2 pi c)``; hybridff's units make ``lambda`` (kJ/mol/nm^2/Da)
  a squared angular frequency in rad^2/ps^2; an imaginary mode is reported negative;
- intensities ``A_k = N_A pi / (3 c^2) |d mu / d Q_k|^2`` (km/mol) with ``Q_k`` the
  mass-weighted normal coordinate; ``d mu / d Q_k = sum_j (d mu / d x_j) e_kj / sqrt(m_j)``,
  the Cartesian dipole derivatives contracted with the normal mode (to first order the same
  as differentiating the dipole along the mode, without more QM calls);
- the spectrum: each mode a Lorentzian of full width ``fwhm`` at half maximum.

:func:`band_positions` finds each QM mode in an MD run: it aligns every frame onto the QM
geometry (mass-weighted Kabsch on the heavy atoms), projects the mass-weighted velocities on
the mode and takes the highest peak of that projection's power spectrum, i.e. the frequency
at which the motion most like the QM mode vibrates in the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybridff import units
from hybridff.elements import SYMBOL, atomic_masses
from hybridff.exceptions import DataFormatError, ExternalToolError, MoleculeInputError

logger = logging.getLogger(__name__)

#: finite-difference step of the Hessian, nm (0.005 Angstrom)
DEFAULT_STEP_NM = 5e-4
#: convergence of the geometry optimization: largest force, kJ/mol/nm (about 1e-3 eV/A)
DEFAULT_FMAX = 0.1
#: Lorentzian full width at half maximum of the broadened reference, cm^-1
DEFAULT_FWHM = 20.0
#: file name of the cached reference in an output folder
CACHE_NAME = "qm_harmonic.json"
#: version of the cache's content (a new version recomputes)
CACHE_VERSION = 1


@dataclass
class HarmonicModes:
    """Harmonic normal modes of one molecule at its optimized geometry.

    ``wavenumbers`` (M,) cm^-1 ascending, negative for imaginary modes; ``intensities`` (M,)
    km/mol; ``modes`` (M, N, 3) mass-weighted eigenvectors (unit length); ``external`` the
    wavenumbers of the translations/rotations before projection (near 0 at a minimum)."""

    numbers: np.ndarray
    positions: np.ndarray  # nm, optimized
    wavenumbers: np.ndarray
    intensities: np.ndarray
    modes: np.ndarray
    external: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def spectrum(self, grid: np.ndarray | None = None, fwhm: float = DEFAULT_FWHM) -> Any:
        """The Lorentzian-broadened spectrum as a :class:`hybridff.md.spectrum.Spectrum`
        (km/mol per cm^-1 scaled to max 1 in the band range, like the MD spectra)."""
        from hybridff.md.spectrum import BAND_RANGE, Spectrum

        nu = np.arange(0.0, BAND_RANGE[1] + 500.0, 1.0) if grid is None else np.asarray(grid)
        half = 0.5 * fwhm
        real = self.wavenumbers > 0
        line = half / np.pi / ((nu[:, None] - self.wavenumbers[real]) ** 2 + half**2)
        y = line @ self.intensities[real]
        inside = (nu >= BAND_RANGE[0]) & (nu <= BAND_RANGE[1])
        top = float(y[inside].max()) if inside.any() else float(y.max())
        info = {"source": "QM harmonic", "fwhm_cm-1": float(fwhm), **self.info}
        return Spectrum(nu, y / top if top > 0 else y, info)

    def to_json(self) -> dict[str, Any]:
        """A JSON-able record (the cache file's content)."""
        return {"version": CACHE_VERSION, "numbers": self.numbers.tolist(),
                "positions_nm": self.positions.tolist(),
                "wavenumbers_cm-1": self.wavenumbers.tolist(),
                "intensities_km_per_mol": self.intensities.tolist(),
                "modes": self.modes.tolist(), "external_cm-1": self.external.tolist(),
                "info": self.info}

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> HarmonicModes:
        """Inverse of :meth:`to_json`."""
        return cls(np.array(record["numbers"], dtype=int),
                   np.array(record["positions_nm"], dtype=np.float64),
                   np.array(record["wavenumbers_cm-1"], dtype=np.float64),
                   np.array(record["intensities_km_per_mol"], dtype=np.float64),
                   np.array(record["modes"], dtype=np.float64),
                   np.array(record["external_cm-1"], dtype=np.float64), dict(record["info"]))


# --------------------------------------------------------------------------- QM calls


def _calculator(engine: Any, charge: int, multiplicity: int) -> Any:
    """An ASE calculator over a hybridff QM engine (energy, forces, dipole in ASE units)."""
    from ase.calculators.calculator import Calculator, all_changes

    class EngineCalculator(Calculator):
        implemented_properties = ["energy", "forces", "dipole"]

        def calculate(self, atoms: Any = None, properties: Any = None,
                      system_changes: Any = all_changes) -> None:
            super().calculate(atoms, properties, system_changes)
            result = engine.compute(self.atoms.numbers,
                                    self.atoms.positions * units.ANGSTROM_TO_NM,
                                    charge, multiplicity)
            self.results = {
                "energy": result.energy * units.KJ_PER_MOL_TO_EV,
                "forces": result.forces / units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM,
                "dipole": (np.zeros(3) if result.dipole is None
                           else result.dipole * units.E_NM_TO_E_ANGSTROM)}

    return EngineCalculator()


def optimize_geometry(engine: Any, numbers: np.ndarray, positions_nm: np.ndarray,
                      charge: int = 0, multiplicity: int = 1, fmax: float = DEFAULT_FMAX,
                      max_steps: int = 1000) -> tuple[np.ndarray, int]:
    """A local minimum (nm) from ``positions_nm`` with ASE's BFGS on ``engine``; and the
    number of optimizer steps. ``fmax``: largest force at convergence, kJ/mol/nm."""
    from ase import Atoms
    from ase.optimize import BFGS

    atoms = Atoms(numbers=np.asarray(numbers), positions=np.asarray(positions_nm)
                  * units.NM_TO_ANGSTROM)
    atoms.calc = _calculator(engine, charge, multiplicity)
    optimizer = BFGS(atoms, logfile=None)
    converged = optimizer.run(fmax=fmax / units.EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM,
                              steps=max_steps)
    if not converged:
        raise ExternalToolError(f"the geometry optimization did not converge to {fmax:g} "
                                f"kJ/mol/nm in {max_steps} steps")
    return atoms.positions * units.ANGSTROM_TO_NM, int(optimizer.get_number_of_steps())


def hessian_and_dipole_derivatives(engine: Any, numbers: np.ndarray, positions_nm: np.ndarray,
                                   charge: int = 0, multiplicity: int = 1,
                                   step_nm: float = DEFAULT_STEP_NM,
                                   progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Central finite differences (``6N`` engine calls): the Hessian (3N, 3N; kJ/mol/nm^2,
    symmetrized) and the dipole derivatives (3N, 3; e*nm/nm = e)."""
    from tqdm import tqdm

    x0 = np.asarray(positions_nm, dtype=np.float64).reshape(-1)
    n = len(x0)
    hessian = np.empty((n, n))
    dipole_derivatives = np.empty((n, 3))
    for j in tqdm(range(n), desc="QM Hessian", disable=not progress, leave=False):
        out = []
        for sign in (1.0, -1.0):
            x = x0.copy()
            x[j] += sign * step_nm
            result = engine.compute(numbers, x.reshape(-1, 3), charge, multiplicity)
            if result.dipole is None:
                raise ExternalToolError(f"QM engine {engine.name!r} gives no dipole moment: "
                                        "no IR intensities")
            out.append((result.forces.reshape(-1), result.dipole))
        hessian[j] = -(out[0][0] - out[1][0]) / (2.0 * step_nm)
        dipole_derivatives[j] = (out[0][1] - out[1][1]) / (2.0 * step_nm)
    return 0.5 * (hessian + hessian.T), dipole_derivatives


# --------------------------------------------------------------------------- normal modes


def external_basis(masses: np.ndarray, positions: np.ndarray, tol: float = 1e-6) -> np.ndarray:
    """Orthonormal mass-weighted translations and rotations about the centre of mass,
    (3N, 6), or (3N, 5) for a linear molecule."""
    m = np.asarray(masses, dtype=np.float64)
    x = np.asarray(positions, dtype=np.float64).reshape(-1, 3)
    x = x - (m @ x) / m.sum()
    sqrt_m = np.sqrt(m)
    vectors = []
    for axis in range(3):
        t = np.zeros_like(x)
        t[:, axis] = 1.0
        vectors.append((t * sqrt_m[:, None]).reshape(-1))
    for axis in np.eye(3):
        vectors.append((np.cross(axis, x) * sqrt_m[:, None]).reshape(-1))
    u, s, _ = np.linalg.svd(np.array(vectors).T, full_matrices=False)
    return u[:, s > tol * s.max()]


def _to_wavenumber(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues of the mass-weighted Hessian (rad^2/ps^2) to signed cm^-1."""
    return np.sign(eigenvalues) * np.sqrt(np.abs(eigenvalues)) * units.RAD_PER_PS_TO_WAVENUMBER


def normal_modes(hessian: np.ndarray, numbers: np.ndarray, positions_nm: np.ndarray,
                 dipole_derivatives: np.ndarray | None = None
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Internal normal modes of a Hessian (kJ/mol/nm^2): wavenumbers (M,) cm^-1, intensities
    (M,) km/mol (zeros without ``dipole_derivatives``, (3N, 3) in e), mass-weighted modes
    (M, N, 3), and the external (translation/rotation) wavenumbers of the unprojected Hessian
    (its eigenvalues in the external space, cm^-1)."""
    masses = atomic_masses(numbers)
    n_atoms = len(masses)
    inv_sqrt_m = np.repeat(1.0 / np.sqrt(masses), 3)
    weighted = hessian * np.outer(inv_sqrt_m, inv_sqrt_m)
    ext = external_basis(masses, positions_nm)
    external = _to_wavenumber(np.linalg.eigvalsh(ext.T @ weighted @ ext))
    # the internal space: the orthogonal complement of the external vectors
    q, _ = np.linalg.qr(np.hstack([ext, np.eye(3 * n_atoms)]))
    internal = q[:, ext.shape[1]:3 * n_atoms]
    eigenvalues, vectors = np.linalg.eigh(internal.T @ weighted @ internal)
    modes = (internal @ vectors).T  # (M, 3N) unit vectors in mass-weighted coordinates
    if dipole_derivatives is None:
        intensities = np.zeros(len(eigenvalues))
    else:
        dmu_dq = (modes * inv_sqrt_m) @ np.asarray(dipole_derivatives)  # (M, 3), e/sqrt(Da)
        intensities = units.IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL * (dmu_dq**2).sum(axis=1)
    return (_to_wavenumber(eigenvalues), intensities, modes.reshape(-1, n_atoms, 3),
            external)


def harmonic_modes(engine: Any, numbers: np.ndarray, positions_nm: np.ndarray,
                   charge: int = 0, multiplicity: int = 1, optimize: bool = True,
                   step_nm: float = DEFAULT_STEP_NM, fmax: float = DEFAULT_FMAX,
                   progress: bool = False) -> HarmonicModes:
    """Optimize (unless ``optimize`` is False), then the finite-difference Hessian and dipole
    derivatives of ``engine`` and their normal modes."""
    numbers = np.asarray(numbers, dtype=int)
    positions = np.asarray(positions_nm, dtype=np.float64).reshape(-1, 3)
    steps = 0
    if optimize:
        positions, steps = optimize_geometry(engine, numbers, positions, charge, multiplicity,
                                             fmax=fmax)
    hessian, dmu = hessian_and_dipole_derivatives(engine, numbers, positions, charge,
                                                  multiplicity, step_nm, progress)
    wavenumbers, intensities, modes, external = normal_modes(hessian, numbers, positions, dmu)
    info = {"engine": engine.describe(), "charge": int(charge),
            "multiplicity": int(multiplicity), "optimizer": "ase BFGS" if optimize else "none",
            "optimizer_steps": steps, "fmax_kJ_per_mol_nm": float(fmax),
            "step_nm": float(step_nm), "qm_calls": 6 * len(numbers),
            "intensity_unit": "km/mol", "dipole_derivatives": "Cartesian central differences "
            "contracted with the mass-weighted normal modes"}
    if (wavenumbers < 0).any():
        logger.warning("the QM Hessian has %d imaginary modes (%s cm^-1): the geometry is not "
                       "a minimum", int((wavenumbers < 0).sum()),
                       ", ".join(f"{abs(w):.0f}i" for w in wavenumbers[wavenumbers < 0]))
    return HarmonicModes(numbers, positions, wavenumbers, intensities, modes, external, info)


def qm_reference(molecule: Any, out_dir: str | os.PathLike, method: str = "xtb",
                 progress: bool = True, **engine_options: Any) -> tuple[HarmonicModes, bool]:
    """The harmonic reference of ``molecule`` (file or SMILES, its first conformer as the
    start) with the QM engine ``method``, cached in ``out_dir``/:data:`CACHE_NAME`: reused
    when the molecule, start geometry, engine and settings are the same. Returns the modes and
    whether the cache was used."""
    from hybridff.io.molecule import formal_charge, load_molecule
    from hybridff.labels.qm import get_engine

    mol = load_molecule(molecule)
    numbers = np.array([a.GetAtomicNum() for a in mol.GetAtoms()])
    start = mol.GetConformer().GetPositions() * units.ANGSTROM_TO_NM
    charge = formal_charge(mol)
    engine = get_engine(method, **engine_options)
    key_text = json.dumps({"numbers": numbers.tolist(), "start": np.round(start, 6).tolist(),
                           "charge": charge, "engine": engine.describe(),
                           "options": engine_options, "step_nm": DEFAULT_STEP_NM,
                           "fmax": DEFAULT_FMAX, "version": CACHE_VERSION}, sort_keys=True)
    key = hashlib.sha256(key_text.encode()).hexdigest()
    cache = Path(out_dir) / CACHE_NAME
    if cache.is_file():
        try:
            record = json.loads(cache.read_text())
            if record.get("info", {}).get("key") == key:
                return HarmonicModes.from_json(record), True
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("%s: unreadable cache; recomputing the QM reference", cache)
    result = harmonic_modes(engine, numbers, start, charge=charge, progress=progress)
    result.info.update({"key": key, "molecule": str(molecule)})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(result.to_json()) + "\n")
    return result, False


# --------------------------------------------------------------------------- band assignment


def mode_label(modes: HarmonicModes, k: int, bond_orders: dict[tuple[int, int], float],
               ring_bonds: set[tuple[int, int]] | None = None) -> str:
    """A short description of mode ``k`` from the bonds (of ``bond_orders``, atom-index pairs
    i < j) with the most kinetic energy of relative motion (reduced mass times the squared
    relative displacement): "C=O stretch" when that motion is mostly along the bond,
    "N-H bend" when mostly across it (bend, wag or torsion), "ring C-C" for a bond of
    ``ring_bonds``; a second part ("+ N-H bend") when another kind of bond has at least half
    the first one's share."""
    numbers, x = modes.numbers, modes.positions
    masses = atomic_masses(numbers)
    disp = modes.modes[k] / np.sqrt(masses)[:, None]  # Cartesian, per unit Q
    bonds = sorted(bond_orders)
    if not bonds:
        return "mode"
    names, shares = [], []
    for i, j in bonds:
        relative = disp[i] - disp[j]
        unit_vector = (x[i] - x[j]) / np.linalg.norm(x[i] - x[j])
        total = float(relative @ relative)
        stretch = float(unit_vector @ relative) ** 2 > 0.5 * total
        a, b = sorted((SYMBOL.get(int(numbers[i]), "X"), SYMBOL.get(int(numbers[j]), "X")),
                      key=lambda s: (s == "H", s != "C", s))
        name = f"{a}{'=' if bond_orders[(i, j)] == 2 else '-'}{b}"
        if ring_bonds and (i, j) in ring_bonds:
            name = f"ring {a}-{b}"
        names.append(f"{name} {'stretch' if stretch else 'bend'}")
        shares.append(masses[i] * masses[j] / (masses[i] + masses[j]) * total)
    by_kind: dict[str, float] = {}
    for name, share in zip(names, shares, strict=True):
        by_kind[name] = max(by_kind.get(name, 0.0), share)
    ranked = sorted(by_kind, key=lambda n: -by_kind[n])
    if len(ranked) > 1 and by_kind[ranked[1]] >= 0.5 * by_kind[ranked[0]]:
        return f"{ranked[0]} + {ranked[1]}"
    return ranked[0]


def molecule_bonds(molecule: Any) -> tuple[dict[tuple[int, int], float], set[tuple[int, int]]]:
    """Bond orders and ring (aromatic) bonds of a molecule, by atom-index pair, for
    :func:`mode_label`."""
    from hybridff.io.molecule import load_molecule

    mol = load_molecule(molecule)
    orders, ring = {}, set()
    for bond in mol.GetBonds():
        pair = tuple(sorted((bond.GetBeginAtomIdx(), bond.GetEndAtomIdx())))
        orders[pair] = bond.GetBondTypeAsDouble()
        if bond.GetIsAromatic():
            ring.add(pair)
    return orders, ring


def select_bands(modes: HarmonicModes, labels: list[str], n: int = 8, low: float = 400.0,
                 always: tuple[str, ...] = ("O-H stretch", "N-H stretch")) -> list[int]:
    """Indices of the ``n`` most intense modes above ``low`` cm^-1, plus every mode whose
    label (``labels``, one per mode) is in ``always`` (the polar X-H stretches); ascending."""
    candidates = np.where(modes.wavenumbers >= low)[0]
    best = set(int(k) for k in candidates[np.argsort(-modes.intensities[candidates])][:n])
    best |= {k for k, label in enumerate(labels) if label in always}
    return sorted(best)


def kabsch_align(frames: np.ndarray, reference: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Frames (T, N, 3) rotated and translated onto ``reference`` (N, 3), least squares with
    ``weights`` (N,)."""
    w = weights / weights.sum()
    ref = reference - w @ reference
    centred = frames - np.einsum("i,tij->tj", w, frames)[:, None, :]
    cov = np.einsum("tia,i,ib->tab", centred, w, ref)
    u, _, vt = np.linalg.svd(cov)
    d = np.sign(np.linalg.det(u @ vt))
    fix = np.ones((len(frames), 3))
    fix[:, 2] = d
    rotation = np.einsum("tab,tb,tbc->tac", u, fix, vt)
    return np.einsum("tia,tab->tib", centred, rotation) + (w @ reference)


def band_positions(modes: HarmonicModes, positions: np.ndarray, dt_fs: float,
                   indices: list[int], max_lag_ps: float | None = None) -> list[float]:
    """The wavenumber (cm^-1) of each QM mode in ``indices`` in an MD trajectory (T, N, 3; nm,
    same atom order): the highest peak above 200 cm^-1 of the power spectrum of the
    mass-weighted velocities projected on the mode, after aligning every frame onto the QM
    geometry (mass-weighted; on the heavy atoms when they fix the orientation, so that
    rotating methyl and hydroxyl hydrogens do not move the frame)."""
    from hybridff.md.spectrum import correlation_spectrum

    x = np.asarray(positions, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != modes.positions.shape:
        raise DataFormatError(f"a trajectory of {x.shape[1:] if x.ndim == 3 else x.shape} "
                              f"does not match the QM reference's {len(modes.numbers)} atoms")
    masses = atomic_masses(modes.numbers)
    weights = np.where(modes.numbers > 1, masses, 0.0)
    heavy = modes.positions[modes.numbers > 1]
    if len(heavy) < 3 or np.linalg.matrix_rank(heavy - heavy.mean(axis=0), tol=1e-3) < 2:
        weights = masses  # too few heavy atoms to fix the orientation: all atoms
    aligned = kabsch_align(x, modes.positions, weights)
    q = np.einsum("tia,kia->tk", aligned * np.sqrt(masses)[None, :, None],
                  modes.modes[indices])
    out = []
    for column in range(q.shape[1]):
        wavenumber, power, _ = correlation_spectrum(q[:, column:column + 1], dt_fs, max_lag_ps)
        keep = wavenumber >= 200.0
        out.append(float(wavenumber[keep][np.argmax(power[keep])]))
    return out


def check_atom_order(modes: HarmonicModes, numbers: np.ndarray, where: str) -> None:
    """Refuse a run whose atoms are not the QM reference's, in the same order."""
    if len(numbers) != len(modes.numbers) or (np.asarray(numbers) != modes.numbers).any():
        raise MoleculeInputError(
            f"{where}: its atoms ({len(numbers)}) are not those of the QM reference molecule "
            f"({len(modes.numbers)}) in the same order; give --qm-reference the molecule file "
            "the run was made from")


def band_table(modes: HarmonicModes, labels: list[str], indices: list[int],
               runs: dict[str, tuple[np.ndarray, float]], max_lag_ps: float | None = None
               ) -> dict[str, Any]:
    """Band positions of the QM modes ``indices`` in each run (name -> (trajectory (T, N, 3)
    nm, frame interval fs)) by :func:`band_positions`, and each run's root mean square
    deviation from the QM harmonic wavenumbers over these bands (cm^-1)."""
    rows = [{"mode": int(k), "label": labels[k], "qm_cm-1": float(modes.wavenumbers[k]),
             "qm_intensity_km_per_mol": float(modes.intensities[k])} for k in indices]
    rmse = {}
    for name, (trajectory, dt_fs) in runs.items():
        found = band_positions(modes, trajectory, dt_fs, indices, max_lag_ps)
        for row, nu in zip(rows, found, strict=True):
            row[name] = nu
        rmse[name] = float(np.sqrt(np.mean((np.array(found)
                                            - modes.wavenumbers[indices]) ** 2)))
    return {"bands": rows, "rmse_vs_qm_cm-1": rmse,
            "method": "highest peak of the power spectrum of the mass-weighted velocities "
                      "projected on the QM mode, frames aligned on the QM geometry"}


def write_band_table(table: dict[str, Any], path: str | os.PathLike) -> None:
    """The band table as CSV: one row per QM band, one column per run, and an RMSE row."""
    runs = list(table["rmse_vs_qm_cm-1"])
    lines = [",".join(["label", "qm_cm-1", "qm_intensity_km_per_mol",
                       *[f"{r}_cm-1" for r in runs]])]
    for row in table["bands"]:
        lines.append(",".join([f'"{row["label"]}"', f"{row['qm_cm-1']:.1f}",
                               f"{row['qm_intensity_km_per_mol']:.1f}",
                               *[f"{row[r]:.1f}" for r in runs]]))
    lines.append(",".join(['"RMSE vs QM"', "0.0", "",
                           *[f"{table['rmse_vs_qm_cm-1'][r]:.1f}" for r in runs]]))
    Path(path).write_text("\n".join(lines) + "\n")
