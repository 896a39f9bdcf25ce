"""The cost of one PPO minibatch step (issue 15): TorchRL's ``ClipPPOLoss.forward``, the loss's plain-tensor path
(the default: the same bits), and ``compile=true``: that path compiled, with Adam's fused kernel.

    python -m benchmarks.bench_update_step [--envs HalfCheetah-v5 InvertedDoublePendulum-v5 Reacher-v5]
                                           [--repeats 30] [--steps 5]

For each env, its shipped preset (so its network and minibatch size: HalfCheetah 2,048 rows, IDP 256, Reacher 128):
one trainer collects a batch and fills its minibatch buffer (``Trainer.fill_buffer``, as an update does); then
``Trainer.optimize_minibatch`` (sample, loss, backward, gradient clipping, optimizer step) runs ``--steps`` times
per arm, the arms alternating ``--repeats`` times in the same process, so a load that comes and goes hits all
three alike. Medians of the per-step time over the repeats (the first 5 dropped: warm-up). The compiled arm's first
call, where ``torch.compile`` compiles, is timed apart.

Writes benchmarks/update_step.json and sections/update_step.md, then regenerates RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from benchmarks.benchmark import load_span, machine, publish

ARMS = ("TorchRL's ClipPPOLoss.forward", "plain-tensor path (default)", "compiled + fused Adam (compile=true)")


def measure(env_id: str, repeats: int, steps: int) -> dict:
    from aeon_trl.config import Config
    from aeon_trl.optim.build import build_optimizer
    from aeon_trl.trainer import Trainer
    cfg, preset = Config.for_run([f"env_id={env_id}", "progress=false", "logger=none", "eval_episodes=0",
                                  "video=false"])
    trainer = Trainer(cfg)
    try:
        trainer.fill_buffer(trainer.collect(), progress=0.0)
        loss, networks = trainer.loss, trainer.loss.networks
        loss.compile()
        compiled = loss._compiled_terms
        start = time.perf_counter()
        trainer.optimize_minibatch(trainer.buffer.sample())
        compile_seconds = time.perf_counter() - start
        if loss._compiled_terms is None:
            raise RuntimeError("torch.compile failed (see the warning above): no compiled arm to measure")
        foreach, fused = trainer.optimizer, build_optimizer(trainer.net.parameters(), cfg.optim, fused=True)
        settings = {ARMS[0]: (None, None, foreach), ARMS[1]: (networks, None, foreach),
                    ARMS[2]: (networks, compiled, fused)}
        ms: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for _ in range(repeats):
            for arm, (nets, terms, optimizer) in settings.items():
                loss.networks, loss._compiled_terms, trainer.optimizer = nets, terms, optimizer
                start = time.perf_counter()
                for _ in range(steps):
                    trainer.optimize_minibatch(trainer.buffer.sample())
                ms[arm].append((time.perf_counter() - start) / steps * 1e3)
    finally:
        trainer.close()
    medians = {arm: statistics.median(v[5:] if len(v) > 10 else v) for arm, v in ms.items()}
    row = {"env": env_id, "preset": preset.name if preset else None, "minibatch_size": cfg.train.minibatch_size,
           "hidden_sizes": list(cfg.model.hidden_sizes), "gating": cfg.model.gating, "ms": ms,
           "median_ms": medians, "compile_seconds": compile_seconds}
    print(f"  {env_id} (minibatches of {cfg.train.minibatch_size}): "
          + ", ".join(f"{arm} {m:.2f} ms" for arm, m in medians.items())
          + f"; compiling {compile_seconds:.0f} s", flush=True)
    return row


def section(data: dict) -> str:
    lines = ["## One minibatch step: TorchRL's loss, the plain-tensor path, compiled", "",
             f"- command: `{data['command']}`", f"- machine: {data['machine']}", f"- date: {data['date']}",
             f"- load: {data['load']}", "",
             "`Trainer.optimize_minibatch` (sample, loss, backward, clipping, optimizer step) with each env's preset, "
             f"{data['steps']} steps per arm, the three arms alternating {data['repeats']} times in one process; "
             "median ms per step. The plain-tensor path gives the same bits as TorchRL's "
             "(tests/test_objectives_ppo.py, tests/test_trainer.py); the compiled one, which also steps Adam's fused "
             "kernel instead of foreach (as `compile=true` trains), agrees to float precision. "
             "Compiling: the first call's seconds, with torch's on-disk compile cache as this machine left it (a graph "
             "compiled cold took 15-20 s here).", "",
             "| env (preset) | minibatch | network | " + " | ".join(ARMS) + " | default vs TorchRL | compiled vs "
             "TorchRL | compiling (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in data["rows"]:
        m = [r["median_ms"][arm] for arm in ARMS]
        net = "x".join(map(str, r["hidden_sizes"])) + (" + gate" if r["gating"] else "")
        lines.append(f"| {r['env']} | {r['minibatch_size']} | {net} | " + " | ".join(f"{x:.2f} ms" for x in m)
                     + f" | {m[0] / m[1]:.2f}x | {m[0] / m[2]:.2f}x | {r['compile_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="bench_update_step", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=["HalfCheetah-v5", "InvertedDoublePendulum-v5", "Reacher-v5"])
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args(argv)
    command = "python -m benchmarks.bench_update_step " + " ".join(argv if argv is not None else sys.argv[1:])
    load_start = os.getloadavg()[0]
    rows = [measure(env_id, args.repeats, args.steps) for env_id in args.envs]
    data = {"command": command.strip(), "machine": machine(), "date": time.strftime("%Y-%m-%d"),
            "load": load_span(load_start), "repeats": args.repeats, "steps": args.steps, "rows": rows}
    publish("update_step", data, section(data))
    print(section(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
