"""A tiny trained run folder, as aeon-train lays it out, for the evaluation and comparison tests."""
from __future__ import annotations

import json
import time
from pathlib import Path

from aeon_trl.config import Config
from aeon_trl.trainer import Trainer, results_record

TINY = ["env_id=InvertedPendulum-v5", "env_backend=envpool", "num_envs=4", "steps_per_env=64", "minibatch_size=128",
        "epochs=2", "total_timesteps=1024", "eval_episodes=2", "eval_every=2", "progress=false", "lr=1e-3"]


def train_tiny_run(run_dir: Path, seed: int = 0, overrides: list[str] = ()) -> Path:
    """Train 1,024 steps with ``Trainer`` and write checkpoint.pt, config.yaml, history.json, results.json."""
    cfg = Config().with_overrides([*TINY, f"seed={seed}", *overrides])
    trainer = Trainer(cfg)
    start = time.perf_counter()
    try:
        summary = trainer.train(on_iteration=lambda tr, m: m.update(wall_time=time.perf_counter() - start))
        run_dir.mkdir(parents=True, exist_ok=True)
        trainer.save(run_dir / "checkpoint.pt")
        cfg.save(run_dir / "config.yaml")
        eval_returns = trainer.evaluate(cfg.train.eval_episodes)
    finally:
        trainer.close()
    (run_dir / "results.json").write_text(json.dumps(results_record(summary, cfg, eval_returns)))
    (run_dir / "history.json").write_text(json.dumps(trainer.history))
    return run_dir
