"""``python pipelines/train.py ...``: the same as ``aeon-train`` (``aeon_trl.cli.train``)."""
import sys

from aeon_trl.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
