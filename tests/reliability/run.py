"""Run the reliability matrix (one test per case) and print how long it took.

    python tests/reliability/run.py [more pytest arguments]

Case 7 (a JPEG whose header claims more pixels than it holds, a truncated JPEG) is tested with
the image reader, in tests/data/test_image_reading.py, and runs here too when present.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    targets = [str(HERE)]
    reading = HERE.parent / "data" / "test_image_reading.py"
    if reading.is_file():
        targets.append(str(reading))
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "pytest", "-q", *targets, *sys.argv[1:]],
                           cwd=HERE.parent.parent)
    print(f"reliability matrix: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
