"""Hook specifications of jtsm plugins (pluggy project name ``"jtsm"``).

A plugin is a module (or object) with functions decorated by :data:`hookimpl` whose names match
these specs. Hooks hand in a ``register`` callback, so a plugin can register any number of
things. Third-party plugins are found through the ``jtsm`` entry-point group::

    [project.entry-points.jtsm]
    my_plugin = "my_package.plugin_module"
"""

from __future__ import annotations

from typing import Any, Callable

import pluggy

hookspec = pluggy.HookspecMarker("jtsm")
hookimpl = pluggy.HookimplMarker("jtsm")


@hookspec
def register_proposal_generators(register: Callable[..., None]) -> None:
    """Register segment-proposal generators.

    Call ``register(ProposalGenerator(name, generate, description))`` once per generator
    (:class:`jtsm.plugins.ProposalGenerator`). ``generate(image, *, image_path=None,
    **options)`` maps an RGB ``uint8`` image ``(H, W, 3)`` to a
    :class:`jtsm.structures.ProposalSet` of the same size. A generator whose signature takes
    ``max_proposals`` receives it as a hint (the caller keeps the top ones either way). Raising
    :class:`jtsm.errors.DataError` means "bad input for this image": the image is reported and
    the run goes on.
    """


@hookspec
def register_evidence(register: Callable[..., None]) -> None:
    """Register bottom-up evidence methods (mask re-estimation, e.g. GrabCut).

    Call ``register(EvidenceMethod(name, refine, description))`` once per method
    (:class:`jtsm.plugins.EvidenceMethod`). ``refine(image, fg, box, bg, **options)`` takes an
    RGB ``uint8`` image ``(H, W, 3)``, the firm foreground ``fg`` (``(H, W)`` bool, the mined
    segment), its box ``(4,)`` XYXY and the firm background ``bg`` (``(H, W)`` bool), and returns
    the re-estimated ``(H, W)`` bool mask. Firm pixels must keep their label.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``jtsm`` click group: ``cli.add_command(...)`` or ``@cli.command()``."""
