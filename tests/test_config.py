"""Config: defaults, the seed's keys, nested/flat keys, CLI overrides, validation messages, round trips."""

import pytest

from aeon_trl.config import PRESETS, Config, ConfigError

# The seed's dict keys, each with a non-default value so a key landing in the wrong field (or being
# silently dropped) shows up as a mismatch.
SEED = {"clip_range": 0.3, "entropy_coef": 0.01, "kl_target": 0.05, "adaptive_lr": False, "gamma": 0.98,
        "gae_lambda": 0.9, "batch_size": 256, "epochs": 4, "lr": 1e-3, "wd": 1e-4}


def test_defaults_validate():
    cfg = Config()
    cfg.validate()  # explicit second call: validation is repeatable, not a one-shot side effect
    assert cfg.frames_per_batch == cfg.env.num_envs * cfg.train.steps_per_env
    assert cfg.train.minibatch_size <= cfg.frames_per_batch


def test_seed_keys_land_in_the_right_fields():
    cfg = Config.from_dict(SEED)
    assert cfg.ppo.clip_epsilon == 0.3
    assert cfg.ppo.entropy_coef == 0.01
    assert cfg.ppo.kl_target == 0.05
    assert cfg.optim.adaptive_lr is False
    assert cfg.ppo.gamma == 0.98
    assert cfg.ppo.gae_lambda == 0.9
    assert cfg.train.minibatch_size == 256
    assert cfg.train.epochs == 4
    assert cfg.optim.lr == 1e-3
    assert cfg.optim.wd == 1e-4
    # everything not given keeps its default
    assert cfg.env == Config().env and cfg.model == Config().model


def test_nested_and_flat_keys_mix():
    cfg = Config.from_dict({"ppo": {"clip_epsilon": 0.25, "gamma": 0.97}, "lr": 5e-4, "train": {"seed": 7},
                            "model": {"hidden_sizes": [32, 16]}})
    assert (cfg.ppo.clip_epsilon, cfg.ppo.gamma, cfg.optim.lr, cfg.train.seed) == (0.25, 0.97, 5e-4, 7)
    assert cfg.model.hidden_sizes == [32, 16]


def test_nested_key_in_the_wrong_section_is_refused():
    with pytest.raises(ConfigError, match=r"'lr' belongs to section 'optim', not 'ppo'"):
        Config.from_dict({"ppo": {"lr": 1e-3}})
    with pytest.raises(ConfigError, match="section 'ppo' must be a mapping"):
        Config.from_dict({"ppo": 3})


def test_from_dict_on_a_base_keeps_the_base_values():
    base = Config.from_dict({"lr": 1e-3, "seed": 3})
    cfg = Config.from_dict({"gamma": 0.9}, base=base)
    assert (cfg.optim.lr, cfg.train.seed, cfg.ppo.gamma) == (1e-3, 3, 0.9)
    assert base.ppo.gamma == 0.99  # the base is not mutated


def test_with_overrides_dotlist():
    base = Config()
    cfg = base.with_overrides(["ppo.clip_epsilon=0.3", "lr=1e-3", "progress=false", "hidden_sizes=[32,32]",
                               "clip_range=0.25"])  # later keys win; seed alias on the command line
    assert cfg.ppo.clip_epsilon == 0.25
    assert cfg.optim.lr == 1e-3 and isinstance(cfg.optim.lr, float)
    assert cfg.train.progress is False
    assert cfg.model.hidden_sizes == [32, 32]
    assert base.ppo.clip_epsilon == 0.2 and base.optim.lr == 3e-4  # overrides return a new config


def test_with_overrides_refuses_an_item_without_equals():
    with pytest.raises(ConfigError, match="not of the form key=value"):
        Config().with_overrides(["lr"])


