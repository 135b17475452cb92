"""The bad-input and crash-safety tests share their file makers (``badfiles.py``)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
