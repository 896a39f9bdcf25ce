"""aeon-eval: score a trained agent and watch it (the zoo's enjoy.py, CleanRL's --capture-video).

    aeon-eval runs/my-run                          # 10 deterministic episodes -> runs/my-run/eval/evaluation.json
    aeon-eval runs/my-run --video --gif            # + episode-0.mp4 / episode-0.gif of the first episode
    aeon-eval runs/my-run/checkpoint.pt --episodes 20 --stochastic --out /tmp/eval --seed 7

The agent acts on the plain gymnasium env through AdvancedPPO.get_action (the checkpoint's normalization, frozen).
A video has one frame per step (the state after it), so its frame count is the episode's length. Rendering picks
MUJOCO_GL (EGL, then OSMesa) unless MUJOCO_GL is set; when nothing renders the JSON is still written, with the reason
under "video_error", and the exit code stays 0.
"""
from __future__ import annotations

import argparse
import sys

from aeon_trl.checkpoint import CheckpointError
from aeon_trl.config import ConfigError
from aeon_trl.evaluation import DEFAULT_SIZE, default_out_dir, evaluate_run


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="aeon-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path", metavar="RUN_DIR_OR_CHECKPOINT", help="a run folder (with checkpoint.pt) or a checkpoint")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes (default 10)")
    parser.add_argument("--stochastic", action="store_true", help="sample actions instead of the policy mean")
    parser.add_argument("--video", action="store_true", help="write an MP4 of the first episode(s)")
    parser.add_argument("--gif", action="store_true", help="write a GIF of the first episode(s)")
    parser.add_argument("--video-episodes", type=int, default=1, help="how many of the first episodes to film")
    parser.add_argument("--size", type=int, nargs=2, default=list(DEFAULT_SIZE), metavar=("WIDTH", "HEIGHT"),
                        help="frame size in pixels (default 480 480)")
    parser.add_argument("--out", help="output folder (default: <run folder>/eval)")
    parser.add_argument("--seed", type=int, help="episode i is reset with seed S + i (default: the run's seed + 1000003)")
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.episodes < 1 or args.video_episodes < 1 or min(args.size) < 1:
            raise ConfigError("--episodes, --video-episodes and --size must be >= 1")
        record = evaluate_run(args.path, args.episodes, not args.stochastic, args.seed, video=args.video,
                              gif=args.gif, video_episodes=args.video_episodes, out_dir=args.out,
                              size=tuple(args.size))
    except (ConfigError, CheckpointError) as exc:
        print(f"aeon-eval: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else 1
    out = args.out or default_out_dir(args.path)
    mode = "deterministic" if record["deterministic"] else "stochastic"
    print(f"{record['env_id']}: {record['episodes']} {mode} episodes, return {record['mean']:.1f} ± {record['std']:.1f}"
          f" (min {record['min']:.1f}, max {record['max']:.1f}), mean length {record['mean_length']:.0f}"
          f" -> {out}/evaluation.json")
    for path in record["videos"]:
        print(f"video: {path}")
    if "video_error" in record:
        print(f"aeon-eval: no video: {record['video_error']}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
