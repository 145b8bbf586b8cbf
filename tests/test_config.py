import pickle

import pytest

from wmtool import config
from wmtool.errors import WmtoolError


def test_defaults_then_suite_recipe_then_set():
    cfg = config.compose({"env": {"id": "dmc:walker-walk"}}, sets=["env.time_limit=50"])
    assert cfg.env.id == "dmc:walker-walk"
    assert cfg.env.action_repeat == 2  # from recipes/suite/dmc.yaml
    assert cfg.env.time_limit == 50
    assert cfg["env.atari.sticky"] == 0.25


def test_set_wins_over_flags():
    cfg = config.compose({"env": {"id": "gym:CartPole-v1", "obs": "state"}},
                         sets=["env.obs=pixels"])
    assert cfg.env.obs == "pixels"


def test_unknown_key_names_close_valid_keys():
    with pytest.raises(WmtoolError) as err:
        config.compose(sets=["env.action_repaet=2"])
    assert "env.action_repaet" in str(err.value) and "env.action_repeat" in str(err.value)


def test_wrong_type_is_an_error_naming_the_expected_type():
    with pytest.raises(WmtoolError, match="expected int"):
        config.compose(sets=["env.action_repeat=two"])
    with pytest.raises(WmtoolError, match="expected bool"):
        config.compose(sets=["env.atari.gray=1"])
    # ints are accepted where floats are expected, and converted
    assert config.compose(sets=["env.atari.sticky=0"]).env.atari.sticky == 0.0


def test_set_needs_key_equals_value():
    with pytest.raises(WmtoolError, match="key=value"):
        config.compose(sets=["env.action_repeat"])


def test_config_is_frozen_picklable_and_saved_losslessly(tmp_path):
    cfg = config.compose(sets=["env.size=[32,48]"])
    with pytest.raises(TypeError):
        cfg.seed = 3
    assert pickle.loads(pickle.dumps(cfg)).to_dict() == cfg.to_dict()
    cfg.save(tmp_path / "config.yaml")
    again = config.load([("saved", config.read_yaml(tmp_path / "config.yaml"))])
    assert again.to_dict() == cfg.to_dict()
    assert again.env.size == (32, 48)


def test_recipe_by_name_and_missing_recipe(tmp_path):
    recipe = tmp_path / "mine.yaml"
    recipe.write_text("env:\n  id: gym:Pendulum-v1\n  time_limit: 7\n")
    cfg = config.compose(recipe=str(recipe))
    assert cfg.env.id == "gym:Pendulum-v1" and cfg.env.time_limit == 7
    with pytest.raises(WmtoolError, match="does not exist"):
        config.compose(recipe="no_such_recipe")


def test_unknown_size_preset():
    with pytest.raises(WmtoolError, match="valid: debug"):
        config.size_layer("huge")


def test_exponent_without_dot_is_a_float_for_float_keys():
    # YAML 1.1 reads 3e-4 as a string; users write learning rates that way
    cfg = config.compose(sets=["actor.lr=3e-4", "wm.lr=1E-3"])
    assert cfg.actor.lr == pytest.approx(3e-4) and isinstance(cfg.actor.lr, float)
    assert cfg.wm.lr == pytest.approx(1e-3)
    with pytest.raises(WmtoolError, match="expected float"):
        config.compose(sets=["actor.lr=fast"])


def test_a_run_saved_with_a_retired_key_still_loads_and_new_typos_still_fail(tmp_path):
    from wmtool import rundir

    cfg = config.compose(sets=["genie.actions=6"])
    saved = cfg.to_dict()
    saved["genie"]["action_dim"] = 32  # written by a version that had this option
    config.Config(saved).save(tmp_path / "config.yaml")
    (tmp_path / "run.json").write_text("{}")
    again = rundir.load_config(tmp_path)
    assert again.genie.actions == 6 and "action_dim" not in again.genie.to_dict()
    saved["genie"]["action_dims"] = 32  # never an option: still an error
    config.Config(saved).save(tmp_path / "config.yaml")
    with pytest.raises(WmtoolError, match="genie.action_dims"):
        rundir.load_config(tmp_path)


