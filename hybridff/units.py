"""Units and physical constants: the one place hybridff converts between unit systems.

Internal units are OpenMM's: nm, kJ/mol, elementary charge, ps, degrees K. QM engines work in
Hartree and Bohr (converted at the driver), extxyz files in eV and Angstrom (ASE convention),
reports in kcal/mol and kcal/mol/Angstrom (the field's habit). Constants are CODATA 2018 via
``scipy.constants``.
"""

from __future__ import annotations

import numpy as np
from openmm import unit
from scipy import constants as _c

AVOGADRO = _c.N_A
#: 1 kcal = 4.184 kJ exactly (thermochemical calorie)
KCAL_TO_KJ = 4.184
KJ_TO_KCAL = 1.0 / KCAL_TO_KJ
ANGSTROM_TO_NM = 0.1
NM_TO_ANGSTROM = 10.0
#: Bohr radius in nm
BOHR_TO_NM = _c.physical_constants["Bohr radius"][0] * 1e9
BOHR_TO_ANGSTROM = BOHR_TO_NM * NM_TO_ANGSTROM
#: Hartree energy per particle, as kJ/mol
HARTREE_TO_KJ_PER_MOL = _c.physical_constants["Hartree energy"][0] * AVOGADRO / 1000.0
#: electron volt per particle, as kJ/mol
EV_TO_KJ_PER_MOL = _c.electron_volt * AVOGADRO / 1000.0
KJ_PER_MOL_TO_EV = 1.0 / EV_TO_KJ_PER_MOL
#: Hartree/Bohr force to kJ/mol/nm
HARTREE_PER_BOHR_TO_KJ_PER_MOL_NM = HARTREE_TO_KJ_PER_MOL / BOHR_TO_NM
#: eV/Angstrom force to kJ/mol/nm
EV_PER_ANGSTROM_TO_KJ_PER_MOL_NM = EV_TO_KJ_PER_MOL / ANGSTROM_TO_NM
#: kJ/mol/nm to kcal/mol/Angstrom
KJ_PER_MOL_NM_TO_KCAL_PER_MOL_ANGSTROM = KJ_TO_KCAL / NM_TO_ANGSTROM
#: Debye in e*nm
DEBYE_TO_E_NM = 1e-21 / _c.speed_of_light / _c.elementary_charge * 1e9
E_NM_TO_DEBYE = 1.0 / DEBYE_TO_E_NM
#: dipole moments: atomic units (e*Bohr, what QM programs give) and e*Angstrom (extxyz files)
E_BOHR_TO_E_NM = BOHR_TO_NM
E_ANGSTROM_TO_E_NM = ANGSTROM_TO_NM
E_NM_TO_E_ANGSTROM = NM_TO_ANGSTROM
#: wavenumbers: an angular frequency in rad/ps to cm^-1 (nu~ = omega / (2 pi c))
SPEED_OF_LIGHT_CM_PER_PS = _c.speed_of_light * 100.0 * 1e-12
RAD_PER_PS_TO_WAVENUMBER = 1.0 / (2.0 * np.pi * SPEED_OF_LIGHT_CM_PER_PS)
#: h c / k_B in cm*K: hbar omega / (k_B T) = WAVENUMBER_TO_KELVIN * nu~ / T
WAVENUMBER_TO_KELVIN = _c.h * _c.speed_of_light * 100.0 / _c.k
#: IR intensity A = N_A pi / (3 c^2) |d mu / d Q|^2 / (4 pi eps0): a dipole derivative along
#: a mass-weighted normal coordinate in e/sqrt(Da) (e*nm per nm*sqrt(Da)) to km/mol
IR_INTENSITY_E2_PER_DA_TO_KM_PER_MOL = (
    AVOGADRO * np.pi / (3.0 * _c.speed_of_light**2) * _c.elementary_charge**2
    / (4.0 * np.pi * _c.epsilon_0) / _c.atomic_mass / 1000.0)

#: 2**(1/6): Amber's R*(=rmin/2) to sigma is sigma = 2 R* / 2**(1/6)
_TWO_SIXTH = 2.0 ** (1.0 / 6.0)


def rmin_half_to_sigma_nm(rmin_half_angstrom: float) -> float:
    """Amber's R* (half the LJ minimum distance, Angstrom) to OpenMM's sigma (nm)."""
    return 2.0 * rmin_half_angstrom / _TWO_SIXTH * ANGSTROM_TO_NM


def amber_bond_k_to_openmm(k_kcal_per_mol_a2: float) -> float:
    """Amber bond constant (E = k (r-r0)^2, kcal/mol/A^2) to OpenMM's (E = k/2 (r-r0)^2, kJ/mol/nm^2)."""
    return 2.0 * k_kcal_per_mol_a2 * KCAL_TO_KJ * NM_TO_ANGSTROM**2


def amber_angle_k_to_openmm(k_kcal_per_mol_rad2: float) -> float:
    """Amber angle constant (E = k (t-t0)^2, kcal/mol/rad^2) to OpenMM's (E = k/2 (t-t0)^2, kJ/mol/rad^2)."""
    return 2.0 * k_kcal_per_mol_rad2 * KCAL_TO_KJ


def strip_positions(positions) -> np.ndarray:
    """OpenMM positions (Quantity, list of Vec3, or array in nm) to a float64 (N, 3) array in nm."""
    if unit.is_quantity(positions):
        positions = positions.value_in_unit(unit.nanometer)
    return np.array([[float(c) for c in p] for p in positions], dtype=np.float64).reshape(-1, 3)


def as_quantity(value, default_unit):
    """Attach ``default_unit`` to a plain number; pass an OpenMM Quantity through unchanged."""
    if unit.is_quantity(value):
        return value.in_units_of(default_unit)
    return value * default_unit


def length_in_nm(value) -> float:
    """A length given as an OpenMM Quantity or a plain number in nm, as float nm."""
    return float(as_quantity(value, unit.nanometer).value_in_unit(unit.nanometer))
