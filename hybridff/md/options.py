"""Settings of a molecular dynamics run (:class:`MDOptions`), checked before anything runs."""

from __future__ import annotations

import math
from dataclasses import dataclass

from hybridff.exceptions import SimulationError

#: the largest number of MM steps per evaluation of the correction (``MDOptions.mts``)
MAX_MTS = 8


@dataclass
class MDOptions:
    """Settings of :func:`hybridff.md.run.run_md` (temperatures K, times fs/ps, pressure bar).

    ``timestep_fs`` is the time one integrator step advances. ``mts`` > 1: multiple time
    stepping (OpenMM's ``MTSLangevinIntegrator``); the ML correction is evaluated once per
    step and the MM forces ``mts`` times, every ``timestep_fs / mts`` (the MM time step).
    """

    steps: int = 5000
    timestep_fs: float = 2.0
    temperature_k: float = 300.0
    friction_per_ps: float = 1.0
    pressure_bar: float | None = 1.0  # solvated only; None or 0: constant volume
    report_every: int = 500
    equilibration_steps: int = 500
    minimize_iterations: int = 1000
    checkpoint_every: int | None = None  # default: about every tenth of the run
    seed: int = 2026
    platform: str = "CPU"
    threads: int | None = None
    disagreement_every: int = 1  # in reports
    disagreement_threshold_kcal: float | None = None
    mts: int = 1  # MM steps per step (the correction's); 1: one Langevin step for all forces

    @property
    def mm_timestep_fs(self) -> float:
        """The MM forces' time step: ``timestep_fs / mts``."""
        return self.timestep_fs / self.mts

    def check(self) -> None:
        """Refuse settings that cannot run (quoting the value)."""
        if self.steps < 0:
            raise SimulationError(f"steps must be >= 0, got {self.steps}")
        if isinstance(self.mts, bool) or not isinstance(self.mts, int) or self.mts < 1:
            raise SimulationError(f"mts {self.mts!r} must be a whole number >= 1 (the MM steps per "
                                  "evaluation of the ML correction; 1: no multiple time stepping)")
        if self.mts > MAX_MTS:
            raise SimulationError(f"mts {self.mts} is above {MAX_MTS}: the correction would be "
                                  f"evaluated every {self.timestep_fs:g} fs, too seldom to follow "
                                  "bond vibrations; use 2-4")
        if self.mts == 1 and not 0 < self.timestep_fs <= 5:
            raise SimulationError(f"time step {self.timestep_fs} fs is outside (0, 5] fs")
        if self.mts > 1 and not 0 < self.mm_timestep_fs <= 5:
            raise SimulationError(f"MM time step {self.mm_timestep_fs:g} fs (time step "
                                  f"{self.timestep_fs:g} fs / mts {self.mts}) is outside (0, 5] fs")
        if not 0 < self.temperature_k < math.inf:
            raise SimulationError(f"temperature {self.temperature_k} K must be positive")
        if not 0 <= self.friction_per_ps < math.inf:
            raise SimulationError(f"Langevin friction {self.friction_per_ps} /ps must be >= 0 "
                                  "(0: constant-energy dynamics; 1 /ps is usual)")
        if self.pressure_bar is not None and not 0 <= self.pressure_bar < math.inf:
            raise SimulationError(f"pressure {self.pressure_bar} bar must be >= 0 (0 or None: "
                                  "constant volume)")
        if self.report_every < 1:
            raise SimulationError(f"report interval {self.report_every} must be >= 1 step")
        if self.checkpoint_every is not None and self.checkpoint_every < 1:
            raise SimulationError(f"checkpoint interval {self.checkpoint_every} must be >= 1 step")
        if self.equilibration_steps < 0 or self.minimize_iterations < 0:
            raise SimulationError("equilibration steps and minimization iterations must be >= 0")

    def first_report(self) -> int:
        """Step of a new run's first log row and trajectory frame: ``report_every``, or the
        run's last step when the run is shorter (so a short run still writes its end)."""
        if 0 < self.steps < self.report_every:
            return self.steps
        return self.report_every
