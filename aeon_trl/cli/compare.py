"""aeon-compare: runs side by side. Runs whose configs differ only in the seed (and bookkeeping such as run_dir)
form one group; each group is drawn as its mean ± std over seeds of the deterministic evaluation return (solid)
and the training return (dashed) against env steps, with the final evaluations marked.

    aeon-compare runs/hopper-s0 runs/hopper-s1 runs/hopper-lr-s0 runs/hopper-lr-s1 --out compare.png --table compare.md
    aeon-compare runs/ --out compare.png --reference "SB3 zoo PPO=2410" --reference "CleanRL PPO=2300"

A folder that is not a run but holds runs (runs/) stands for all of them. The table (Markdown) is also printed.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from aeon_trl.compare import (NOT_COMPARED, CompareError, comparison_table, find_runs, group_runs, load_run,
                              parse_references, plot_comparison)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run folders (or folders holding run folders)")
    parser.add_argument("--out", required=True, help="the plot (PNG)")
    parser.add_argument("--table", help="also write the Markdown table to this file")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE",
                        help="a published result drawn as a horizontal line (repeatable)")
    parser.add_argument("--ignore", action="append", default=[], metavar="KEY",
                        help=f"a config key that does not split groups, besides {', '.join(NOT_COMPARED)}")
    parser.add_argument("--title", help="plot title (default: the env ids)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        references = parse_references(args.reference)
        runs = [load_run(p) for p in find_runs(args.runs)]
        groups = group_runs(runs, ignore=[*NOT_COMPARED, *args.ignore])
        plot = plot_comparison(groups, args.out, args.title, references)
    except CompareError as exc:
        print(f"aeon-compare: error: {exc}", file=sys.stderr)
        return 2
    table = comparison_table(groups)
    if args.table:
        Path(args.table).parent.mkdir(parents=True, exist_ok=True)
        Path(args.table).write_text(table)
    print(table, end="")
    print(f"{len(runs)} runs in {len(groups)} groups -> {plot}" + (f", {args.table}" if args.table else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
