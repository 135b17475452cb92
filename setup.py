"""Build script for the optional C extension; the package metadata lives in pyproject.toml.

Both are ``optional``: where they cannot be compiled (no C compiler or Python headers), the
install still succeeds and jtsm uses its pure-Python/torch paths, with the same results.

- ``jtsm.evaluation._pngcore``: PNG decoding and pixel-pair runs for PQ evaluation (else
  libspng / OpenCV);
- ``jtsm.ops._binnedmax``: the CPU kernel of MoIPool's binned max, its backward and its plan
  (registered as the torch.library op ``jtsm::binned_max``; else scatter_reduce in torch).

``pip install -e .`` installs in setuptools' strict editable mode: the packages are linked
into ``build/__editable__.*``, a folder on ``sys.path``. setuptools' default mode installs an
import hook that runs after the path search, so a script in the clone's parent folder (where
the clone itself, ``jtsm/``, looks like a namespace package) would import that folder instead
of the package. A file added to the package needs the install run again (``make`` does it).
"""

import sys

from setuptools import Extension, setup

_ARGS = [] if sys.platform == "win32" else ["-O3", "-std=c99"]

setup(
    options={"editable_wheel": {"mode": "strict"}},
    ext_modules=[
        Extension(
            "jtsm.evaluation._pngcore",
            ["jtsm/evaluation/_pngcore.c"],
            extra_compile_args=_ARGS,
            optional=True,
        ),
        Extension(
            "jtsm.ops._binnedmax",
            ["jtsm/ops/_binnedmax.c"],
            extra_compile_args=_ARGS,
            optional=True,
        ),
    ]
)
