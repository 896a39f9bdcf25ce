"""``python slurm/collect.py ...``: the same as ``aeon-collect`` (``aeon_trl.cli.collect``)."""
import sys

from aeon_trl.cli.collect import main

if __name__ == "__main__":
    sys.exit(main())
