"""Run the toy training with N gloo workers: python ddp_script.py NPROC OUT [BATCH | nan]
(``nan``: rank 1's loss turns NaN at its 5th forward, see :func:`toy.run_nan`)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toy import run, run_nan  # noqa: E402

from jtsm.engine.distributed import launch  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[3] == "nan":
        launch(run_nan, int(sys.argv[1]), "gloo", args=(sys.argv[2],))
    else:
        batch = int(sys.argv[3]) if len(sys.argv) > 3 else 4
        launch(run, int(sys.argv[1]), "gloo", args=(sys.argv[2], 12, batch))
