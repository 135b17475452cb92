"""``jtsm relabel``: pseudo panoptic labels from mined segments and bottom-up evidence."""

from __future__ import annotations

import time

import click

from jtsm_cli.common import progress, quiet_option, report


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run folder of jtsm mine, or of jtsm refine (a self-training "
                   "round): its segments of the training images, RUN/mined/.")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False),
              help="Relabel only the images this json lists.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False),
              help="Image folder.")
@click.option("--proposals", type=click.Path(exists=True, file_okay=False),
              help="Proposal store, whose superpixels evidence such as superpixel-snap uses.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--evidence", default="grabcut", show_default=True,
              help="Evidence method (jtsm plugins lists them): grabcut, superpixel-snap, none.")
@click.option("--workers", type=click.IntRange(0, 1024), default=0,
              help="Processes (0: every core this process may use).")
@click.option("--shard", metavar="I/N", help="Do every N-th image from the I-th (job arrays).")
@click.option("--max-images", type=click.IntRange(1), default=None,
              help="Relabel only a random sample of N images (for a refine run that reads no "
                   "more; panoptic.json lists the sample).")
@click.option("--seed", type=int, default=0, show_default=True,
              help="Seed of the --max-images sample.")
@click.option("--overwrite", is_flag=True,
              help="Replace labels another job (another run, --evidence or sample) left in "
                   "--out instead of refusing them.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def relabel(run_dir: str, dataset: str | None, images: str, proposals: str | None, out: str,
            evidence: str, workers: int, shard: str | None, max_images: int | None, seed: int,
            overwrite: bool, as_json: bool, quiet: bool) -> None:
    """Re-estimate every mined segment with bottom-up evidence (GrabCut) into pseudo labels.

    \b
    Writes OUT/panoptic.json + OUT/panoptic/ PNGs (COCO panoptic, segments keep their score).
    A rerun after an interruption only does the images still missing; a folder holding
    another job's labels is refused (--overwrite replaces them).
    Example:
        jtsm relabel --run runs/mine --dataset data/annotations/panoptic_train.json \\
            --images data/images --proposals data/proposals --out runs/pseudo
    """
    from contextlib import nullcontext

    from jtsm.engine.relabel import run_relabel
    from jtsm.proposals.runner import parse_shard
    from jtsm.rundir.lock import folder_lock

    t0 = time.perf_counter()
    # one writer per output folder; the shards of one job (--shard i/n) write side by side
    with folder_lock(out) if shard is None else nullcontext():
        summary = run_relabel(run_dir, images, out, evidence, dataset, proposals,
                              workers=workers or None, shard=parse_shard(shard),
                              max_images=max_images, seed=seed, overwrite=overwrite,
                              progress=lambda it, n, label: progress(it, n, label, quiet))

    def line(s: dict) -> str:
        head = (f"Relabelled {s['relabelled']} images ({s['already_done']} already done) with "
                f"{evidence} in {s['seconds']}s")
        if not s["complete"]:
            return f"{head}; {s['missing']} images of other shards still missing"
        return f"{head}: {s['segments']} segments -> {s['panoptic']}"

    report(summary, t0, as_json, line)
