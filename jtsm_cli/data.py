"""``jtsm data``: make datasets in COCO panoptic format (the generated default, VOC)."""

from __future__ import annotations

import time

import click

from jtsm_cli.common import echo_json, progress, quiet_option


@click.group()
def data() -> None:
    """Make datasets in COCO panoptic format.

    \b
    Example:
        jtsm data synth data/synth --train 200 --val 50 --size 128 128 --seed 0
        jtsm data voc VOCdevkit/VOC2012 data/voc --sbd benchmark_RELEASE/dataset
    """


@data.command()
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--train", "n_train", type=click.IntRange(0, 10_000_000), default=200,
              show_default=True, help="Training images.")
@click.option("--val", "n_val", type=click.IntRange(0, 10_000_000), default=50,
              show_default=True, help="Validation images.")
@click.option("--size", type=(click.IntRange(32, 4096), click.IntRange(32, 4096)),
              default=(128, 128), show_default=True, metavar="H W", help="Image size.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed.")
@click.option("--things", default=None, metavar="NAMES",
              help="Thing classes, comma-separated, from: disc, square, triangle, star, ring, "
                   "cross, hexagon, crescent, bar, halfdisc.  [default: the first five]")
@click.option("--stuff", default=None, metavar="NAMES",
              help="Stuff classes (2+), from: stripes, dots, grain, waves, checker, blotches, "
                   "hatch, rings.  [default: the first four]")
@click.option("--object-scale", type=click.FloatRange(0.1, 3.0), default=1.0,
              show_default=True, help="Thing sizes relative to the default's.")
@click.option("--overwrite", is_flag=True,
              help="Write into a folder synth did not make, replacing files of the dataset's "
                   "names (files synth did not write are never removed).")
@click.option("--style", type=click.Choice(["default", "photo"]), default="default",
              show_default=True,
              help="photo: outdoor-like scenes where things differ from their surroundings by "
                   "shape and shading, not colour; things from: quadruped, chair, lamp, "
                   "bicycle, bottle; stuff from: grass, road, wall, water, sky  [default: all].")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@quiet_option
def synth(out: str, n_train: int, n_val: int, size: tuple[int, int], seed: int,
          things: str | None, stuff: str | None, object_scale: float, overwrite: bool,
          style: str,
          as_json: bool, quiet: bool) -> None:
    """Generate the embedded things-and-stuff dataset (deterministic per seed).

    \b
    Writes OUT/images/, OUT/annotations/panoptic_{train,val}.json and PNG folders into a new
    folder or one holding a dataset synth made (its files are replaced as a set).
    Other classes and sizes than the default's give data a preset was not tuned on.
    Example:
        jtsm data synth data/synth --train 200 --val 50
        jtsm data synth data/other --things cross,hexagon,crescent,bar \\
            --stuff checker,blotches,hatch,rings --size 96 160 --object-scale 0.7
        jtsm data synth data/photo --style photo --size 112 176
    """
    from jtsm.data.synth import SynthConfig, write_synth_dataset
    from jtsm.data.synth_photo import PhotoConfig

    t0 = time.perf_counter()
    names: dict[str, tuple[str, ...]] = {}
    for key, value in (("things", things), ("stuff", stuff)):
        if value is not None:
            names[key] = tuple(n.strip() for n in value.split(",") if n.strip())
    try:
        make = PhotoConfig if style == "photo" else SynthConfig
        cfg = make(height=size[0], width=size[1], object_scale=object_scale, **names)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    counts = write_synth_dataset(out, n_train, n_val, cfg, seed,
                                 progress=lambda it, n, label: progress(it, n, label, quiet),
                                 overwrite=overwrite)
    if as_json:
        echo_json({"out": out, **counts})
        return
    click.echo(f"Wrote {out}: {counts['train_images']} train images "
               f"({counts['train_segments']} segments), {counts['val_images']} val images "
               f"({counts['val_segments']} segments), {size[0]}x{size[1]} px, seed {seed}, "
               f"in {time.perf_counter() - t0:.1f}s")
    click.echo(f"  things: {', '.join(cfg.things)}")
    click.echo(f"  stuff:  {', '.join(cfg.stuff)}")
    click.echo(f"  ground truth: {out}/annotations/panoptic_val.json")


