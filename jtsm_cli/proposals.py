"""``jtsm proposals``: segment proposals for a folder of images (thin: jtsm.proposals.runner)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from jtsm_cli.common import echo_json, progress, quiet_option


def _parse_opt(items: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected KEY=VALUE", param_hint="--opt")
        key, value = item.split("=", 1)
        parsed: Any = value
        for conv in (int, float):
            try:
                parsed = conv(value)
                break
            except ValueError:
                continue
        out[key.strip()] = parsed
    return out


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--images", required=True, type=click.Path(path_type=Path),
              help="Image folder (searched recursively unless --dataset is given), one image, "
                   "or a text file listing image paths.")
@click.option("--dataset", type=click.Path(dir_okay=False, path_type=Path),
              help="COCO json: only its images (file_name relative to --images).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Proposal store folder (one .npz per image).")
@click.option("--method", default="selective-search", show_default=True,
              help="Proposal generator (see `jtsm plugins`).")
@click.option("--max", "max_proposals", default=2000, show_default=True, type=click.IntRange(1),
              help="Keep at most N proposals per image (duplicates and empty ones dropped).")
@click.option("--workers", default=0, type=click.IntRange(0),
              help="Processes (0: every core this process may use).", show_default=True)
@click.option("--shard", metavar="I/N", help="Only shard I of N (0 <= I < N), for job arrays.")
@click.option("--opt", "opts", multiple=True, metavar="KEY=VALUE",
              help="Method option, e.g. mode=quality or mcg_dir=DIR (repeatable).")
@click.option("--overwrite", is_flag=True,
              help="Replace a store made with another method, --max or --opt.")
@click.option("--skip-bad", is_flag=True, help="Exit 0 even if some images could not be read.")
@click.option("--verify", is_flag=True,
              help="Compare every image's content digest with the one its proposals were made "
                   "from (by default only images whose size or modification time changed are "
                   "hashed); changed images are done again.")
@click.option("--viz", default=0, type=click.IntRange(0), metavar="N",
              help="Also write OUT/viz/*.png with the top proposals of N images.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@quiet_option
def proposals(
    images: Path,
    dataset: Path | None,
    out: Path,
    method: str,
    max_proposals: int,
    workers: int,
    shard: str | None,
    opts: tuple[str, ...],
    overwrite: bool,
    skip_bad: bool,
    verify: bool,
    viz: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Make segment proposals (superpixels + membership) for every image.

    Images whose proposal file already exists are skipped, so rerunning a killed run finishes
    it. An unreadable image prints a warning, is listed in the summary and makes the exit code
    1 (unless --skip-bad).

    \b
    Example:
        jtsm proposals --images data/synth/images --out data/synth/proposals
        jtsm proposals --images coco/val2017 --dataset coco/annotations/panoptic_val2017.json \\
            --out coco/proposals --shard 3/16 --workers 8
        jtsm proposals --images voc/JPEGImages --out voc/mcg --method mcg --opt mcg_dir=MCG/
    """
    from jtsm.proposals.runner import (
        RunSummary,
        list_images,
        parse_shard,
        run_proposals,
        select_shard,
        update_index,
    )

    options = _parse_opt(opts)
    shard_i, shard_n = parse_shard(shard)
    items = select_shard(list_images(images, dataset, exclude=out), shard_i, shard_n)
    summary = RunSummary()
    t0 = time.perf_counter()
    try:
        results = run_proposals(items, out, method, max_proposals, workers or None, options,
                                overwrite=overwrite, verify=verify)
        for r in progress(results, len(items), f"proposals ({method})", quiet):
            summary.add(r)
            if r.status == "bad":
                click.echo(f"Warning: skipped {r.error}", err=True)
    finally:
        update_index(out, summary.results, (shard_i, shard_n))
    info = summary.as_dict()
    info["wall_seconds"] = round(time.perf_counter() - t0, 3)
    if viz:
        _write_viz(items[:viz], out, quiet)
    if as_json:
        echo_json(info)
    else:
        click.echo(
            f"{info['images']} images: {info['computed']} computed, {info['skipped']} already "
            f"done, {len(info['bad'])} bad; {info['proposals_per_image']:.0f} proposals and "
            f"{info['seconds_per_image']:.2f} s per image ({method}) -> {out}"
        )
        for b in info["bad"]:
            click.echo(f"  bad: {b['image']}: {b['error']}")
    if info["bad"] and not skip_bad:
        sys.exit(1)


def _write_viz(items: list[Any], out: Path, quiet: bool) -> None:
    from jtsm.data.output_names import output_name
    from jtsm.errors import DataError
    from jtsm.fileio import read_image
    from jtsm.proposals.store import ProposalStore
    from jtsm.proposals.viz import write_top_proposals

    store = ProposalStore(out)
    for item in items:
        try:
            image = read_image(item.path)
            ps = store.load(item.name, expect_size=image.shape[:2])
        except DataError as exc:
            click.echo(f"Warning: no picture for {item.name}: {exc}", err=True)
            continue
        target = store.root / "viz" / output_name(item.name)  # x.jpg, x.png: two pictures
        write_top_proposals(target, image, ps)
        if not quiet:
            click.echo(f"wrote {target}", err=True)
