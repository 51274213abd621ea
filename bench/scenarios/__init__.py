"""The scenarios of ``bench/run.py``, one module each, plus what they share.

Importing the package puts ``tests/``, ``tests/e2e/`` and ``bench/`` on ``sys.path``, so
the scenarios reuse the test helpers (``serverproc``, ``test_run_support``) and the
older single-purpose benches (``serve_throughput``, ``latency``) instead of copying them.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]
for _extra in (_ROOT / "bench", _ROOT / "tests" / "e2e", _ROOT / "tests"):
    if str(_extra) not in sys.path:
        sys.path.insert(0, str(_extra))
