"""Draw docs/img/architecture.svg: jtsm's stages (what each reads and writes) over its layers
(which package may import which), from the tables below and the code's own imports.

    python docs/draw_architecture.py            # rewrite docs/img/architecture.svg
    python docs/draw_architecture.py --check    # exit 1 when the picture is out of date

tests/test_layers.py checks that every import in jtsm/, jtsm_cli/ and plugins/ goes to its
own layer or one below (:data:`LAYERS`), and that the picture is the one this script draws.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections.abc import Iterator
from html import escape
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "architecture.svg"

#: The layers, top to bottom: ``(title, what it holds, packages)``. A package imports from
#: its own layer or from layers below it, never above. Packages are ``jtsm.<name>`` (a module
#: or a subpackage), ``cli`` (jtsm_cli) and ``builtin_plugins`` (plugins/, installed as
#: jtsm_plugins).
LAYERS: list[tuple[str, str, tuple[str, ...]]] = [
    ("command line and Python API", "click commands, Predictor",
     ("cli", "predictor")),
    ("engine", "stages, trainer and hooks, inference, DDP; built-in plugins",
     ("engine", "builtin_plugins")),
    ("evaluation", "PQ, Boundary PQ, AP, CorLoc, recall", ("evaluation",)),
    ("data and proposals", "dataset readers and writers, tags, proposal generation and store",
     ("data", "proposals")),
    ("modeling", "backbones, MoIPool heads, refinement branches, losses", ("modeling",)),
    ("ops and run folders", "MoIPool, RoI ops, superpixels; run-folder layout, fingerprints, "
     "checkpoints, locks", ("ops", "rundir")),
    ("foundation", "config, structures, file I/O, errors, plugin registry, worker pool",
     ("config", "structures", "fileio", "errors", "system", "worker_pool", "optional_deps",
      "plugins", "hookspecs", "__init__")),
]

#: The stages a user runs, left to right: ``(command, reads, writes)``.
STAGES: list[tuple[str, str, str]] = [
    ("data synth / tags", "photos, tags", "images/, *.json"),
    ("proposals", "images/", "STORE/*.npz, meta.json"),
    ("mine", "tags, STORE", "RUN/model_final.pt, RUN/mined/"),
    ("relabel", "RUN/mined/, images", "OUT/panoptic.json, OUT/panoptic/*.png"),
    ("refine", "RUN, pseudo labels", "RUN2/model_final.pt"),
    ("predict", "RUN2, images, STORE", "OUT/panoptic.json, OUT/panoptic/*.png, "
     "OUT/instances.json"),
    ("eval", "gt, predictions", "PQ, Boundary PQ, AP and CorLoc"),
]


def layer_of(package: str) -> int:
    """The index in :data:`LAYERS` of a package (``KeyError`` for one in none)."""
    for i, (_, _, packages) in enumerate(LAYERS):
        if package in packages:
            return i
    raise KeyError(package)


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "jtsm_cli":
        return "cli"
    if parts[0] == "jtsm_plugins":
        return "builtin_plugins"
    if parts[0] != "jtsm":
        return None
    return parts[1] if len(parts) > 1 else "__init__"


def imports() -> Iterator[tuple[Path, str, str]]:
    """Every import between packages: ``(file, its package, the imported package)``."""
    for folder, name in (("jtsm", "jtsm"), ("jtsm_cli", "jtsm_cli"), ("plugins", "jtsm_plugins")):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT / folder).with_suffix("")
            src = _package(".".join([name, *rel.parts]))
            assert src is not None
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    # ``from jtsm import __version__`` is the package itself; a submodule
                    # imported by name is that submodule
                    targets = ([f"jtsm.{a.name}" if (ROOT / "jtsm" / f"{a.name}.py").is_file()
                                or (ROOT / "jtsm" / a.name).is_dir() else "jtsm"
                                for a in node.names] if node.module == "jtsm" else [node.module])
                elif isinstance(node, ast.Import):
                    targets = [a.name for a in node.names]
                else:
                    continue
                for target in targets:
                    pkg = _package(target)
                    # jtsm/__init__.py holds the version and re-exports the public API lazily
                    if pkg is not None and pkg != src and src != "__init__":
                        yield path.relative_to(ROOT), src, pkg


def upward_imports() -> list[str]:
    """Imports that go to a layer above their own (none, when the code keeps the rule)."""
    out = []
    for path, src, pkg in imports():
        try:
            if layer_of(pkg) < layer_of(src):
                out.append(f"{path}: {src} imports {pkg}")
        except KeyError as exc:
            out.append(f"{path}: package {exc.args[0]} is in no layer of docs/draw_architecture.py")
    return out


def svg() -> str:
    """The picture: the stages on top, the layers below."""
    box_w, gap = 150, 14
    width = 40 + len(STAGES) * (box_w + gap) - gap
    y, parts = 20, []
    parts.append(f'<text x="20" y="{y + 4}" class="h">Stages (one command each)</text>')
    y += 16
    for i, (cmd, reads, writes) in enumerate(STAGES):
        x = 20 + i * (box_w + gap)
        lines = [f"in: {reads}", *(("out: " if j == 0 else "  ") + w
                                   for j, w in enumerate(writes.split(", ")))]
        parts.append(f'<rect x="{x}" y="{y}" width="{box_w}" height="90" class="stage"/>')
        parts.append(f'<text x="{x + 6}" y="{y + 17}" class="b">{escape(cmd)}</text>')
        for j, line in enumerate(lines):
            parts.append(f'<text x="{x + 6}" y="{y + 34 + 14 * j}">{escape(line)}</text>')
        if i:
            parts.append(f'<line x1="{x - gap}" y1="{y + 38}" x2="{x - 2}" y2="{y + 38}" '
                         'class="arrow"/>')
    y += 118
    parts.append(f'<text x="20" y="{y}" class="h">Layers (a package imports its own layer or '
                 'the ones below; tests/test_layers.py checks every import)</text>')
    y += 12
    for title, what, packages in LAYERS:
        names = ", ".join("jtsm_cli" if p == "cli" else "plugins/" if p == "builtin_plugins"
                          else "jtsm" if p == "__init__" else f"jtsm.{p}" for p in packages)
        parts.append(f'<rect x="20" y="{y}" width="{width - 40}" height="40" class="layer"/>')
        parts.append(f'<text x="30" y="{y + 16}"><tspan class="b">{escape(title)}</tspan>: '
                     f'{escape(what)}</text>')
        parts.append(f'<text x="30" y="{y + 32}" class="pk">{escape(names)}</text>')
        y += 48
    height = y + 10
    style = ("text{font-family:sans-serif;font-size:11px;fill:#222}.h{font-size:13px;"
             "font-weight:bold}.b{font-weight:bold}.pk{font-family:monospace;fill:#444}"
             ".stage{fill:#e8f0fb;stroke:#4a6fa5}.layer{fill:#f4f4f4;stroke:#999}"
             ".arrow{stroke:#4a6fa5;stroke-width:2;marker-end:url(#a)}")
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}">\n<defs><marker id="a" markerWidth="8" '
            'markerHeight="8" refX="7" refY="4" orient="auto"><path d="M0,0 L8,4 L0,8 z" '
            f'fill="#4a6fa5"/></marker></defs>\n<style>{style}</style>\n'
            + "\n".join(parts) + "\n</svg>\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the picture is stale")
    args = ap.parse_args(argv)
    bad = upward_imports()
    if bad:
        print("\n".join(bad), file=sys.stderr)
        return 1
    text = svg()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            print(f"{OUT} is out of date: run python docs/draw_architecture.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
