"""The command line takes the names of the registries, those other packages add included:
no fixed choice list, an unknown name refused with the registry's message (one line, exit 2),
the built-in names in --help."""

from __future__ import annotations

import importlib
import importlib.metadata

import numpy as np
import pytest
from test_registry import _fresh, _install_plugin, _write_module, plugin_path  # noqa: F401

from hybridff.cli import build_parser, main
from hybridff.cli.charges import CHARGE_REGISTRY, METHODS
from hybridff.cli.label import SAMPLER_NAMES
from hybridff.cli.simulate import ML_BACKEND_NAMES

#: option -> (command, registry "module:attr", built-in names --help lists)
OPTIONS = {
    "charges --method": ("charges", CHARGE_REGISTRY, METHODS),
    "parameterize --charges": ("parameterize", CHARGE_REGISTRY, METHODS),
    "label --charges": ("label", CHARGE_REGISTRY, METHODS),
    "simulate --charges": ("simulate", CHARGE_REGISTRY, METHODS),
    "label --sampler": ("label", "hybridff.labels.samplers:SAMPLERS", SAMPLER_NAMES),
    "simulate --ml-backend": ("simulate", "hybridff.ml.backend:BACKENDS", ML_BACKEND_NAMES),
}
#: the rest of a command line each command needs to parse
REQUIRED = {"charges": ["CCO"], "parameterize": ["CCO", "-o", "out.xml"],
            "label": ["CCO", "-o", "out.xyz"], "simulate": ["CCO", "-o", "run"]}


def _registry(ref: str):
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def _argv(option: str, value: str) -> list[str]:
    command, flag = option.split()
    return [command, *REQUIRED[command], flag, value]


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_help_names_the_builtin_entries(option, capsys) -> None:
    command, ref, names = OPTIONS[option]
    registry = _registry(ref)
    plugins = {ep.name for ep in importlib.metadata.entry_points(group=registry.group)}
    assert sorted(names) == sorted(set(registry) - plugins)
    with pytest.raises(SystemExit):
        main([command, "-h"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"{', '.join(names)} or one a plugin adds" in help_text.replace("- ", "-")


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_unknown_name_is_the_registrys_one_line(option, tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    _, ref, _ = OPTIONS[option]
    with pytest.raises(SystemExit) as exit_info:
        main(_argv(option, "nope"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    with pytest.raises(KeyError) as expected:  # the registry's own message
        _registry(ref)["nope"]
    assert str(expected.value) in err and f"argument {option.split()[1]}" in err


@pytest.mark.parametrize("option", sorted(OPTIONS))
def test_a_plugins_name_is_accepted(option, plugin_path, monkeypatch) -> None:  # noqa: F811
    _, ref, _ = OPTIONS[option]
    registry = _registry(ref)
    _write_module(plugin_path, "hff_demo_cli", "def part(*args, **kwargs):\n    return None\n")
    _install_plugin(plugin_path, "hff-demo-cli", {registry.group: {"hff_demo_cli": "hff_demo_cli:part"}})
    _fresh(monkeypatch, registry)
    args = build_parser().parse_args(_argv(option, "hff_demo_cli"))
    dest = option.split()[1].lstrip("-").replace("-", "_")
    assert getattr(args, dest) == "hff_demo_cli"


def test_a_plugins_charge_method_runs_from_the_command_line(plugin_path, monkeypatch,  # noqa: F811
                                                             capsys) -> None:
    _write_module(plugin_path, "hff_demo_water", """
        import numpy as np

        def water(mol):
            return np.array([-0.8, 0.4, 0.4])
        """)
    _install_plugin(plugin_path, "hff-demo-water",
                    {"hybridff.charge_methods": {"hff_demo_water": "hff_demo_water:water"}})
    _fresh(monkeypatch, _registry(CHARGE_REGISTRY))
    assert main(["charges", "O", "--method", "hff_demo_water"]) == 0
    out = capsys.readouterr().out
    charges = [float(line.split(",")[-1]) for line in out.strip().splitlines()[1:]]
    np.testing.assert_allclose(charges, [-0.8, 0.4, 0.4])
