"""aeon-submit / aeon-collect without a cluster: profile validation, the sbatch template, the summary."""
import json

import pytest

from aeon_trl.cli.submit import parse_args, training_config
from aeon_trl.launch.collect import collect, format_table
from aeon_trl.launch.profile import DEFAULT_PROFILE, Profile, ProfileError
from aeon_trl.launch.submit import sbatch_script

FIELDS = dict(partition="gpu", account="lab", qos=None, time=60, nodes=2, gpus_per_node=4, cpus_per_task=8,
              mem="64G", constraint=None, array_parallelism=8)


def test_shipped_profiles_load():
    local = Profile.load(DEFAULT_PROFILE)
    assert local.partition == "debug" and local.world_size == 1
    gpu = Profile.load(DEFAULT_PROFILE.parent / "gpu.yaml")
    assert gpu.ntasks_per_node == gpu.gpus_per_node  # one process per GPU


def test_missing_field_is_named():
    fields = dict(FIELDS)
    del fields["qos"]
    with pytest.raises(ProfileError, match="missing field.*qos"):
        Profile.from_dict(fields)


def test_unknown_field_suggests_the_right_one():
    with pytest.raises(ProfileError, match="Did you mean 'partition'"):
        Profile.from_dict({**FIELDS, "partiton": "x"})


@pytest.mark.parametrize("key,value", [("time", 0), ("nodes", "two"), ("mem", "lots"), ("gpus_per_node", -1)])
def test_bad_values_are_refused(key, value):
    with pytest.raises(ProfileError, match=key):
        Profile.from_dict({**FIELDS, key: value})


def test_executor_parameters_follow_the_profile():
    p = Profile.from_dict(FIELDS, overrides={"time": 30})
    params = p.executor_parameters()
    assert params["timeout_min"] == 30 and params["tasks_per_node"] == 4 and params["gpus_per_node"] == 4
    assert params["slurm_account"] == "lab" and params["slurm_mem"] == "64G" and "slurm_qos" not in params


def test_seeds_and_overrides_are_separated():
    args = parse_args(["--seeds", "0", "1", "2", "env_id=Hopper-v5", "lr=1e-4"])
    assert args.seeds == [0, 1, 2] and args.overrides == ["env_id=Hopper-v5", "lr=1e-4"]


def test_sbatch_template(tmp_path):
    text = sbatch_script(Profile.from_dict(FIELDS), tmp_path, ["env_id=Hopper-v5"], seeds=[0, 1, 2])
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=01:00:00", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4", "#SBATCH --account=lab",
                 "#SBATCH --mem=64G", "#SBATCH --signal=USR2@90", "#SBATCH --requeue", "#SBATCH --array=0-2%8",
                 "SEEDS=(0 1 2)"):
        assert line in text.splitlines(), line
    assert "-m aeon_trl.launch.job" in text and "env_id=Hopper-v5" in text and "--qos" not in text


@pytest.mark.parametrize("argv", [["env_id=HalfCheetah-v5"], ["env_id=HalfCheetah-v5", "--no-preset"],
                                  ["env_id=Hopper-v5", "gamma=0.99", "seed=3"]])
def test_submit_trains_the_config_aeon_train_builds(argv):
    """A cluster job gets the env's preset exactly as aeon-train does (and skips it with --no-preset)."""
    from aeon_trl.cli.train import build_config, parse_args as train_args
    submitted = training_config(parse_args(argv))
    assert submitted.to_dict() == build_config(train_args(argv))[0].to_dict()
    assert submitted.model.gating is (argv == ["env_id=HalfCheetah-v5"])  # the HalfCheetah preset's gate


def test_sbatch_template_passes_no_preset_to_the_job(tmp_path):
    text = sbatch_script(Profile.from_dict(FIELDS), tmp_path, ["env_id=HalfCheetah-v5"], no_preset=True)
    srun = next(line for line in text.splitlines() if line.startswith("srun"))
    assert "-m aeon_trl.launch.job" in srun and "--no-preset" in srun
    assert "--no-preset" not in sbatch_script(Profile.from_dict(FIELDS), tmp_path, ["env_id=HalfCheetah-v5"])


def test_collect_summarises_and_lists_missing_runs(tmp_path):
    for seed, ret in ((0, 10.0), (1, 20.0)):
        d = tmp_path / f"seed_{seed}"
        d.mkdir()
        (d / "config.yaml").write_text("{}")
        (d / "results.json").write_text(json.dumps({"seed": seed, "timesteps": 100, "eval_mean": ret, "eval_std": 1.0,
                                                    "steps_per_second": 50.0, "starts": [0]}))
    (tmp_path / "seed_2").mkdir()
    (tmp_path / "seed_2" / "config.yaml").write_text("{}")
    summary = collect(tmp_path)
    assert summary["eval_return"] == {"mean": 15.0, "std": 5.0, "n": 2} and summary["missing"] == ["seed_2"]
    table = format_table(summary)
    assert "15.0 ± 5.0" in table and "missing" in table
