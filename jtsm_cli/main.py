"""The ``jtsm`` command: a click group whose subcommands live one per module, loaded lazily.

Errors a user can act on (:class:`jtsm.errors.JtsmError`) print ``Error: <one line>`` and exit 1;
any other exception prints a one-line summary and exits 1 too (``--debug`` shows the traceback).
Usage errors exit 2 (click's convention).
"""

from __future__ import annotations

import importlib
import shlex
import sys
from typing import Any

import click

import jtsm
from jtsm.errors import JtsmError

#: command name -> "module:attribute" (imported only when the command runs or help is shown)
COMMANDS: dict[str, str] = {
    "config": "jtsm_cli.config:config_group",
    "data": "jtsm_cli.data:data",
    "demo": "jtsm_cli.demo:demo",
    "mine": "jtsm_cli.mine:mine",
    "eval": "jtsm_cli.eval:eval_cmd",
    "plugins": "jtsm_cli.plugins:plugins",
    "predict": "jtsm_cli.predict:predict",
    "proposals": "jtsm_cli.proposals:proposals",
    "refine": "jtsm_cli.refine:refine",
    "relabel": "jtsm_cli.relabel:relabel",
    "viz": "jtsm_cli.viz:viz",
}


#: Commands that continue their own folder's work when run again as they were.
_CONTINUE_AS_IS = ("proposals", "relabel")
#: Commands that continue from their run folder's last checkpoint with --resume.
_RESUMABLE = ("mine", "refine")


def interrupt_hint(args: list[str]) -> str:
    """What to run to continue an interrupted command (``args``: its words after ``jtsm``),
    as text to follow "Interrupted." (empty for commands that have nothing to continue)."""
    command = next((a for a in args if not a.startswith("-")), None)
    if command in _RESUMABLE:
        words = [a for a in args if a not in ("--overwrite", "--resume")] + ["--resume"]
        return (" Checkpoints are kept (every solver.checkpoint_period iterations and "
                "solver.checkpoint_minutes); continue with:\n  "
                + shlex.join(["jtsm", *words]))
    if command in _CONTINUE_AS_IS:
        words = [a for a in args if a != "--overwrite"]
        return (" What was finished is kept; the same command continues:\n  "
                + shlex.join(["jtsm", *words]))
    return ""


class JtsmGroup(click.Group):
    """Lazy subcommands, plugin commands, and the error policy of every command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in COMMANDS:
            module, attr = COMMANDS[name].split(":")
            return getattr(importlib.import_module(module), attr)
        self._load_plugin_commands()
        return self.commands.get(name)

    def _load_plugin_commands(self) -> None:
        """Let plugins add commands, once per plugin manager (tests reset the manager)."""
        from jtsm.plugins import get_plugin_manager

        try:
            pm = get_plugin_manager()
        except JtsmError as exc:
            # A broken plugin must not take the whole CLI down; it is named on stderr.
            click.echo(f"Warning: {exc}", err=True)
            return
        if getattr(self, "_plugins_pm", None) is pm:
            return
        for name in getattr(self, "_plugin_commands", ()):
            self.commands.pop(name, None)
        before = set(self.commands)
        self._plugins_pm = pm
        try:
            pm.hook.register_commands(cli=self)
        except Exception as exc:  # noqa: BLE001
            click.echo(f"Warning: a plugin failed in register_commands: {exc}", err=True)
        self._plugin_commands = set(self.commands) - before

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta["jtsm.argv"] = list(args)  # the words after `jtsm`, for interrupt_hint
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.exceptions.Abort, click.ClickException):
            raise
        except JtsmError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt as exc:
            from jtsm.errors import Terminated

            what = "Terminated" if isinstance(exc, Terminated) else "Interrupted"
            click.echo(f"{what}.{interrupt_hint(ctx.meta.get('jtsm.argv', []))}", err=True)
            sys.exit(143 if isinstance(exc, Terminated) else 130)  # 128 + SIGTERM / SIGINT
        except Exception as exc:  # noqa: BLE001 - no bare tracebacks for users
            if ctx.obj and ctx.obj.get("debug"):
                raise
            msg = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"Error: {type(exc).__name__}: {msg} (rerun with --debug for the traceback)",
                err=True,
            )
            sys.exit(1)


@click.group(cls=JtsmGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(jtsm.__version__, prog_name="jtsm")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """jtsm: panoptic segmentation learned from image-level tags (JTSM, CVPR 2021).

    \b
    Pipeline:  data -> proposals -> mine -> relabel -> refine -> predict -> eval
    Example:
        jtsm data synth data/synth --train 200 --val 50
        jtsm eval --metric pq --gt data/synth/annotations/panoptic_val.json --pred out/panoptic.json

    Exit codes: 0 success, 1 error (one line naming the file or value), 2 usage error.
    """
    ctx.ensure_object(dict)
    ctx.obj["debug"] = debug


def main() -> None:  # pragma: no cover - console entry
    cli()
