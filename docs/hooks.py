"""MkDocs hook: regenerate the CLI and config reference pages before every build."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any


def on_pre_build(config: Any, **kwargs: Any) -> None:
    """Write ``cli.md`` and ``config.md`` into the docs folder from the installed code."""
    path = Path(__file__).with_name("gen_reference.py")
    spec = importlib.util.spec_from_file_location("jtsm_docs_gen_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.write_pages(config["docs_dir"])
