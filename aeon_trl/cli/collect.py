"""aeon-collect: the table (or ``--json``) of the runs under a folder, e.g. a seed sweep of ``aeon-submit``."""
from __future__ import annotations

import argparse
import json
import sys

from aeon_trl.launch.collect import collect, format_table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="aeon-collect", description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)
    try:
        summary = collect(args.run_dir)
    except FileNotFoundError as exc:
        print(f"aeon-collect: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2) if args.json else format_table(summary))
    return 0 if summary["runs"] and not summary["missing"] else 1


if __name__ == "__main__":
    sys.exit(main())
