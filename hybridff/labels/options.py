"""The options of a labelling run that :func:`hybridff.training.workflow.label` (one molecule)
and :func:`hybridff.labels.series.label_series` (a series) share: how the conformations are
sampled, where the QM tasks run, what is retried."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any

from hybridff.exceptions import InvalidOptionError


@dataclass(frozen=True)
class LabelOptions:
    """``seed`` and ``temperature`` (K) of the sampling; ``sampler`` (a name of
    :data:`hybridff.labels.samplers.SAMPLERS`; ``None``: the file's own, else the default) and
    its ``sampler_options``; ``charge_method`` of the MM (``None``: the project default);
    ``progress`` bars; where the QM tasks run (in this process unless ``workers``, a local
    Dask cluster of that many processes, ``scheduler``, a running scheduler's address, or
    ``client``, a ``distributed.Client``), ``threads`` per QM calculation (``None``: as the
    environment says) and ``no_workers_timeout`` (s, ``None``: the default); ``retry_failed``
    computes again what failed before."""

    seed: int = 0
    temperature: float = 500.0
    sampler: str | None = None
    charge_method: str | None = None
    progress: bool = True
    sampler_options: dict[str, Any] | None = None
    scheduler: str | None = None
    workers: int | None = None
    client: Any = None
    threads: int | None = None
    retry_failed: bool = False
    no_workers_timeout: float | None = None

    @property
    def distributed(self) -> bool:
        """Whether the QM tasks run on a Dask cluster."""
        return any(x is not None for x in (self.scheduler, self.workers, self.client))

    @classmethod
    def from_call(cls, args: tuple[Any, ...], options: LabelOptions | None,
                  kwargs: dict[str, Any]) -> tuple[LabelOptions, dict[str, Any]]:
        """The options of a call that gives them the old way too: ``args`` positionally in the
        order of the fields, or as keywords among ``kwargs``, on top of ``options``; the
        keywords left over are the QM engine's options."""
        names = [f.name for f in fields(cls)]
        if len(args) > len(names):
            raise InvalidOptionError(f"{len(args)} positional label options given; there are "
                                     f"{len(names)} ({', '.join(names)})")
        given = dict(zip(names, args, strict=False))
        engine_options = {}
        for key, value in kwargs.items():
            if key in given:
                raise InvalidOptionError(f"the label option {key!r} is given twice")
            if key in names:
                given[key] = value
            else:
                engine_options[key] = value
        return replace(options or cls(), **given), engine_options
