"""``jtsm mine``: train the panoptic mining branch from image-level tags and proposals."""

from __future__ import annotations

import click

from jtsm_cli.common import echo_json, progress
from jtsm_cli.train_common import (
    TrainProgress,
    rank_backends,
    resolve_config,
    resume_notice,
    run_workers,
    start_rank,
    training_options,
)


def _mine_worker(cfg, dataset, images, proposals, out, resume, quiet,  # noqa: ANN001
                 overwrite, deterministic, device, result_path):  # noqa: ANN001
    """One worker (rank) of a mining run; rank 0 writes the summary."""
    from jtsm.engine.distributed import is_main
    from jtsm.engine.mine import run_mine
    from jtsm.fileio import atomic_write_json

    dev = start_rank(device)
    with rank_backends(dev, cfg, deterministic), TrainProgress(quiet or not is_main()) as bar:
        summary = run_mine(cfg, dataset, images, proposals, out, resume=resume, on_log=bar,
                           progress=lambda it, n, label: progress(it, n, label,
                                                                   quiet or not is_main()),
                           device=dev, overwrite=overwrite,
                           notice=None if quiet else lambda line: click.echo(line, err=True))
    if is_main() and result_path:
        atomic_write_json(result_path, summary)


@click.command()
@click.option("--dataset", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Training images with tags: COCO panoptic, COCO instances or labels json.")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder the json's file names are relative to.")
@click.option("--proposals", required=True, type=click.Path(exists=True, file_okay=False),
              help="Proposal store (jtsm proposals --out).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run folder.")
@click.option("--overwrite", is_flag=True,
              help="Replace the run in --out (another job's, or a finished one) instead of "
                   "refusing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@training_options
def mine(dataset: str, images: str, proposals: str, out: str, overwrite: bool, as_json: bool,
         config_path: str | None, overrides: tuple[str, ...], device: str, gpus: int,
         nproc: int, deterministic: bool, resume: bool, quiet: bool) -> None:
    """Train the mining branch (MoIPool + MIL + refinement heads) from tags alone.

    \b
    Writes RUN/config.json, RUN/model_final.pt, RUN/checkpoints/, RUN/metrics.jsonl and the
    mined segments of the training images: RUN/mined/panoptic.json (+ PNGs) and
    RUN/mined/detections.json.
    Example:
        jtsm mine --dataset data/annotations/panoptic_train.json --images data/images \\
            --proposals data/proposals --out runs/mine --config synth
    """
    cfg = resolve_config(config_path, overrides)
    resume_notice(out, resume and not quiet)
    summary = run_workers(_mine_worker,
                          (cfg, dataset, images, proposals, out, resume, quiet, overwrite,
                           deterministic),
                          out, gpus, nproc, device)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"Mined {summary['images']} images ({summary['skipped_untagged']} skipped: no "
               f"tags) in {summary['seconds']}s -> {out}")
    if "mined" in summary:
        m = summary["mined"]
        click.echo(f"  mined segments: {m['segments']} -> {m['panoptic']}")
        click.echo(f"  detections: {m['detections']} -> {m['detections_json']}")
