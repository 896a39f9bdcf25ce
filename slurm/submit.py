"""``python slurm/submit.py ...``: the same as ``aeon-submit`` (``aeon_trl.cli.submit``)."""
import sys

from aeon_trl.cli.submit import main

if __name__ == "__main__":
    sys.exit(main())