@pytest.mark.parametrize("data, suggestion", [
    ({"learnign_rate": 1e-3}, "lr"),           # a typo of an alias suggests the canonical name
    ({"clip_rang": 0.3}, "clip_epsilon"),
    ({"ppo": {"clip_rang": 0.3}}, "clip_epsilon"),
    ({"gama": 0.9}, "gamma"),
])
def test_unknown_key_says_did_you_mean(data, suggestion):
    with pytest.raises(ConfigError, match=rf"unknown config key '.*'\. Did you mean '{suggestion}'\?"):
        Config.from_dict(data)


def test_unknown_key_from_the_command_line_says_did_you_mean():
    with pytest.raises(ConfigError, match=r"Did you mean 'entropy_coef'\?"):
        Config().with_overrides(["entropy_cof=0.01"])


@pytest.mark.parametrize("data, key", [
    ({"gamma": 1.5}, "gamma"),
    ({"gamma": 0.0}, "gamma"),
    ({"clip_epsilon": 0}, "clip_epsilon"),
    ({"gae_lambda": -0.1}, "gae_lambda"),
    ({"lr": -1e-3}, "lr"),
    ({"num_envs": 0}, "num_envs"),
    ({"num_envs": 4, "steps_per_env": 8, "minibatch_size": 33}, "minibatch_size"),
    ({"env_backend": "pool"}, "env_backend"),
    ({"activation": "gelu"}, "activation"),
    ({"hidden_sizes": []}, "hidden_sizes"),
    ({"log_std_init": 5.0}, "log_std_init"),
    ({"device": "tpu"}, "device"),
])
def test_out_of_range_values_name_the_key(data, key):
    with pytest.raises(ConfigError, match=rf"config value {key}=.* is out of range: {key} "):
        Config.from_dict(data)


def test_batch_size_equal_to_the_on_policy_batch_is_allowed():
    cfg = Config.from_dict({"num_envs": 4, "steps_per_env": 8, "batch_size": 32})
    assert cfg.frames_per_batch == 32


def test_bad_choice_lists_the_allowed_values():
    with pytest.raises(ConfigError, match=r"\['auto', 'envpool', 'parallel', 'vector', 'gymnasium', 'serial'\]"):
        Config.from_dict({"env_backend": "pool"})


@pytest.mark.parametrize("data, key", [
    ({"lr": "abc"}, "lr"),
    ({"num_envs": 2.5}, "num_envs"),
    ({"progress": "maybe"}, "progress"),
    ({"hidden_sizes": "abc"}, "hidden_sizes"),
    ({"env_id": 3}, "env_id"),
])
def test_wrong_types_are_refused(data, key):
    with pytest.raises(ConfigError, match=rf"config value {key}=.* has the wrong type"):
        Config.from_dict(data)


def test_strings_from_yaml_or_cli_are_coerced():
    cfg = Config.from_dict({"lr": "1e-3", "num_envs": "8", "steps_per_env": 16.0, "norm_obs": "no",
                            "batch_size": 32})
    assert cfg.optim.lr == 1e-3 and cfg.env.num_envs == 8 and isinstance(cfg.train.steps_per_env, int)
    assert cfg.env.norm_obs is False


def test_yaml_round_trip(tmp_path):
    cfg = Config.from_dict({**SEED, "env_id": "Hopper-v5", "hidden_sizes": [128, 64], "progress": False,
                            "device": "cpu"})
    path = tmp_path / "config.yaml"
    cfg.save(path)
    assert "clip_epsilon: 0.3" in path.read_text()  # written as nested, canonical YAML
    assert Config.load(path) == cfg


def test_load_reads_flat_yaml_and_json(tmp_path):
    (tmp_path / "flat.yaml").write_text("clip_range: 0.1\nlr: 0.002\nppo:\n  gamma: 0.95\n")
    cfg = Config.load(tmp_path / "flat.yaml")
    assert (cfg.ppo.clip_epsilon, cfg.optim.lr, cfg.ppo.gamma) == (0.1, 0.002, 0.95)
    (tmp_path / "c.json").write_text(Config.from_dict(SEED).to_json())
    assert Config.load(tmp_path / "c.json") == Config.from_dict(SEED)


