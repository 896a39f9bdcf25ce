"""``python pipelines/record_demos.py ...``: the same as ``aeon-record-demos`` (``aeon_trl.cli.record_demos``)."""
import sys

from aeon_trl.cli.record_demos import main

if __name__ == "__main__":
    sys.exit(main())
