"""``python pipelines/tune.py ...``: the same as ``aeon-tune`` (``aeon_trl.cli.tune``)."""
import sys

from aeon_trl.cli.tune import main

if __name__ == "__main__":
    sys.exit(main())
