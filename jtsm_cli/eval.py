"""``jtsm eval``: PQ, Boundary PQ, mask/box AP, VOC mAP, CorLoc, proposal recall (thin:
jtsm.evaluation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from jtsm_cli.common import echo_json, quiet_option

METRICS = ("pq", "boundary", "ap", "map", "corloc", "recall")


@click.command("eval", context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--metric", required=True, type=click.Choice(METRICS),
              help="pq: panoptic quality; boundary: Boundary PQ (Cheng et al., CVPR 2021), "
                   "with mask PQ beside it; ap: COCO mask+box AP; map: VOC detection mAP@0.5; "
                   "corloc: correct localisation; recall: proposal recall and ABO.")
@click.option("--gt", "gt_json", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Ground truth: COCO panoptic json (any metric) or COCO instances json "
                   "(ap, map, corloc).")
@click.option("--pred", "pred", required=True, type=click.Path(path_type=Path),
              help="pq/boundary: panoptic json (PNG folder beside it); ap/map/corloc: COCO "
                   "results json; "
                   "recall: proposal folder.")
@click.option("--gt-dir", type=click.Path(file_okay=False, path_type=Path),
              help="PNG folder of a panoptic --gt (default: the json's stem beside it).")
@click.option("--pred-dir", type=click.Path(file_okay=False, path_type=Path),
              help="pq/boundary: PNG folder of --pred (default: the json's stem beside it).")
@click.option("--workers", default=0, type=click.IntRange(0), show_default=True,
              help="pq/boundary: processes (0 = all cores).")
@click.option("--dilation-ratio", type=click.FloatRange(0, 1, min_open=True), default=None,
              metavar="R", help="boundary: band width as a fraction of the image diagonal "
                                "(default 0.02, the paper's).")
@click.option("--voc07", is_flag=True, help="map: 11-point AP (VOC 2007) instead of area under "
                                            "the precision envelope.")
@click.option("--k", "ks", multiple=True, type=click.IntRange(1), metavar="K",
              help="recall: proposal budgets (repeatable; default 100, 500, 1000 and all).")
@click.option("--per-class", is_flag=True, help="Also print the per-class table.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (fractions).")
@quiet_option
def eval_cmd(
    metric: str,
    gt_json: Path,
    pred: Path,
    gt_dir: Path | None,
    pred_dir: Path | None,
    workers: int,
    dilation_ratio: float | None,
    voc07: bool,
    ks: tuple[int, ...],
    per_class: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Score predictions: PQ, Boundary PQ, AP, mAP, CorLoc, proposal recall.

    Tables print percent; --json prints fractions in [0, 1].

    \b
    Examples:
        jtsm eval --metric pq --gt data/annotations/panoptic_val.json --pred out/panoptic.json
        jtsm eval --metric boundary --gt data/annotations/panoptic_val.json \
            --pred out/panoptic.json --per-class
        jtsm eval --metric ap --gt data/annotations/panoptic_val.json --pred out/instances.json
        jtsm eval --metric map --gt instances_val.json --pred out/detections.json --voc07
        jtsm eval --metric recall --gt data/annotations/panoptic_val.json --pred props/

    Exit codes: 0 success, 1 bad input (one line naming the file and image), 2 usage error.
    """
    if metric == "recall" and gt_dir is not None:
        raise click.UsageError("--gt-dir is not supported with --metric recall (PNGs are read "
                               "from the folder beside the json)")
    if dilation_ratio is not None and metric != "boundary":
        raise click.UsageError("--dilation-ratio applies to --metric boundary only")
    if metric in ("pq", "boundary"):
        result = _pq(gt_json, pred, gt_dir, pred_dir, workers, quiet,
                     dilation_ratio if metric == "boundary" else None, metric == "boundary")
    elif metric == "ap":
        from jtsm.evaluation.instances import evaluate_ap

        result = evaluate_ap(gt_json, pred, gt_dir)
    elif metric == "map":
        from jtsm.evaluation.detection import evaluate_map

        result = evaluate_map(gt_json, pred, gt_dir, voc07=voc07)
    elif metric == "corloc":
        from jtsm.evaluation.detection import evaluate_corloc

        result = evaluate_corloc(gt_json, pred, gt_dir)
    else:
        from jtsm.evaluation.recall import evaluate_recall

        result = evaluate_recall(gt_json, pred, ks=ks) if ks else evaluate_recall(gt_json, pred)
    if as_json:
        echo_json(result)
    else:
        _print_tables(metric, result, per_class)


