"""Generate the CLI and config reference pages from the code, so they never go stale.

``python docs/gen_reference.py [DOCS_DIR]`` writes ``DOCS_DIR/cli.md`` (walking the click group
``jtsm_cli.main:cli``: every command, its usage, help text and options) and
``DOCS_DIR/config.md`` (walking the dataclasses of :mod:`jtsm.config`: every key, its type,
default and the comment or docstring line that says what it means). ``mkdocs build`` runs it
through ``docs/hooks.py`` before it reads the pages; neither page is kept in git.
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import re
import sys
import typing
from pathlib import Path
from typing import Any

import click

GENERATED = ("cli.md", "config.md")

#: click >= 8.3 marks "no default" with a sentinel object instead of None
_UNSET = getattr(click.core, "UNSET", object())


# ----------------------------------------------------------------------------------- CLI page

def iter_commands(cmd: click.Command, name: str = "jtsm",
                  parent: click.Context | None = None
                  ) -> list[tuple[str, click.Command, click.Context]]:
    """Every command under ``cmd`` (itself first) as ``(full name, command, context)``."""
    ctx = click.Context(cmd, info_name=name.rsplit(" ", 1)[-1], parent=parent)
    out: list[tuple[str, click.Command, click.Context]] = [(name, cmd, ctx)]
    if isinstance(cmd, click.Group):
        for sub in cmd.list_commands(ctx):
            sub_cmd = cmd.get_command(ctx, sub)
            if sub_cmd is not None and not getattr(sub_cmd, "hidden", False):
                out.extend(iter_commands(sub_cmd, f"{name} {sub}", ctx))
    return out


def _cell(text: str) -> str:
    """One Markdown table cell: one line, pipes escaped, Sphinx roles as plain code."""
    text = re.sub(r":\w+:`~?([^`]+)`", r"`\1`", " ".join(text.split()))
    return text.replace("``", "`").replace("|", "\\|")


def _param_row(param: click.Parameter, ctx: click.Context) -> str:
    """One table row: option names (or the argument's name), type, default, help."""
    if isinstance(param, click.Option):
        names = ", ".join(f"`{n}`" for n in [*param.opts, *param.secondary_opts])
        kind = "flag" if param.is_flag else param.make_metavar(ctx) if _takes_ctx() \
            else param.make_metavar()
        help_text = param.help or ""
        default = param.default if param.show_default or param.default not in (None, False, ()) \
            else None
        if callable(default) or param.is_flag or default is _UNSET:
            default = None
        if param.required:
            help_text = f"**required.** {help_text}"
        if param.multiple:
            help_text += " (repeatable)"
    else:
        names = f"`{param.human_readable_name}`"
        kind = "argument"
        help_text = "**required.**" if param.required else "optional"
        default = None
    dflt = "" if default in (None, "", ()) else f"`{default}`"
    return f"| {names} | {_cell(str(kind))} | {dflt} | {_cell(help_text)} |"


def _takes_ctx() -> bool:
    """click >= 8.2 passes the context to ``make_metavar``."""
    return "ctx" in inspect.signature(click.Parameter.make_metavar).parameters


def cli_markdown(group: click.Command | None = None) -> str:
    """The CLI reference as Markdown."""
    if group is None:
        from jtsm_cli.main import cli as group
    lines = ["# CLI reference", "",
             "Generated from the `jtsm` click commands by `docs/gen_reference.py` when the docs "
             "are built; `jtsm COMMAND --help` prints the same text.", ""]
    for full, cmd, ctx in iter_commands(group):
        level = "#" * min(2 + full.count(" "), 4) if full != "jtsm" else "##"
        lines += [f"{level} `{full}`", ""]
        pieces = cmd.collect_usage_pieces(ctx)
        lines += ["```text", f"{full} {' '.join(pieces)}".rstrip(), "```", ""]
        if cmd.help:
            lines += ["```text", inspect.cleandoc(cmd.help).replace("\b\n", ""), "```", ""]
        if isinstance(cmd, click.Group):
            subs = [(n, cmd.get_command(ctx, n)) for n in cmd.list_commands(ctx)]
            lines += ["| command | what it does |", "| --- | --- |"]
            lines += [f"| `{full} {n}` | {_cell(c.get_short_help_str(200))} |"
                      for n, c in subs if c is not None]
            lines.append("")
        params = [p for p in cmd.get_params(ctx)]
        if params:
            lines += ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
            lines += [_param_row(p, ctx) for p in params]
            lines.append("")
    return "\n".join(lines)


def command_options(group: click.Command | None = None) -> dict[str, list[str]]:
    """``{"jtsm mine": ["--dataset", ...], ...}``: what the CLI page must list (for tests)."""
    if group is None:
        from jtsm_cli.main import cli as group
    out: dict[str, list[str]] = {}
    for full, cmd, ctx in iter_commands(group):
        out[full] = [o for p in cmd.get_params(ctx) if isinstance(p, click.Option)
                     for o in [*p.opts, *p.secondary_opts]]
    return out


# -------------------------------------------------------------------------------- config page

def _field_comments(cls: type) -> dict[str, str]:
    """Field name -> the comment that explains it in the class's source ("" when none).

    A field's trailing ``# comment`` and the comment-only lines right below it whose text starts
    in the comment's column (its continuation) make its meaning; a ````name````: sentence in the
    class docstring is used where a field has no comment.
    """
    try:
        lines, _ = inspect.getsourcelines(cls)
    except (OSError, TypeError):
        return {}
    source = "".join(lines)
    tree = ast.parse(inspect.cleandoc("\n" + source) if source[0].isspace() else source)
    src_lines = (inspect.cleandoc("\n" + source) if source[0].isspace() else source).splitlines()
    out: dict[str, str] = {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        line = src_lines[node.end_lineno - 1]
        parts: list[str] = []
        if "#" in line:
            comment = line.split("#", 1)[1]
            parts.append(comment.strip())
            col = len(line) - len(comment.lstrip())  # where the comment's text starts
            for nxt in src_lines[node.end_lineno:]:
                if not nxt.lstrip().startswith("#"):
                    break
                text = nxt.split("#", 1)[1]
                if abs(len(nxt) - len(text.lstrip()) - col) > 2:
                    break
                parts.append(text.strip())
        out[node.target.id] = " ".join(p for p in parts if p)
    doc = inspect.getdoc(cls) or ""
    flat = " ".join(doc.split())
    for name in out:
        if out[name]:
            continue
        m = re.search(rf"``{re.escape(name)}``: (.+?)(?=``\w+``: |$)", flat)
        if m:
            out[name] = m.group(1).strip().rstrip(".")
    return out


def _type_str(tp: Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return type(typing.get_args(tp)[0]).__name__
    if typing.get_origin(tp) in (list, tuple):
        args = typing.get_args(tp)
        return f"list[{_type_str(args[0])}]" if args else "list"
    return getattr(tp, "__name__", str(tp))


def config_keys(cls: type | None = None, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every leaf config key as ``(dotted key, type, default, meaning)``."""
    if cls is None:
        from jtsm.config import Config as cls
    hints = typing.get_type_hints(cls)
    comments = _field_comments(cls)
    rows: list[tuple[str, str, Any, str]] = []
    defaults = cls()
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += config_keys(tp, f"{prefix}{f.name}.")
            continue
        key = f"{prefix}{f.name}"
        rows.append((key, _type_str(tp), getattr(defaults, f.name),
                     comments.get(f.name, "")))
    return rows


def _sections(cls: type) -> list[tuple[str, type]]:
    hints = typing.get_type_hints(cls)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(cls)
            if dataclasses.is_dataclass(hints[f.name])]


def config_markdown() -> str:
    """The config reference as Markdown, one table per section."""
    import json

    from jtsm.config import FREE_TEXT, RANGES, RENAMED_SECTIONS, Config, choices, choices_text

    def allowed(key: str, tp: str) -> str:
        if key in RANGES:
            return RANGES[key][1]
        if choices(key):
            return choices_text(choices(key))
        return "text" if key in FREE_TEXT else "true, false" if tp == "bool" else ""

    lines = ["# Config reference", "",
             "Generated from the dataclasses of `jtsm/config.py` by `docs/gen_reference.py` when "
             "the docs are built. A run starts from these defaults, applies `--config` (a preset "
             "name or a TOML / JSON / YAML file), then every `--set key=value`, and saves the "
             "result as `RUN/config.json`. A wrong key, type or range is a one-line error "
             "naming the key and the value; the allowed range of each key is "
             "`jtsm.config.RANGES`, and every float must be finite.", "",
             "Renamed sections (the old names still work, with a one-line note, and runs that "
             "recorded them resume as the same job): "
             + ", ".join(f"`{old}.*` is `{new}.*`" for old, new in RENAMED_SECTIONS.items())
             + ".", ""]
    top = [r for r in config_keys(Config) if "." not in r[0]]
    groups: list[tuple[str, str, list[tuple[str, str, Any, str]]]] = [("top level", "", top)]
    for name, cls in _sections(Config):
        groups.append((f"`{name}`", inspect.getdoc(cls) or "", config_keys(cls, f"{name}.")))
    for title, doc, rows in groups:
        lines += [f"## {title}", ""]
        if doc:
            lines += [" ".join(doc.split("\n\n")[0].split()), ""]
        lines += ["| key | type | default | allowed | meaning |",
                  "| --- | --- | --- | --- | --- |"]
        for key, tp, default, meaning in rows:
            lines.append(f"| `{key}` | {tp} | `{json.dumps(default)}` | "
                         f"{_cell(allowed(key, tp))} | {_cell(meaning)} |")
        lines.append("")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- writing

def write_pages(docs_dir: str | Path) -> list[Path]:
    """Write the generated pages into ``docs_dir`` (only when their text changed)."""
    docs_dir = Path(docs_dir)
    written = []
    for name, text in (("cli.md", cli_markdown()), ("config.md", config_markdown())):
        path = docs_dir / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parent)
    for p in write_pages(target):
        print(p)
