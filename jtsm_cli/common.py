"""Helpers every command shares: progress bars on stderr, JSON on stdout."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, TypeVar

import click

T = TypeVar("T")

quiet_option = click.option("--quiet", "-q", is_flag=True, help="No progress output on stderr.")


def rich_progress(*extra: Any) -> Any:
    """A rich ``Progress`` on stderr: description, bar, count, ``extra`` columns, times."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    *extra, TimeElapsedColumn(), TimeRemainingColumn(),
                    console=Console(stderr=True))


def progress(items: Iterable[T], total: int | None, label: str, quiet: bool = False) -> Iterator[T]:
    """Iterate with a rich progress bar on stderr (off when quiet or stderr is not a terminal)."""
    if quiet or not sys.stderr.isatty():
        yield from items
        return
    with rich_progress() as bar:
        task = bar.add_task(label, total=total)
        for item in items:
            yield item
            bar.advance(task)


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=False))


def report(summary: dict[str, Any], t0: float, as_json: bool,
           line: Callable[[dict[str, Any]], str]) -> None:
    """Add the elapsed ``seconds`` to a stage's summary; print it as JSON or as one line."""
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    if as_json:
        echo_json(summary)
    else:
        click.echo(line(summary))
