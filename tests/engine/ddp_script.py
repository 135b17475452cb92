"""Run the toy training with N gloo workers: python ddp_script.py NPROC OUT [BATCH]."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from toy import run  # noqa: E402

from jtsm.engine.distributed import launch  # noqa: E402

if __name__ == "__main__":
    batch = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    launch(run, int(sys.argv[1]), "gloo", args=(sys.argv[2], 12, batch))
