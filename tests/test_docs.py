"""The documentation: generated reference pages complete, links and file references alive."""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
import re
import subprocess
import sys
import typing
from pathlib import Path

import click
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.glob("*.md"))
GENERATED = {"cli.md", "config.md"}  # written by docs/gen_reference.py at build time


def _gen():
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("docs")
    _gen().write_pages(out)
    return {name: (out / name).read_text(encoding="utf-8") for name in GENERATED}


def _walk(cmd: click.Command, name: str, parent: click.Context | None = None):
    """Every command of the CLI, walked here with click's own API (not the generator's)."""
    ctx = click.Context(cmd, info_name=name.split()[-1], parent=parent)
    yield name, cmd, ctx
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            yield from _walk(cmd.get_command(ctx, sub), f"{name} {sub}", ctx)


def _sections(page: str) -> dict[str, str]:
    """Heading text (the command in backticks) -> the text under it."""
    parts = re.split(r"^#{2,4} `([^`]+)`\s*$", page, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_cli_page_lists_every_command_and_option(generated: dict[str, str]) -> None:
    from jtsm_cli.main import cli

    sections = _sections(generated["cli.md"])
    commands = list(_walk(cli, "jtsm"))
    assert len(commands) >= 10  # jtsm, data, data synth, data voc, demo, eval, mine, ...
    for name, cmd, ctx in commands:
        assert name in sections, f"{name} missing from the CLI page"
        for param in cmd.get_params(ctx):
            names = param.opts + param.secondary_opts if isinstance(param, click.Option) \
                else [param.human_readable_name]
            for opt in names:
                assert f"`{opt}`" in sections[name], f"{name} {opt} missing from the CLI page"


def _config_keys(cls: type, prefix: str = "") -> list[tuple[str, object]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out += _config_keys(hints[f.name], f"{prefix}{f.name}.")
        else:
            out.append((f"{prefix}{f.name}", getattr(cls(), f.name)))
    return out


def test_config_page_lists_every_key_with_its_default(generated: dict[str, str]) -> None:
    import json

    from jtsm.config import Config

    rows = {m.group(1): m.group(0) for m in
            re.finditer(r"^\| `([\w.]+)` \|.*$", generated["config.md"], flags=re.M)}
    keys = _config_keys(Config)
    assert len(keys) > 40
    for key, default in keys:
        assert key in rows, f"config key {key} missing from the config page"
        assert f"`{json.dumps(default)}`" in rows[key], f"{key}: default {default!r} not shown"
    assert set(rows) == {k for k, _ in keys}, "the config page lists keys that do not exist"


def test_config_page_carries_each_field_comment(generated: dict[str, str]) -> None:
    """A field's trailing comment in jtsm/config.py is its meaning on the page."""
    from jtsm.config import Config

    hints = typing.get_type_hints(Config)
    prefix = {hints[f.name].__name__: f"{f.name}." for f in dataclasses.fields(Config)
              if dataclasses.is_dataclass(hints[f.name])}
    prefix["Config"] = ""
    source = (ROOT / "jtsm" / "config.py").read_text(encoding="utf-8").splitlines()
    page = generated["config.md"]
    checked, cls = 0, None
    for line in source:
        if line.startswith("class "):
            cls = re.match(r"class (\w+)", line).group(1)
        m = re.match(r"^    (\w+): [^=]+= .+?  # (.+)$", line)
        if not m or cls not in prefix:
            continue
        key = prefix[cls] + m.group(1)
        words = " ".join(m.group(2).split()[:3]).replace("|", "\\|")
        row = re.search(rf"^\| `{re.escape(key)}` \|.*$", page, flags=re.M)
        assert row is not None and words in row.group(0), f"{key}: '{words}' not shown"
        checked += 1
    assert checked > 20


def _keys_without_meaning(page: str) -> list[str]:
    """The keys whose row on a config page has an empty meaning cell."""
    return [m.group(1) for m in re.finditer(r"^\| `([\w.]+)` \|.*\|  \|$", page, flags=re.M)]


def test_config_page_gives_every_key_a_meaning(generated: dict[str, str]) -> None:
    """jtsm/config.py is the one place a key's meaning lives: a field comment (or a docstring
    sentence) for every key, nothing kept beside it in the generator."""
    from jtsm.config import Config

    empty = _keys_without_meaning(generated["config.md"])
    assert not empty, f"config keys without a comment in jtsm/config.py: {empty}"
    meanings = {key: meaning for key, _, _, meaning in _gen().config_keys(Config)}
    assert set(meanings) == {k for k, _ in _config_keys(Config)}
    assert all(m.strip() for m in meanings.values()), [k for k, m in meanings.items() if not m]


@dataclasses.dataclass
class _ProbeSection:
    """A section whose fields are explained in three ways, or not at all.

    ``documented``: explained by the docstring.
    """

    commented: int = 1  # what the commented key means
    continued: int = 2  # a comment that goes on
    #                     on the line below
    bare: float = 0.5
    documented: str = "x"


@dataclasses.dataclass
class _ProbeConfig:
    """A config tree with one key lacking a comment."""

    seed: int = 0  # the top-level key's comment
    sect: _ProbeSection = dataclasses.field(default_factory=_ProbeSection)


def test_config_key_without_a_comment_fails_the_meaning_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key added to the config tree without a comment leaves an empty cell that the check
    above reports; the generator has no other source of meanings to fill it from."""
    import jtsm.config

    gen = _gen()
    meanings = {key: meaning for key, _, _, meaning in gen.config_keys(_ProbeConfig)}
    assert meanings == {"seed": "the top-level key's comment",
                        "sect.commented": "what the commented key means",
                        "sect.continued": "a comment that goes on on the line below",
                        "sect.bare": "",
                        "sect.documented": "explained by the docstring"}
    monkeypatch.setattr(jtsm.config, "Config", _ProbeConfig)
    gen.write_pages(tmp_path)
    page = (tmp_path / "config.md").read_text(encoding="utf-8")
    assert "| `sect.continued` | int | `2` |  | a comment that goes on on the line below |" in page
    assert _keys_without_meaning(page) == ["sect.bare"]


def _markdown_files() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CHANGELOG.md", *PAGES]


def test_relative_links_and_file_references_resolve() -> None:
    """Every relative link, and every repository file a page names, exists."""
    link = re.compile(r"\]\(([^)\s]+)\)")
    path = re.compile(r"(?<![\w/.-])((?:jtsm|jtsm_cli|plugins|benchmarks|examples|tests|docs)"
                      r"/[\w./-]*\.(?:py|c|toml|md|json|cff|yml|txt))\b")
    missing = []
    for md in _markdown_files():
        text = md.read_text(encoding="utf-8")
        for target in link.findall(text):
            if re.match(r"^[a-z]+:", target) or target.startswith("#"):
                continue
            file = target.split("#", 1)[0]
            if md.parent == DOCS and file in GENERATED:
                continue
            if not (md.parent / file).exists():
                missing.append(f"{md.name}: link {target}")
        for ref in path.findall(text):
            if "*" in ref or (ref.startswith("docs/") and Path(ref).name in GENERATED):
                continue
            if not (ROOT / ref).exists():
                missing.append(f"{md.name}: file {ref}")
    assert not missing, missing


def test_docs_cite_only_files_of_the_repository() -> None:
    for md in _markdown_files():
        text = md.read_text(encoding="utf-8")
        for name in (f"{stem}.md" for stem in ("REFERENCE", "DESIGN", "STYLE")):
            assert name not in text, f"{md.name} cites {name}, which the repository does not hold"


def test_readme_is_short() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines"


def test_plugins_page_gives_each_hook_signature_exactly() -> None:
    import jtsm.hookspecs as specs

    page = (DOCS / "plugins.md").read_text(encoding="utf-8")
    hooks = [f for _, f in inspect.getmembers(specs, inspect.isfunction)
             if hasattr(f, "jtsm_spec")]
    assert len(hooks) >= 3
    for f in hooks:
        params = ", ".join(f"{p.name}: {p.annotation}"
                           for p in inspect.signature(f).parameters.values())
        sig = f"{f.__name__}({params}) -> {f.__annotations__['return']}"
        assert f"`{sig}`" in page, f"plugins.md lacks the hook signature {sig}"


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    """The site builds with no broken link, anchor or page (what `make docs` runs)."""
    mkdocs = Path(sys.executable).with_name("mkdocs")
    assert mkdocs.exists(), "mkdocs is not installed: pip install -e '.[docs]'"
    run = subprocess.run([str(mkdocs), "build", "--strict", "--quiet", "-f",
                          str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (tmp_path / "site" / "cli" / "index.html").is_file()
    assert (tmp_path / "site" / "config" / "index.html").is_file()


def test_readme_figure_script_draws_one_row_per_image(synth_dir: Path, tmp_path: Path) -> None:
    """docs/make_figure.py turns a demo folder into image | mined | refined rows."""
    import shutil

    spec = importlib.util.spec_from_file_location("make_figure", DOCS / "make_figure.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    demo = tmp_path / "demo_out"
    (demo / "data").mkdir(parents=True)
    (demo / "data" / "images").symlink_to(synth_dir / "images")
    ann = synth_dir / "annotations"
    for name in ("val_mined", "val_refined"):  # the ground truth stands in for predictions
        (demo / name).mkdir()
        shutil.copy(ann / "panoptic_val.json", demo / name / "panoptic.json")
        shutil.copytree(ann / "panoptic_val", demo / name / "panoptic")
    one = module.demo_figure(demo, count=1)
    three = module.demo_figure(demo, count=3)
    assert one.dtype == np.uint8 and one.ndim == 3
    assert three.shape[0] == 3 * one.shape[0] and three.shape[1] == one.shape[1]
    left, middle = one[:, : one.shape[1] // 3], one[:, one.shape[1] // 3: 2 * one.shape[1] // 3]
    assert np.abs(left.astype(int) - middle.astype(int)).mean() > 5  # segments painted
