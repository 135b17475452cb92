"""``jtsm refine``: train the full model (instance + semantic branches) on pseudo labels."""

from __future__ import annotations

import click

from jtsm_cli.common import echo_json
from jtsm_cli.train_common import (
    TrainProgress,
    rank_backends,
    resume_notice,
    run_workers,
    start_rank,
    training_options,
)


def _refine_worker(cfg, run, pseudo, images, proposals, out, resume, quiet,  # noqa: ANN001
                   overwrite, deterministic, device, result_path):  # noqa: ANN001
    """One worker (rank) of a refine run; rank 0 writes the summary."""
    from jtsm.engine.distributed import is_main
    from jtsm.engine.refine import run_refine
    from jtsm.fileio import atomic_write_json

    dev = start_rank(device)
    with rank_backends(dev, cfg, deterministic), TrainProgress(quiet or not is_main()) as bar:
        summary = run_refine(cfg, run, pseudo, images, out, proposals=proposals, resume=resume,
                             on_log=bar, device=dev, overwrite=overwrite)
    if is_main() and result_path:
        atomic_write_json(result_path, summary)


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="The mining run to start from (jtsm mine --out), or a refine run.")
@click.option("--pseudo", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Pseudo labels, COCO panoptic json with its PNG folder beside it "
                   "(jtsm relabel --out DIR gives DIR/panoptic.json; ground truth gives the "
                   "fully-supervised upper bound).")
@click.option("--images", required=True, type=click.Path(exists=True, file_okay=False),
              help="Folder the json's file names are relative to.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="New run folder.")
@click.option("--proposals", type=click.Path(exists=True, file_okay=False), default=None,
              help="Proposal store; default: the one the mining run trained on.")
@click.option("--overwrite", is_flag=True,
              help="Replace the run in --out (another job's, or a finished one) instead of "
                   "refusing it.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@training_options
def refine(run_dir: str, pseudo: str, images: str, out: str, proposals: str | None,
           overwrite: bool, as_json: bool, config_path: str | None,
           overrides: tuple[str, ...], device: str, gpus: int, nproc: int,
           deterministic: bool, resume: bool, quiet: bool) -> None:
    """Train the instance and semantic branches jointly with the mining branch (Eq. 1).

    \b
    The run's config is the mining run's, with --config and --set over it (solver.* is the
    refine schedule). Writes RUN2/config.json, RUN2/model_final.pt, RUN2/checkpoints/,
    RUN2/metrics.jsonl, RUN2/presence.json and RUN2/mined/ (the refined segments of the
    training images, for a next self-training round); `jtsm predict --run RUN2` then predicts
    with the refined branches.
    Example:
        jtsm refine --run runs/mine --pseudo runs/relabel/panoptic.json --images data/images \\
            --out runs/refine --set solver.max_iter=1000
    """
    from jtsm.config import config_from_dict, load_config
    from jtsm.fileio import read_json
    from jtsm.rundir.layout import RunDir

    base = config_from_dict(read_json(RunDir(run_dir).config))
    cfg = load_config(config_path, list(overrides), base=base)
    resume_notice(out, resume and not quiet)
    summary = run_workers(_refine_worker,
                          (cfg, run_dir, pseudo, images, proposals, out, resume, quiet,
                           overwrite, deterministic),
                          out, gpus, nproc, device)
    if as_json:
        echo_json(summary)
        return
    click.echo(f"Refined on {summary['images']} images ({summary['skipped_untagged']} skipped: "
               f"no labels) in {summary['seconds']}s -> {out}")
