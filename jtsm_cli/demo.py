"""``jtsm demo``: the pipeline end to end on generated data, ending in the PQ table."""

from __future__ import annotations

import click

from jtsm_cli.common import echo_json, progress, quiet_option
from jtsm_cli.train_common import TrainProgress


@click.command()
@click.option("--out", default="demo_out", show_default=True,
              type=click.Path(file_okay=False), help="Folder for every stage's output.")
@click.option("--quick", is_flag=True, help="A small smoke-test run (about a minute).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@quiet_option
def demo(out: str, quick: bool, as_json: bool, quiet: bool) -> None:
    """Generate data, make proposals, mine, predict the val split and print its PQ.

    \b
    Stages already done in OUT are skipped, so a rerun after an interruption goes on.
    Example:
        jtsm demo --out demo_out
        jtsm demo --quick
    """
    from jtsm.engine.demo import run_demo
    from jtsm_cli.eval import _print_tables

    say = (lambda msg: None) if as_json else click.echo
    with TrainProgress(quiet) as bar:
        result = run_demo(out, quick, say=say, on_log=bar,
                          progress=lambda it, n, label: progress(it, n, label, quiet))
    if as_json:
        echo_json(result)
        return
    _print_tables("pq", result["pq"], per_class=False)
    click.echo(f"CorLoc of the mined training detections: {100 * result['corloc']['corloc']:.1f}%")
    click.echo("Mined-only predictions: relabel and refine (paper Sec. 3.4) are not built yet.")
