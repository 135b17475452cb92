"""``jtsm viz``: pictures of a panoptic json over its images (thin: jtsm.engine.viz)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from jtsm_cli.common import progress, quiet_option, report

#: ``jtsm.engine.panoptic_viz.MIN_SCORE`` (repeated so that ``--help`` imports no OpenCV;
#: a test checks the two agree).
MIN_SCORE = 0.3


def _check_min_score(ctx: click.Context, param: click.Parameter, value: float) -> float:
    from jtsm.engine.panoptic_viz import check_min_score

    return check_min_score(value, "--min-score")


def min_score_option(what: str) -> Callable[[Any], Any]:
    """``--min-score S``: segments of ``what`` scored below S are not drawn."""
    return click.option(
        "--min-score", type=float, default=MIN_SCORE, show_default=True,
        callback=_check_min_score,
        help=f"Segments of {what} scored below this (0-1) are not drawn; the legend says how "
             "many were hidden. The default hides the near-zero segments a model leaves for "
             "classes it barely believes in and keeps every one it gives a fair chance; 0 "
             "draws all. Segments without a score, pseudo labels and ground truth are always "
             "drawn.")


@click.command()
@click.option("--panoptic", required=True, type=click.Path(exists=True, dir_okay=False),
              help="COCO panoptic json (ground truth, RUN/mined, pseudo labels or predictions); "
                   "its PNG folder beside it.")
@click.option("--images", required=True, type=click.Path(exists=True),
              help="Folder the json's file names are relative to (or one image, or a list).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: new, or one an earlier viz wrote (its panels are replaced "
                   "as a set); apart from the images and the jsons.")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder viz did not make, replacing files of the panels' names "
                   "(files viz did not write are never removed).")
@click.option("--gt", type=click.Path(exists=True, dir_okay=False),
              help="A ground-truth panoptic json: a third panel, images matched by file name.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N images.")
@click.option("--title", default=None,
              help="Title of the json's panel [default: what made it, from its folder's "
                   "meta.json: prediction, pseudo labels, mined segments; ground truth for a "
                   "dataset or the --gt file].")
@min_score_option("the json")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def viz(panoptic: str, images: str, out: str, overwrite: bool, gt: str | None,
        limit: int | None, title: str | None, min_score: float, as_json: bool,
        quiet: bool) -> None:
    """Draw panels: image | segments | ground truth, named and outlined, with a legend.

    \b
    Each segment is outlined and labelled with its class name (and score when the json has
    one), each thing instance in its own shade of its class colour; a legend lists the
    classes present and how many segments --min-score hid. Writes OUT/<image>.png and
    OUT/<image>.json (titles, legend, min_score and hidden counts).
    Example:
        jtsm viz --panoptic runs/refine/val/panoptic.json --images data/images \\
            --gt data/annotations/panoptic_val.json --out runs/refine/val/viz --limit 20
    """
    from jtsm.engine.viz import visualise

    t0 = time.perf_counter()
    summary = visualise(panoptic, images, out, gt, limit, title,
                        progress=lambda it, n, label: progress(it, n, label, quiet),
                        min_score=min_score, overwrite=overwrite)
    hidden = f", {summary['hidden']} segments below {min_score:.2f} hidden" \
        if summary["hidden"] else ""
    report(summary, t0, as_json, lambda s: (
        f"Drew {s['panels']} panels of {s['title']} ({s['with_ground_truth']} with ground "
        f"truth{hidden}) in {s['seconds']}s -> {out}"))