def test_load_missing_file():
    with pytest.raises(ConfigError, match="does not exist"):
        Config.load("/nonexistent/config.yaml")


def test_dict_round_trip():
    cfg = Config.from_dict({**SEED, "num_critics": 3, "logger": "none", "lookahead": True})
    data = cfg.to_dict()
    assert set(data) == {"env", "model", "ppo", "optim", "train", "curiosity", "replay", "demo", "shaping"}
    assert Config.from_dict(data) == cfg
    data["ppo"]["gamma"] = 0.5  # to_dict returns a copy, not a view
    assert cfg.ppo.gamma == 0.98


def test_for_run_layers_defaults_preset_and_overrides(tmp_path):
    """One builder for every command: defaults, then the env's preset, then overrides; a file replaces both."""
    cfg, preset = Config.for_run(["env_id=HalfCheetah-v5", "lr=1e-3"])
    assert preset is not None and preset.name == "HalfCheetah-v5.yaml"
    assert cfg.model.gating and cfg.train.minibatch_size == 2048 and cfg.optim.lr == 1e-3
    cfg, preset = Config.for_run(["env_id=HalfCheetah-v5", "batch_size=1024"])
    assert cfg.train.minibatch_size == 1024 and cfg.model.gating  # overrides win over the preset
    cfg, preset = Config.for_run(["env_id=HalfCheetah-v5"], preset=False)
    assert preset is None and cfg.to_dict() == Config().to_dict()
    own = tmp_path / "own.yaml"
    own.write_text("lr: 0.002\n")
    cfg, preset = Config.for_run(["env_id=HalfCheetah-v5"], config_file=own)
    assert preset is None and not cfg.model.gating and cfg.optim.lr == 0.002
    assert Config.for_run(["env_id=Walker2d-v5"]) == (Config().with_overrides(["env_id=Walker2d-v5"]), None)


def test_minibatch_size_and_the_deprecated_batch_size_key(recwarn):
    cfg = Config.from_dict({"num_envs": 4, "steps_per_env": 8, "minibatch_size": 16})
    assert cfg.train.minibatch_size == 16 and not [w for w in recwarn if w.category is DeprecationWarning]
    with pytest.warns(DeprecationWarning, match="'batch_size' is deprecated: use 'minibatch_size'"):
        old = Config.from_dict({"num_envs": 4, "steps_per_env": 8, "batch_size": 16})
    assert old == cfg
    with pytest.warns(DeprecationWarning):
        assert Config().with_overrides(["batch_size=512"]).train.minibatch_size == 512
    with pytest.warns(DeprecationWarning):
        assert cfg.train.batch_size == 16  # the old attribute reads the minibatch
    # a checkpoint's config from before the rename (train.batch_size, curiosity.curiosity) still loads
    saved = Config().to_dict()
    saved["train"]["batch_size"] = saved["train"].pop("minibatch_size") // 2
    saved["curiosity"]["curiosity"] = not saved["curiosity"].pop("enabled")
    with pytest.warns(DeprecationWarning):
        loaded = Config.from_dict(saved)
    assert loaded.train.minibatch_size == 512 and loaded.curiosity.enabled
    assert "minibatch_size" in Config().to_dict()["train"] and "batch_size" not in Config().to_dict()["train"]


def test_presets_use_the_current_names():
    for path in sorted(PRESETS.rglob("*.yaml")):
        text = path.read_text()
        assert "batch_size:" not in text.replace("minibatch_size:", "") and "curiosity: true" not in text, path
        Config.load(path)


def test_upgrade_dict_reads_an_old_saved_config_in_todays_names(recwarn):
    saved = Config().to_dict()
    saved["train"]["batch_size"] = saved["train"].pop("minibatch_size")
    saved["curiosity"]["curiosity"] = saved["curiosity"].pop("enabled")
    assert Config.upgrade_dict(saved) == Config().to_dict()
    assert not [w for w in recwarn if w.category is DeprecationWarning]