def _pq(gt_json: Path, pred: Path, gt_dir: Path | None, pred_dir: Path | None, workers: int,
        quiet: bool, dilation_ratio: float | None = None, boundary: bool = False
        ) -> dict[str, Any]:
    """PQ (``evaluate_pq``) or, with ``boundary``, Boundary PQ (``evaluate_boundary_pq``)."""
    import functools
    import sys

    if boundary:
        from jtsm.evaluation.boundary import DEFAULT_DILATION_RATIO, evaluate_boundary_pq

        ratio = DEFAULT_DILATION_RATIO if dilation_ratio is None else dilation_ratio
        evaluate = functools.partial(evaluate_boundary_pq, dilation_ratio=ratio)
    else:
        from jtsm.evaluation.panoptic import evaluate_pq as evaluate
    if quiet or not sys.stderr.isatty():
        return evaluate(gt_json, pred, gt_dir, pred_dir, workers or None)
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task("boundary pq" if boundary else "pq", total=None)
        return evaluate(gt_json, pred, gt_dir, pred_dir, workers or None,
                        progress=lambda done, total: bar.update(task, completed=done,
                                                                total=total))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def _print_tables(metric: str, result: dict[str, Any], per_class: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if metric == "boundary":
        mask = result["mask"]
        ratio = result["dilation_ratio"]
        t = Table(title=f"Boundary PQ (%, dilation ratio {ratio:g})")
        for col in ("", "PQ", "SQ", "RQ", "N", "mask PQ"):
            t.add_column(col, justify="left" if not col else "right")
        for group in ("All", "Things", "Stuff"):
            r = result[group]
            t.add_row(group, _pct(r["pq"]), _pct(r["sq"]), _pct(r["rq"]), str(r["n"]),
                      _pct(mask[group]["pq"]))
        console.print(t)
        if per_class:
            t = Table(title="Per class, boundary (%)")
            for col in ("class", "PQ", "SQ", "RQ", "mask PQ"):
                t.add_column(col, justify="left" if col == "class" else "right")
            for name, r in result["per_class"].items():
                m = mask["per_class"].get(name)
                t.add_row(name, _pct(r["pq"]), _pct(r["sq"]), _pct(r["rq"]),
                          _pct(None if m is None else m["pq"]))
            console.print(t)
    elif metric == "pq":
        t = Table(title="Panoptic quality (%)")
        for col in ("", "PQ", "SQ", "RQ", "N"):
            t.add_column(col, justify="left" if not col else "right")
        for group in ("All", "Things", "Stuff"):
            r = result[group]
            t.add_row(group, _pct(r["pq"]), _pct(r["sq"]), _pct(r["rq"]), str(r["n"]))
        console.print(t)
        if per_class:
            t = Table(title="Per class (%)")
            for col in ("class", "PQ", "SQ", "RQ"):
                t.add_column(col, justify="left" if col == "class" else "right")
            for name, r in result["per_class"].items():
                t.add_row(name, _pct(r["pq"]), _pct(r["sq"]), _pct(r["rq"]))
            console.print(t)
    elif metric == "ap":
        t = Table(title="COCO AP (%)")
        t.add_column("")
        for key in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            t.add_column(key, justify="right")
        for task, r in result.items():
            t.add_row(task, *(_pct(v) for v in r.values()))
        console.print(t)
    elif metric in ("map", "corloc"):
        label = "mAP@0.5" if metric == "map" else "CorLoc"
        t = Table(title=f"{label} (%)")
        t.add_column("class")
        t.add_column(label, justify="right")
        if per_class:
            for name, v in result["per_class"].items():
                t.add_row(name, _pct(v))
        t.add_row("mean", _pct(result[metric]), style="bold")
        console.print(t)
    else:
        t = Table(title="Proposal recall (%)")
        for col in ("group", "proposals", "recall@0.5", "recall@0.7", "ABO", "N"):
            t.add_column(col, justify="left" if col == "group" else "right")
        for k, groups in result.get("by_k", {}).items():
            for g in ("all", "things", "stuff"):
                if g in groups:
                    r = groups[g]
                    t.add_row(g, str(k), _pct(r["recall@0.5"]), _pct(r["recall@0.7"]),
                              _pct(r["abo"]), str(r["n"]))
        console.print(t)
