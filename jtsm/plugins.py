"""The plugin manager: built-in and third-party plugins, registered through the same hooks.

Built-in plugins live in the ``jtsm_plugins`` package (folder ``plugins/``) and are listed in
:data:`DEFAULT_PLUGINS`; third-party ones are found through the ``jtsm`` entry-point group.
``JTSM_LOAD_PLUGINS=a,b`` restricts loading to the named plugins (built-in short names such as
``selective-search`` or entry-point names); an empty value loads none.
"""

from __future__ import annotations

import importlib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from jtsm import hookspecs
from jtsm.errors import PluginError

__all__ = [
    "DEFAULT_PLUGINS",
    "EvidenceMethod",
    "ProposalGenerator",
    "evidence_methods",
    "get_plugin_manager",
    "get_evidence",
    "get_proposal_generator",
    "list_plugins",
    "proposal_generators",
    "reset",
    "takes_keyword",
    "for_workers",
    "from_worker",
]

#: Built-in plugins: (short name, module). Registered exactly as a third-party plugin would be.
DEFAULT_PLUGINS: tuple[tuple[str, str], ...] = (
    ("selective-search", "jtsm_plugins.selective_search"),
    ("felzenszwalb", "jtsm_plugins.felzenszwalb"),
    ("mcg", "jtsm_plugins.mcg"),
    ("grabcut", "jtsm_plugins.grabcut"),
    ("basic-evidence", "jtsm_plugins.basic_evidence"),
)


@dataclass(frozen=True)
class ProposalGenerator:
    """A segment-proposal method: ``generate(image, *, image_path=None, **options)``.

    ``image`` is RGB ``uint8`` ``(H, W, 3)``; the result is a ``ProposalSet`` of size ``(H, W)``.
    """

    name: str
    generate: Callable[..., Any]
    description: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class EvidenceMethod:
    """A bottom-up evidence method: ``refine(image, fg, box, bg, **options) -> (H, W) bool``."""

    name: str
    refine: Callable[..., Any]
    description: str = ""
    plugin: str = ""


_pm: pluggy.PluginManager | None = None


def takes_keyword(fn: Any, name: str, *, through_kwargs: bool) -> bool:
    """Whether a plugin's callable takes keyword ``name``: named in its signature or, when
    ``through_kwargs``, also through ``**kwargs``. Generators get ``max_proposals`` either way
    (passing it costs nothing); evidence gets the stored ``superpixels`` only when it names
    them, since reading them costs a proposal file per image."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == name or (through_kwargs and p.kind is p.VAR_KEYWORD) for p in params)


def for_workers(plugin: Any, name: str) -> Any:
    """What a worker process is handed to find a plugin's generator or method: the object
    itself when it pickles (one registered in this process, e.g. by a script, is then seen by
    the workers too), else its ``name``, which the worker looks up among the installed
    plugins (:func:`from_worker`)."""
    import pickle

    try:
        pickle.dumps(plugin)
    except Exception:  # noqa: BLE001 - lambdas, closures, live handles
        return name
    return plugin


def from_worker(handed: Any, lookup: Callable[[str], Any]) -> Any:
    """The plugin :func:`for_workers` handed over (``lookup`` finds one given by name)."""
    return lookup(handed) if isinstance(handed, str) else handed


def _allowed() -> set[str] | None:
    raw = os.environ.get("JTSM_LOAD_PLUGINS")
    if raw is None:
        return None
    return {n.strip() for n in raw.split(",") if n.strip()}


def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, loading plugins on first use.

    Raises:
        PluginError: a plugin failed to import or implements a hook that does not exist.
    """
    global _pm
    if _pm is not None:
        return _pm
    pm = pluggy.PluginManager("jtsm")
    pm.add_hookspecs(hookspecs)
    allowed = _allowed()
    for short, module in DEFAULT_PLUGINS:
        if allowed is not None and short not in allowed:
            continue
        try:
            mod = importlib.import_module(module)
        except Exception as exc:  # noqa: BLE001 - any import failure names the plugin
            raise PluginError(f"built-in plugin {short!r} failed to load: {exc}") from exc
        pm.register(mod, name=short)
    for ep in metadata.entry_points(group="jtsm"):
        dist = ep.dist.name if ep.dist is not None else ""
        if allowed is not None and ep.name not in allowed and dist not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001
            raise PluginError(
                f"plugin {ep.name!r} (from {dist or ep.value}) failed to load: {exc}"
            ) from exc
        pm.register(plugin, name=ep.name)
        if dist:
            pm._jtsm_dists = {**getattr(pm, "_jtsm_dists", {}), ep.name: ep.dist}  # type: ignore[attr-defined]
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) or repr(exc.plugin)
        raise PluginError(f"plugin {name!r}: {exc}") from exc
    _pm = pm
    return pm


def reset() -> None:
    """Forget loaded plugins (tests; after changing ``JTSM_LOAD_PLUGINS``)."""
    global _pm
    _pm = None


def _collect(hook_name: str, kind: type) -> dict[str, Any]:
    pm = get_plugin_manager()
    found: dict[str, Any] = {}
    hook = getattr(pm.hook, hook_name)
    for impl in hook.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(item: Any, _plugin: str = plugin_name) -> None:
            if not isinstance(item, kind):
                raise PluginError(
                    f"plugin {_plugin!r} registered {item!r}, expected a {kind.__name__}"
                )
            if item.name in found:
                raise PluginError(
                    f"plugin {_plugin!r} registered {kind.__name__} {item.name!r}, "
                    f"already registered by {found[item.name].plugin!r}"
                )
            found[item.name] = type(item)(**{**item.__dict__, "plugin": _plugin})

        try:
            impl.function(register)
        except PluginError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise PluginError(f"plugin {plugin_name!r} failed in {hook_name}: {exc}") from exc
    return dict(sorted(found.items()))


def proposal_generators() -> dict[str, ProposalGenerator]:
    """All registered proposal generators by name."""
    return _collect("register_proposal_generators", ProposalGenerator)


def evidence_methods() -> dict[str, EvidenceMethod]:
    """All registered evidence methods by name."""
    return _collect("register_evidence", EvidenceMethod)


def _lookup(kind: str, table: dict[str, Any], name: str) -> Any:
    if name not in table:
        known = ", ".join(table) or "none"
        raise PluginError(f"unknown {kind} {name!r} (installed: {known})")
    return table[name]


def get_proposal_generator(name: str) -> ProposalGenerator:
    return _lookup("proposal method", proposal_generators(), name)


def get_evidence(name: str) -> EvidenceMethod:
    return _lookup("evidence method", evidence_methods(), name)


def list_plugins() -> list[dict[str, Any]]:
    """``[{name, hooks, version}]`` for every loaded plugin (``jtsm plugins --json``)."""
    import jtsm

    pm = get_plugin_manager()
    dists = getattr(pm, "_jtsm_dists", {})
    out = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda kv: kv[0]):
        hooks = sorted(h.name for h in pm.get_hookcallers(plugin) or [])
        dist = dists.get(name)
        version = dist.version if dist is not None else jtsm.__version__
        out.append({"name": name, "hooks": hooks, "version": version,
                    "builtin": name in dict(DEFAULT_PLUGINS)})
    return out
