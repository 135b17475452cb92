"""The installed package imports from anywhere, the clone's parent folder included.

After ``git clone ... jtsm`` and ``pip install -e .``, a script in the clone's parent folder
sees the clone itself, ``jtsm/``, as a folder named like the package. setuptools' default
editable install finds packages through an import hook that runs after the path search, which
then returns that folder as an empty namespace package (``cannot import name 'Predictor' from
'jtsm' (unknown location)``). setup.py installs in strict mode, whose links folder is on
``sys.path`` and found first. These tests run the installed package in a fresh interpreter, the
way a user's script does (no ``PYTHONPATH``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_every_package_folder_is_installed():
    """pyproject's explicit package list names every folder with an ``__init__.py`` (a
    subpackage left out imports in a checkout but not once installed)."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    found = set()
    for top, name in (("jtsm", "jtsm"), ("jtsm_cli", "jtsm_cli"), ("plugins", "jtsm_plugins")):
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]))
    assert found - listed == set()


def test_setup_asks_for_the_strict_editable_mode():
    text = (ROOT / "setup.py").read_text()
    assert '"editable_wheel": {"mode": "strict"}' in text


@pytest.mark.skipif(bool(os.environ.get("PYTHONPATH")),
                    reason="PYTHONPATH puts a source tree first; the install is not what runs")
def test_import_from_the_clones_parent_folder(tmp_path):
    parent = tmp_path / "parent"
    clone = parent / "jtsm"  # what `git clone <url> jtsm` leaves beside the user's script
    (clone / "jtsm").mkdir(parents=True)
    (clone / "README.md").write_text("a clone\n")
    script = parent / "predict_photo.py"
    script.write_text("from jtsm import Predictor\nimport jtsm, jtsm_plugins, jtsm_cli\n"
                      "print(Predictor.__name__, jtsm.__file__)\n")
    r = subprocess.run([sys.executable, str(script)], cwd=parent, env=_clean_env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Predictor ")
    assert not r.stdout.split()[1].startswith(str(clone))