def test_recipe_tasks_section_applies_the_longest_matching_prefix(tmp_path):
    recipe = tmp_path / "per_task.yaml"
    recipe.write_text("env:\n  time_limit: 7\ntasks:\n  pendulum: {env: {action_repeat: 4}}\n"
                      "  pendulum-swing: {env: {action_repeat: 6}}\n")
    swingup = config.compose({"env": {"id": "dmc:pendulum-swingup"}}, recipe=str(recipe))
    assert (swingup.env.action_repeat, swingup.env.time_limit) == (6, 7)
    other = config.compose(recipe=str(recipe), sets=["env.id=dmc:cartpole-balance"])
    assert (other.env.action_repeat, other.env.time_limit) == (2, 7)  # the suite's repeat
    # the flag and --set layers still win over a task's override
    assert config.compose({"env": {"id": "dmc:pendulum-swingup"}}, recipe=str(recipe),
                          sets=["env.action_repeat=3"]).env.action_repeat == 3


def test_renamed_keys_still_load_from_older_run_configs():
    """`behavior.gamma` became `behavior.discount` (one name for the discount, as TD-MPC2's
    `tdmpc2.discount`): a config.yaml saved before, or the old --set spelling, still loads."""
    saved = config.compose(algo="dreamerv3").to_dict()
    del saved["behavior"]["discount"]
    saved["behavior"]["gamma"] = 0.9
    loaded = config.load([("saved", saved)], ["behavior.gamma=0.95"])
    assert loaded.behavior.discount == 0.95 and "gamma" not in loaded.behavior.to_dict()
    assert config.load([("saved", saved)]).behavior.discount == 0.9


def test_an_unknown_key_gets_a_hint_that_fits_on_a_line():
    flat = config.flatten(config.compose().to_dict())
    hint = config.unknown_key_hint
    assert hint("train.stepz", flat).startswith("did you mean train.steps")
    vae = sorted(k for k in flat if k.startswith("vae."))
    assert hint("vae.qqqqqqq", flat) == "the keys under vae. are " + ", ".join(vae)
    assert "recipes/defaults.yaml" in hint("train.zzzzqq", flat)
    assert hint("nothing.here", flat).startswith("the sections are actor, behavior")
    assert all(len(hint(k, flat)) < 300 for k in ("train.zzzzqq", "nothing.here", "vae.q"))


@pytest.mark.parametrize("algo", ["dreamerv3", "dreamerv1", "dreamerv2", "planet"])
def test_pixel_suite_recipes_learn_from_pixels_for_50k_env_steps(algo):
    """Issue 42's budget: every pixel recipe runs 50,000 env steps of 64x64 frames on each
    suite task, whatever its action repeat."""
    for task in ("cartpole-swingup", "ball_in_cup-catch", "finger-spin", "cartpole-balance"):
        cfg = config.compose(recipe=f"{algo}__dmc_vision_cpu", algo=algo,
                             sets=[f"env.id=dmc:{task}"])
        assert (cfg.env.obs, tuple(cfg.env.size)) == ("pixels", (64, 64))
        assert cfg.train.steps * cfg.env.action_repeat == 50_000, task


def test_planet_pixel_recipe_keeps_the_papers_repeats_and_updates_per_episode():
    """PlaNet's per-domain action repeat (cartpole 8, ball_in_cup 4, finger 2) with 100
    updates per 1,000-env-step episode and 5 seed episodes, at the recipe's smaller batch."""
    for task, repeat in (("cartpole-swingup", 8), ("ball_in_cup-catch", 4), ("finger-spin", 2),
                         ("cheetah-run", 4), ("walker-walk", 2), ("reacher-easy", 4)):
        cfg = config.compose(recipe="planet__dmc_vision_cpu", algo="planet",
                             sets=[f"env.id=dmc:{task}"])
        t = cfg.train
        assert cfg.env.action_repeat == repeat, task
        updates_per_agent_step = t.train_ratio / (t.batch * t.length)
        assert updates_per_agent_step * 1000 / repeat == pytest.approx(100), task
        assert t.prefill * repeat == 5000, task
