"""``jtsm demo``: the pipeline end to end on generated data, ending in the PQ table."""

from __future__ import annotations

import click

from jtsm_cli.common import echo_json, progress, quiet_option
from jtsm_cli.train_common import TrainProgress, device_option


@click.command()
@click.option("--out", default="demo_out", show_default=True,
              type=click.Path(file_okay=False), help="Folder for every stage's output.")
@click.option("--quick", is_flag=True, help="A small smoke-test run (about a minute).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@device_option
@quiet_option
def demo(out: str, quick: bool, as_json: bool, device: str, quiet: bool) -> None:
    """Generate data, then proposals, mine, relabel, refine, predict and eval: prints PQ.

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
        result = run_demo(out, quick, say=say, on_log=bar, device=device,
                          progress=lambda it, n, label: progress(it, n, label, quiet))
    if as_json:
        echo_json(result)
        return
    _print_tables("pq", result["pq"], per_class=False)
    click.echo(_comparison(result))
    click.echo(f"CorLoc of the mined training detections: {100 * result['corloc']['corloc']:.1f}%")


def _comparison(result: dict) -> str:
    """Mined-only vs refined PQ on the val split, and the pseudo labels' PQ on train."""
    rows = [("mined only (jtsm mine)", result["pq_mined"]),
            ("refined (JTSM: relabel + refine)", result["pq"]),
            ("pseudo labels (relabelled train)", result["pq_pseudo_train"])]
    lines = [f"{'PQ %':34}{'All':>7}{'Things':>8}{'Stuff':>7}"]
    for name, pq in rows:
        lines.append(f"{name:34}" + "".join(
            f"{100 * pq[g]['pq']:{w}.1f}" for g, w in (("All", 7), ("Things", 8), ("Stuff", 7))))
    return "\n".join(lines)
