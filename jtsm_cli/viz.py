"""``jtsm viz``: pictures of a panoptic json over its images (thin: jtsm.engine.viz)."""

from __future__ import annotations

import time

import click

from jtsm_cli.common import progress, quiet_option, report


@click.command()
@click.option("--panoptic", required=True, type=click.Path(exists=True, dir_okay=False),
              help="COCO panoptic json (ground truth, RUN/mined, pseudo labels or predictions); "
                   "its PNG folder beside it.")
@click.option("--images", required=True, type=click.Path(exists=True),
              help="Folder the json's file names are relative to (or one image, or a list).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--gt", type=click.Path(exists=True, dir_okay=False),
              help="A ground-truth panoptic json: a third panel, images matched by file name.")
@click.option("--limit", type=click.IntRange(1), default=None,
              help="Only the first N images.")
@click.option("--title", default="prediction", show_default=True,
              help="Title of the json's panel.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def viz(panoptic: str, images: str, out: str, gt: str | None, limit: int | None, title: str,
        as_json: bool, quiet: bool) -> None:
    """Draw panels: image | segments | ground truth, named and outlined, with a legend.

    \b
    Each segment is outlined and labelled with its class name (and score when the json has
    one), each thing instance in its own shade of its class colour; a legend lists the
    classes present. Writes OUT/<image>.png and OUT/<image>.json (titles and legend).
    Example:
        jtsm viz --panoptic runs/refine/val/panoptic.json --images data/images \\
            --gt data/annotations/panoptic_val.json --out runs/refine/val/viz --limit 20
    """
    from jtsm.engine.viz import visualise

    t0 = time.perf_counter()
    summary = visualise(panoptic, images, out, gt, limit, title,
                        progress=lambda it, n, label: progress(it, n, label, quiet))
    report(summary, t0, as_json, lambda s: (
        f"Drew {s['panels']} panels ({s['with_ground_truth']} with ground truth) in "
        f"{s['seconds']}s -> {out}"))
