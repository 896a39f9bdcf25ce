"""``python pipelines/distill.py ...``: the same as ``aeon-distill`` (``aeon_trl.cli.distill``)."""
import sys

from aeon_trl.cli.distill import main

if __name__ == "__main__":
    sys.exit(main())
