#!/usr/bin/env python3
"""Stock Flow benchmark orchestrator, started by ops/bench: runs the benchkit package next to this
file (ops/benchkit). Exit status: 0 when every invariant check passed, 1 when a scenario FAILED
(the report is written first), 2 on a usage error."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from benchkit.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
