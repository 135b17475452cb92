"""Build script for the optional C extension; the package metadata lives in pyproject.toml.

``jtsm.evaluation._pngcore`` (PNG decoding and pixel-pair runs for PQ evaluation) is
``optional``: where it cannot be compiled (no C compiler or Python headers), the install still
succeeds and evaluation decodes with libspng / OpenCV as before.
"""

import sys

from setuptools import Extension, setup

_ARGS = [] if sys.platform == "win32" else ["-O3", "-std=c99"]

setup(
    ext_modules=[
        Extension(
            "jtsm.evaluation._pngcore",
            ["jtsm/evaluation/_pngcore.c"],
            extra_compile_args=_ARGS,
            optional=True,
        )
    ]
)
