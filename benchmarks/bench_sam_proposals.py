"""Proposal recall@0.5/0.7, ABO and seconds per image: SAM (the sam plugin) beside selective search.

Both methods run on the same images through ``jtsm proposals``' library path (one process),
are scored against the same panoptic ground truth (:func:`jtsm.evaluation.recall`) and keep
at most ``--max`` proposals. The images are a generated dataset (``jtsm data synth``) of
``--side`` px, or ``--dataset PANOPTIC.json --images DIR`` (e.g. a COCO val sample).

    .venv/bin/python benchmarks/bench_sam_proposals.py --checkpoint sam_vit_b_01ec64.pth
    .venv/bin/python benchmarks/bench_sam_proposals.py --random-weights --model vit_b \\
        --n 3 --side 320

With ``--checkpoint`` the numbers measure SAM. Without one, ``--random-weights`` builds the
architecture untrained, so only the timing is meaningful: the recall of random weights says
nothing about SAM. SAM's quality thresholds are then switched off (``pred_iou_thresh=0``,
``stability_score_thresh=0``): every mask of every prompt goes through SAM's post-processing,
an upper bound on that part of the time. With neither, it says so and runs nothing
(``make bench`` runs every script without arguments). SAM's model load is timed apart from the
per-image time, and the first image's time is split into the image encoder and one batch of
64 prompts (``--breakdown-only``: only that). Needs the plugin package
(``pip install -e examples/jtsm-sam-plugin``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from jtsm.data.synth import SynthConfig, write_synth_dataset
from jtsm.evaluation.recall import evaluate_recall
from jtsm.proposals.runner import list_images, run_proposals


def _random_checkpoint(root: Path, model: str, model_config: str | None) -> Path:
    """An untrained SAM of the asked architecture, saved as a checkpoint file."""
    import torch
    from jtsm_sam.model import PUBLISHED, build_sam, read_model_config

    arch = read_model_config(model_config) if model_config else PUBLISHED[model]
    torch.manual_seed(0)
    path = root / "random_sam.pth"
    torch.save(build_sam(arch).state_dict(), path)
    return path


def _parse_opts(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings -> options, numbers as int or float (as ``--opt`` does)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--opt {item!r}: expected KEY=VALUE")
        for conv in (int, float, str):
            try:
                out[key.strip()] = conv(value)
                break
            except ValueError:
                continue
    return out


def _breakdown(sam: Any, image_path: Path, points_per_batch: int = 64) -> dict[str, float]:
    """Seconds (wall) of SAM's image encoder and of one batch of point prompts through the
    mask decoder with the upsampling of its masks to the image (what each prompt batch of the
    automatic mask generator costs before its own filtering)."""
    import numpy as np
    import torch
    from segment_anything import SamPredictor

    from jtsm.fileio import read_image

    image = read_image(image_path)
    h, w = image.shape[:2]
    pred = SamPredictor(sam)
    rng = np.random.default_rng(0)
    points = rng.random((points_per_batch, 2)) * [w, h]
    with torch.inference_mode():
        t0 = time.perf_counter()
        pred.set_image(image)
        t1 = time.perf_counter()
        coords = torch.as_tensor(pred.transform.apply_coords(points, (h, w)), device=pred.device)
        labels = torch.ones(points_per_batch, 1, dtype=torch.int, device=pred.device)
        pred.predict_torch(coords[:, None, :], labels, multimask_output=True, return_logits=True)
        if pred.device.type == "cuda":
            torch.cuda.synchronize()
        t2 = time.perf_counter()
    return {"encoder_s": t1 - t0, "prompt_batch_s": t2 - t1}


def _run(method: str, images: Path, dataset: Path, out: Path, max_proposals: int,
         options: dict[str, Any]) -> dict[str, Any]:
    items = list_images(images, dataset)
    results = list(run_proposals(items, out, method, max_proposals, workers=1,
                                 options=options, skip_existing=False))
    done = [r for r in results if r.status == "done"]
    if len(done) != len(items):
        bad = [f"{r.name}: {r.error}" for r in results if r.status == "bad"]
        raise SystemExit(f"{method}: {len(items) - len(done)} images failed: {bad}")
    rec = evaluate_recall(dataset, out, ks=(max_proposals,))["all"]
    return {
        "method": method,
        "images": len(done),
        "seconds_per_image": sum(r.seconds for r in done) / len(done),
        "proposals_per_image": sum(r.proposals for r in done) / len(done),
        **{k: rec[k] for k in ("recall@0.5", "recall@0.7", "abo", "n")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, help="a SAM checkpoint (.pth): measures SAM")
    ap.add_argument("--random-weights", action="store_true",
                    help="untrained weights of --model/--model-config: timing only")
    ap.add_argument("--model", default=None, help="vit_b | vit_l | vit_h (random: vit_b)")
    ap.add_argument("--model-config", default=None, help="SAM architecture JSON")
    ap.add_argument("--device", default=None, help="cpu | cuda (default: cuda if available)")
    ap.add_argument("--points-per-side", type=int, default=32)
    ap.add_argument("--opt", action="append", default=[], metavar="KEY=VALUE",
                    help="another sam option, e.g. pred_iou_thresh=0.8 (repeatable)")
    ap.add_argument("--dataset", type=Path, help="COCO panoptic json (default: synth images)")
    ap.add_argument("--images", type=Path, help="image folder of --dataset")
    ap.add_argument("--n", type=int, default=3, help="synth images")
    ap.add_argument("--side", type=int, default=320, help="synth image side, px")
    ap.add_argument("--max", type=int, default=2000, help="proposals kept per image")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", action="store_true", help="also print the rows as JSON")
    ap.add_argument("--breakdown-only", action="store_true",
                    help="only time SAM's encoder and one batch of 64 prompts on one image")
    args = ap.parse_args()

    import torch
    from jtsm_sam.model import load_sam, resolve_device

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint is None and not args.random_weights:
        # e.g. under `make bench`: nothing to measure SAM with, and random ViT-B weights take
        # minutes per image on a CPU, so they are only used when asked for
        print("bench_sam_proposals: give --checkpoint PATH (a SAM checkpoint) or "
              "--random-weights (timing only); nothing run")
        return
    if args.checkpoint is not None and args.random_weights:
        raise SystemExit("--checkpoint and --random-weights exclude each other")
    random = args.checkpoint is None
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.dataset is None:
            write_synth_dataset(root / "data", 0, args.n,
                                SynthConfig(height=args.side, width=args.side), seed=0)
            dataset, images = root / "data/annotations/panoptic_val.json", root / "data/images"
        elif args.images is None:
            raise SystemExit("--dataset needs --images")
        else:
            dataset, images = args.dataset, args.images
        model = args.model or (None if args.model_config or not random else "vit_b")
        options: dict[str, Any] = {"points_per_side": args.points_per_side,
                                   "device": resolve_device(args.device)}
        if random:
            options["checkpoint"] = str(_random_checkpoint(root, model or "vit_b",
                                                           args.model_config))
            options.update(pred_iou_thresh=0, stability_score_thresh=0)
        else:
            options["checkpoint"] = str(args.checkpoint)
        if model:
            options["model"] = model
        if args.model_config:
            options["model_config"] = args.model_config
        options.update(_parse_opts(args.opt))

        t0 = time.perf_counter()
        sam = load_sam(options["checkpoint"], options.get("model"), options.get("model_config"),
                       options["device"])
        load_s = time.perf_counter() - t0
        first = list_images(images, dataset)[0]
        parts = _breakdown(sam, first.path)
        n_batches = -(-int(options["points_per_side"]) ** 2 // 64)
        breakdown = (f"{first.name}: encoder {parts['encoder_s']:.1f} s, one batch of 64 "
                     f"prompts {parts['prompt_batch_s']:.1f} s (x{n_batches} batches at "
                     f"points_per_side={options['points_per_side']})")
        if args.breakdown_only:
            print(f"sam {model or args.model_config} on {options['device']}, torch threads "
                  f"{torch.get_num_threads()}; {breakdown}")
            return

        rows = [_run("sam", images, dataset, root / "sam", args.max, options),
                _run("selective-search", images, dataset, root / "ss", args.max, {})]

    what = "RANDOM weights: timing only, recall/ABO meaningless" if random \
        else f"checkpoint {args.checkpoint}"
    sam_opts = " ".join(f"{k}={v}" for k, v in options.items() if k != "checkpoint")
    print(f"sam: {what}; {sam_opts}; torch threads {torch.get_num_threads()}")
    source = f"synth {args.side} px" if args.dataset is None else str(dataset)
    print(f"images: {rows[0]['images']} ({source}), "
          f"segments: {rows[0]['n']}; --max {args.max}; sam model load {load_s:.1f} s (apart)")
    print(f"sam time parts: {breakdown}")
    print(f"{'method':<17} {'s/image':>8} {'props':>6} {'R@0.5':>6} {'R@0.7':>6} {'ABO':>6}")
    for r in rows:
        print(f"{r['method']:<17} {r['seconds_per_image']:>8.2f} {r['proposals_per_image']:>6.0f} "
              f"{r['recall@0.5']:>6.3f} {r['recall@0.7']:>6.3f} {r['abo']:>6.3f}")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
