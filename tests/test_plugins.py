import inspect
import re
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

from jtsm import hookspecs, plugins
from jtsm.errors import PluginError
from jtsm_cli.main import cli

ROOT = Path(__file__).resolve().parents[1]
HOOKS = [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
         if n.startswith("register_")]


def _fake_entry_points(monkeypatch, tmp_path, modules: dict[str, str]):
    """Make `modules` ({entry name: source}) importable and visible as jtsm entry points."""
    eps = []
    for name, src in modules.items():
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(src))
        eps.append(metadata.EntryPoint(name=name, value=name, group="jtsm"))
    monkeypatch.syspath_prepend(str(tmp_path))
    real = metadata.entry_points

    def entry_points(**kw):
        if kw.get("group") == "jtsm":
            return eps
        return real(**kw)

    monkeypatch.setattr(plugins.metadata, "entry_points", entry_points)
    for name in modules:
        sys.modules.pop(name, None)


THIRD_PARTY = """
    import numpy as np
    from jtsm.hookspecs import hookimpl
    from jtsm.plugins import ProposalGenerator, EvidenceMethod
    from jtsm.structures import ProposalSet

    def whole(image, **_):
        h, w = image.shape[:2]
        return ProposalSet.from_masks(np.ones((1, h, w), bool), [1.0])

    @hookimpl
    def register_proposal_generators(register):
        register(ProposalGenerator("whole-image", whole, "one proposal: the image"))

    @hookimpl
    def register_evidence(register):
        register(EvidenceMethod("invert", lambda image, fg, box, bg, **_: ~fg))

    @hookimpl
    def register_commands(cli):
        import click

        @cli.command(name="hello")
        def hello():
            "Say hello. Example: jtsm hello"
            click.echo("hello from a plugin")
"""


def test_builtins_listed_with_their_hooks():
    names = {p["name"]: p for p in plugins.list_plugins()}
    assert {"selective-search", "felzenszwalb", "mcg", "grabcut", "basic-evidence"} <= set(names)
    assert names["grabcut"]["hooks"] == ["register_evidence"]
    assert {"grabcut", "superpixel-snap", "none"} <= set(plugins.evidence_methods())
    assert {"selective-search", "felzenszwalb", "mcg"} <= set(plugins.proposal_generators())


def test_third_party_plugin_registers_everything(monkeypatch, tmp_path):
    import numpy as np

    _fake_entry_points(monkeypatch, tmp_path, {"thirdparty": THIRD_PARTY})
    gen = plugins.get_proposal_generator("whole-image")
    assert gen.plugin == "thirdparty"
    ps = gen.generate(np.zeros((5, 6, 3), np.uint8))
    assert len(ps) == 1 and ps.areas()[0] == 30
    ev = plugins.get_evidence("invert")
    assert ev.refine(None, np.array([True, False]), None, None).tolist() == [False, True]
    listing = {p["name"]: p for p in plugins.list_plugins()}
    assert listing["thirdparty"]["hooks"] == sorted(HOOKS)
    r = CliRunner().invoke(cli, ["hello"])
    assert r.exit_code == 0 and "hello from a plugin" in r.output


def test_load_plugins_env_restricts(monkeypatch, tmp_path):
    _fake_entry_points(monkeypatch, tmp_path, {"thirdparty": THIRD_PARTY})
    monkeypatch.setenv("JTSM_LOAD_PLUGINS", "grabcut, thirdparty")
    assert [p["name"] for p in plugins.list_plugins()] == ["grabcut", "thirdparty"]
    assert list(plugins.proposal_generators()) == ["whole-image"]
    monkeypatch.setenv("JTSM_LOAD_PLUGINS", "")
    plugins.reset()
    assert plugins.list_plugins() == []
    with pytest.raises(PluginError, match="unknown proposal method 'selective-search'"):
        plugins.get_proposal_generator("selective-search")


def test_failing_plugin_is_named(monkeypatch, tmp_path):
    _fake_entry_points(monkeypatch, tmp_path, {"brokenplug": "raise RuntimeError('boom')\n"})
    with pytest.raises(PluginError, match="plugin 'brokenplug'.*boom"):
        plugins.get_plugin_manager()
    r = CliRunner().invoke(cli, ["plugins"])
    assert r.exit_code == 1 and "brokenplug" in r.output and "Traceback" not in r.output


def test_misspelled_hook_fails_loudly(monkeypatch, tmp_path):
    src = "from jtsm.hookspecs import hookimpl\n\n@hookimpl\ndef register_evidense(register):\n" \
          "    pass\n"
    _fake_entry_points(monkeypatch, tmp_path, {"typoplug": src})
    with pytest.raises(PluginError, match="typoplug"):
        plugins.get_plugin_manager()


def test_duplicate_and_wrong_registrations(monkeypatch, tmp_path):
    dup = """
        from jtsm.hookspecs import hookimpl
        from jtsm.plugins import EvidenceMethod

        @hookimpl
        def register_evidence(register):
            register(EvidenceMethod("grabcut", lambda *a, **k: None))
    """
    _fake_entry_points(monkeypatch, tmp_path, {"dupplug": dup})
    with pytest.raises(PluginError, match="already registered by 'grabcut'"):
        plugins.evidence_methods()


def test_plugins_command_json():
    import json

    r = CliRunner().invoke(cli, ["plugins", "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert all({"name", "hooks", "version"} <= set(p) for p in data)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_documented_with_signature(hook):
    """datasette-style meta-test: the plugins page documents each hook with its exact
    signature."""
    sig = inspect.signature(getattr(hookspecs, hook))
    params = r"\b[^\n]*?\b".join(sig.parameters)  # the names in order, annotations between
    page = (ROOT / "docs" / "plugins.md").read_text()
    assert re.search(rf"{hook}\({params}\b[^\n]*\)", page)


@pytest.mark.parametrize("hook", HOOKS)
def test_every_hook_has_a_test(hook):
    tests = "".join(p.read_text() for p in (ROOT / "tests").rglob("test_*.py")
                    if p.name != "test_plugins.py")
    here = Path(__file__).read_text()
    # exercised by a plugin defined in this file, or in another test file
    assert re.search(rf"def {hook}\(", here) or hook in tests
