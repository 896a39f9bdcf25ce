"""The AutoTuner on the real SLURM (``slurm/local_cluster.sh start``; ``.ci/run`` starts it): every generation is
one job array through submitit (``aeon_trl.launch.submit.make_executor``), members continue from their checkpoints across
generations, and the eval_return metric comes back from the jobs."""
from __future__ import annotations

import json

from aeon_trl.checkpoint import load_checkpoint
from aeon_trl.config import Config

from .test_slurm import LOCAL, TINY, cluster, profile, pytestmark  # noqa: F401  (the fixture and the marks)


def test_tuner_runs_each_generation_as_a_slurm_job_array(cluster, tmp_path):
    from aeon_trl.tuning import AutoTuner
    from aeon_trl.launch.submit import make_executor
    base = Config().with_overrides(TINY)
    tuning = {"population_size": 2, "mutation_rate": 0.25, "metric": "eval_return", "eval_episodes": 2,
              "eval_timesteps": 256, "parameters": {"lr": {"low": 1e-4, "high": 3e-3, "log": True},
                                                    "clip_range": {"low": 0.1, "high": 0.3}}}
    executor = make_executor(profile(), tmp_path / "slurm_logs", local=LOCAL)
    best = AutoTuner(base, tuning, tune_dir=tmp_path / "tune", executor=executor, log=None).run(2)

    state = json.loads((tmp_path / "tune" / "tuner_state.json").read_text())
    arrays = []
    for record in state["history"]:
        job_ids = sorted(m["job_id"] for m in record["members"])
        if not LOCAL:  # the local executor has no arrays: a PID per member
            assert [j.split("_")[1] for j in job_ids] == ["0", "1"], job_ids  # tasks 0 and 1 of one array
            assert len({j.split("_")[0] for j in job_ids}) == 1, job_ids
        arrays.append(job_ids[0].split("_")[0])
        assert all(m["score"] == m["eval_return"] and m["score"] > 0 for m in record["members"])
    assert arrays[0] != arrays[1]  # one array per generation
    for m in state["members"]:  # every member continued across generations: its lineage has both
        ckpt = load_checkpoint(tmp_path / "tune" / m["checkpoint"])
        assert ckpt["counters"]["frames"] == 512 and len(ckpt["history"]) == 2
    assert Config.load(tmp_path / "tune" / "best.yaml").to_dict() == best.to_dict()
    assert best.train.total_timesteps == 512
