"""``jtsm config``: the presets shipped with jtsm, and the config a run would resolve."""

from __future__ import annotations

import click

from jtsm_cli.train_common import config_option


@click.group("config")
def config_group() -> None:
    """Show the resolved config of a preset or file, with overrides.

    \b
    Example:
        jtsm config list
        jtsm config show photos
        jtsm config show --config synth --set solver.max_iter=100
    """


@config_group.command("show")
@click.argument("name", required=False, metavar="[NAME|PATH]")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of TOML.")
def show(name: str | None, config_path: str | None, overrides: tuple[str, ...],
         as_json: bool) -> None:
    """Print the config the defaults, a preset or file (NAME or --config) and --set resolve
    to (what a run saves)."""
    from jtsm.config import config_to_dict, load_config
    from jtsm_cli.common import echo_json

    if name and config_path and name != config_path:
        raise click.UsageError(f"two configs named: {name} and --config {config_path}")
    d = config_to_dict(load_config(name or config_path, list(overrides)))
    if as_json:
        echo_json(d)
        return
    click.echo(_toml(d).rstrip())


@config_group.command("list")
def list_presets() -> None:
    """The presets shipped with jtsm, with the first line of each file."""
    from jtsm.config import PRESET_DIR, preset_names

    for name in preset_names():
        first = (PRESET_DIR / f"{name}.toml").read_text().splitlines()[0].lstrip("# ")
        click.echo(f"{name:20} {first.split(': ', 1)[-1]}")


#: TOML's short escapes of a basic string; other control characters are written \uXXXX.
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
            "\r": "\\r"}


def _string(text: str) -> str:
    """``text`` as a TOML basic string that reads back as ``text`` (quotes, backslashes,
    newlines and other control characters escaped)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return _string(v)
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return repr(v)


def _toml(d: dict) -> str:
    """A flat two-level dict as TOML: top-level values first, then one table per section."""
    lines = [f"{k} = {_value(v)}" for k, v in d.items() if not isinstance(v, dict)]
    for k, v in d.items():
        if isinstance(v, dict):
            lines += ["", f"[{k}]"] + [f"{kk} = {_value(vv)}" for kk, vv in v.items()]
    return "\n".join(lines) + "\n"
