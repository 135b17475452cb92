"""User-facing errors: one line that names the file or value at fault.

The CLI turns a :class:`JtsmError` into ``Error: <message>`` and exit code 1, never a traceback.
"""

from __future__ import annotations

__all__ = ["JtsmError", "DataError", "PluginError", "ConfigError", "Terminated"]


class JtsmError(Exception):
    """An error the user can act on; its message names the file or value at fault."""


class DataError(JtsmError):
    """A dataset, image, annotation or proposal file is missing, malformed or inconsistent."""


class PluginError(JtsmError):
    """A plugin failed to load or registered something invalid."""


class ConfigError(JtsmError):
    """A configuration value has the wrong type or range."""


class Terminated(KeyboardInterrupt):
    """SIGTERM reached a command that ends its workers first (:mod:`jtsm.worker_pool`); the
    CLI treats it as an interrupt (the command that continues is printed) and exits 143."""
