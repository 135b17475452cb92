"""``jtsm predict``: apply a trained run to images."""

from __future__ import annotations

import time

import click

from jtsm_cli.common import progress, quiet_option, report
from jtsm_cli.train_common import device_option
from jtsm_cli.viz import min_score_option


@click.command()
@click.option("--run", "run_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Run folder of jtsm mine or jtsm refine.")
@click.option("--images", required=True, type=click.Path(exists=True),
              help="Image folder, one image, or a text file listing image paths.")
@click.option("--dataset", type=click.Path(exists=True, dir_okay=False),
              help="A json listing the images (ids are kept, so eval can match them).")
@click.option("--proposals", type=click.Path(exists=True, file_okay=False),
              help="Proposal store; without it proposals are computed with the run's method.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: new, or holding this same job's predictions (then nothing "
                   "is redone).")
@click.option("--overwrite", is_flag=True,
              help="Replace the predictions in --out (another run's, other images or options) "
                   "instead of refusing them.")
@click.option("--tta", is_flag=True, help="Average all test scales and horizontal flips.")
@click.option("--viz", type=click.IntRange(0), default=0, show_default=True,
              help="Write OUT/viz/<name>.png for the first N images: image | prediction | "
                   "ground truth (when --dataset has masks).")
@min_score_option("the --viz predictions")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@device_option
@quiet_option
def predict(run_dir: str, images: str, dataset: str | None, proposals: str | None, out: str,
            overwrite: bool, tta: bool, viz: int, min_score: float, as_json: bool,
            device: str, quiet: bool) -> None:
    """Predict panoptic segments, instance masks and detections.

    \b
    Writes OUT/panoptic.json + OUT/panoptic/ PNGs, OUT/instances.json (RLE masks) and
    OUT/detections.json (boxes), all COCO formats.
    Example:
        jtsm predict --run runs/mine --images data/images \\
            --dataset data/annotations/panoptic_val.json --out runs/mine/val
    """
    from jtsm.engine.device import resolve_device
    from jtsm.engine.predict import predict_images
    from jtsm.engine.runs import load_run
    from jtsm.rundir.lock import folder_lock

    t0 = time.perf_counter()
    run = load_run(run_dir, resolve_device(device))
    with folder_lock(out):  # one writer per output folder
        summary = predict_images(run, images, out, dataset, proposals, tta,
                                 progress=lambda it, n, label: progress(it, n, label, quiet),
                                 viz=viz, min_score=min_score, overwrite=overwrite)
    report(summary, t0, as_json, lambda s: (
        f"{out} already holds this job's predictions ({s.get('images', '?')} images); "
        "nothing redone (--overwrite predicts again)" if s.get("done_before") else
        f"Predicted {s['images']} images in {s['seconds']}s: {s['segments']} segments, "
        f"{s['instances']} instances, {s['detections']} detections -> {out}"))
