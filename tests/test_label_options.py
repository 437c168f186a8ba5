"""The options ``label`` and ``label_series`` share: one dataclass, and the old calls (every
option a keyword, or positional after the method) still mean what they meant."""

from __future__ import annotations

import inspect

import pytest

from hybridff.exceptions import InvalidOptionError
from hybridff.labels.options import LabelOptions
from hybridff.labels.series import label_series
from hybridff.training.workflow import label

#: the options of the old signatures of label() and label_series(), in their order
OLD_ORDER = ["seed", "temperature", "sampler", "charge_method", "progress", "sampler_options",
             "scheduler", "workers", "client", "threads", "retry_failed", "no_workers_timeout"]


def test_one_options_class_for_both() -> None:
    assert [p.name for p in inspect.signature(LabelOptions).parameters.values()] == OLD_ORDER
    for function in (label, label_series):
        parameters = inspect.signature(function).parameters
        assert parameters["options"].default is None
        assert parameters["method"].default == "xtb"


def test_old_calls_give_the_same_options() -> None:
    keywords = {"seed": 3, "sampler": "md", "threads": 2, "basis": "def2-svp"}
    opts, engine = LabelOptions.from_call((), None, keywords)
    assert (opts.seed, opts.sampler, opts.threads, opts.temperature) == (3, "md", 2, 500.0)
    assert engine == {"basis": "def2-svp"}
    positional, engine = LabelOptions.from_call((3, 500.0, "md"), None, {"threads": 2})
    assert positional == opts and engine == {}
    base = LabelOptions(seed=9, workers=2)
    merged, _ = LabelOptions.from_call((), base, {"seed": 1})
    assert (merged.seed, merged.workers, merged.distributed) == (1, 2, True)
    assert not LabelOptions().distributed


def test_an_option_given_twice_is_refused() -> None:
    with pytest.raises(InvalidOptionError, match="'seed' is given twice"):
        LabelOptions.from_call((3,), None, {"seed": 4})
    with pytest.raises(InvalidOptionError, match="13 positional label options given"):
        LabelOptions.from_call(tuple(range(13)), None, {})