@data.command()
@click.argument("voc_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--sbd", "sbd_dir", type=click.Path(exists=True, file_okay=False),
              help="SBD dataset folder (cls/, inst/, train.txt, val.txt) for train-aug.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@quiet_option
def voc(voc_dir: str, out: str, sbd_dir: str | None, as_json: bool, quiet: bool) -> None:
    """Convert PASCAL VOC 2012 (+ SBD) to COCO panoptic: 20 things + background.

    \b
    Example:
        jtsm data voc VOCdevkit/VOC2012 data/voc --sbd benchmark_RELEASE/dataset
    """
    from jtsm.data.voc import convert_voc

    counts = convert_voc(voc_dir, out, sbd_dir,
                         progress=lambda it, n, label: progress(it, n, label, quiet))
    if as_json:
        echo_json({"out": out, **counts})
        return
    click.echo(f"Wrote {out}: {counts['train_images']} train images "
               f"({counts['sbd_images']} from SBD), {counts['val_images']} val images")


@data.command()
@click.argument("tags_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--images", required=True, type=click.Path(exists=True),
              help="Folder the tags file's image names are relative to (or one image, or a "
                   "text file listing image paths).")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Labels json to write (what mine, relabel and refine read as --dataset): a "
                   "new file or one data tags wrote; outside the image folder, not an input.")
@click.option("--overwrite", is_flag=True,
              help="Replace an existing --out that data tags did not write (or that was "
                   "edited since).")
@click.option("--stuff", default="", metavar="NAMES",
              help="Comma-separated classes that are stuff (sky, grass, road: regions without "
                   "instances); all other tags are things.")
@click.option("--min-images", type=click.IntRange(1), default=2, show_default=True,
              help="Warn about classes tagged on fewer images than this (a class on one image "
                   "is not learned).")
@click.option("--strict", is_flag=True,
              help="Make the warnings errors (images under --images the file does not list, "
                   "classes on fewer than --min-images images): exit 1, nothing written.")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def tags(tags_file: str, images: str, out: str, overwrite: bool, stuff: str, min_images: int,
         strict: bool, as_json: bool) -> None:
    """Turn a tags file into the labels json every stage reads.

    \b
    TAGS_FILE is a CSV or TSV, one image per line: file,tags (a 'file,tags' header line is
    optional). Tags are separated by ';', '|' or ',' (a quoted field or more columns), which
    keep the spaces inside a name, or else by spaces; names ignore case. E.g.
        file,tags
        beach.jpg,person;dog;sand
        street.jpg,person car road
        rocket.jpg,traffic light;sky
    or a json whose images carry label names or ids, or a COCO panoptic/instances json.
    Image sizes are stored as a viewer shows them (EXIF orientation applied). Warnings (on
    stderr) name images under --images the file does not list and classes on few images.
    Example:
        jtsm data tags photos/tags.csv --images photos --out labels.json --stuff sand,road
    """
    from jtsm.data.images import image_source
    from jtsm.data.tags import not_own_labels, read_tags
    from jtsm.errors import DataError
    from jtsm.fileio import atomic_write_json
    from jtsm.rundir.outputs import check_apart, check_replace_file

    source = image_source(images)
    listed = [source.root / n for n in source.names or ()]
    check_apart(out, {"TAGS_FILE": tags_file, "--images": [images, *listed]})
    check_replace_file(out, overwrite, not_own_labels)
    d, report = read_tags(tags_file, images, [s for s in stuff.split(",") if s.strip()],
                          min_images=min_images)
    warnings = report.warnings(tags_file, images)
    for line in report.notices():
        click.echo(f"Note: {line}", err=True)
    if strict and warnings:
        raise DataError(f"{'; '.join(warnings)} (--strict: {out} not written)")
    for line in warnings:
        click.echo(f"Warning: {line}", err=True)
    atomic_write_json(out, d, indent=1)
    cats = d["categories"]
    counts = {"out": out, "images": len(d["images"]),
              "tagged": sum(bool(im["labels"]) for im in d["images"]),
              "things": [c["name"] for c in cats if c["isthing"]],
              "stuff": [c["name"] for c in cats if not c["isthing"]],
              "unlisted_images": list(report.unlisted),
              "rare_classes": report.rare,
              "merged_spellings": {k: list(v) for k, v in report.merged.items()}}
    if as_json:
        echo_json(counts)
        return
    click.echo(f"Wrote {out}: {counts['images']} images ({counts['tagged']} tagged), "
               f"{len(cats)} classes")
    click.echo(f"  things: {', '.join(counts['things']) or '-'}")
    click.echo(f"  stuff:  {', '.join(counts['stuff']) or '-'}")
