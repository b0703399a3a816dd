"""Benchmark xent against each framework's native cross-entropy (same process, A/B).

    python benchmarks/run.py [--quick] [--json FILE] [--png FILE]

The same as ``xent bench``; the engine lives in ``xent/_bench.py`` so that it
also works from an installed xent. ``--help`` lists the filters.
"""

import sys

from xent._bench import main

if __name__ == "__main__":
    sys.exit(main())
