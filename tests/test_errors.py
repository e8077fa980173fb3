"""Bad input at the environment's edges ends in a clear error that names the argument:
actions and states handed to `step`, fixed maps handed to `reset`, impossible scenarios
handed to `make_state`, and the command lines of the evaluator and the renderer.

The step and reset checks read only static shapes and dtypes, so every test here traces
(or evaluates shapes) without compiling a program.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax import render
from nmmo_jax.config import GRASS, ORE, STONE, WATER
from train import evaluate

SIDE = 32  # the map side of conftest's `small_cfg`


@pytest.fixture(scope="module")
def realm(small_env):
    """A fresh realm of the small config: (obs, state)."""
    return small_env.reset(jax.random.key(0))


def _actions(n, **fields):
    zeros = jnp.zeros((n,), jnp.int32)
    return nmmo_jax.Actions(**{"move": zeros, "style": zeros, "target": zeros, **fields})


def _step_shapes(env, state, actions):
    """Traces `env.step` (no compilation) and returns the shapes of its outputs."""
    return jax.eval_shape(env.step, jax.random.key(1), state, actions)


@pytest.mark.parametrize("field, value, shape, dtype", [
    ("move", jnp.zeros((1,), jnp.int32), r"\(1,\)", "int32"),
    ("move", jnp.int32(2), r"\(\)", "int32"),
    ("style", jnp.zeros((17,), jnp.int32), r"\(17,\)", "int32"),
    ("target", jnp.zeros((16,), jnp.float32), r"\(16,\)", "float32"),
    ("move", jnp.zeros((16,), bool), r"\(16,\)", "bool"),
])
def test_step_rejects_actions_of_the_wrong_shape_or_dtype(small_env, realm, field, value,
                                                          shape, dtype):
    actions = _actions(small_env.n_agents, **{field: value})
    with pytest.raises(ValueError, match=rf"actions.{field} has shape {shape} and dtype "
                                         rf"{dtype}; expected shape \(16,\) and an integer"):
        _step_shapes(small_env, realm[1], actions)


def test_step_rejects_a_python_scalar_broadcast_to_every_agent(small_env, realm):
    with pytest.raises(ValueError, match=r"actions.move has shape \(\)"):
        small_env.step(jax.random.key(1), realm[1], _actions(small_env.n_agents, move=1))


@pytest.mark.parametrize("actions, name", [
    (None, "NoneType"),
    ((np.zeros(16, np.int32),) * 3, "tuple"),
    ({"move": np.zeros(16, np.int32)}, "dict"),
])
def test_step_rejects_actions_that_are_not_an_actions_struct(small_env, realm, actions, name):
    with pytest.raises(ValueError, match=rf"actions must be an nmmo_jax.Actions of integer "
                                         rf"arrays \(16,\).*got {name}"):
        _step_shapes(small_env, realm[1], actions)


def test_step_rejects_a_missing_action_field(small_env, realm):
    with pytest.raises(ValueError, match=r"actions.style must be an integer array of shape "
                                         r"\(16,\), got NoneType"):
        _step_shapes(small_env, realm[1], _actions(small_env.n_agents, style=None))


def test_under_vmap_each_realm_needs_n_actions(small_env):
    keys = jax.random.split(jax.random.key(2), 3)
    _, states = jax.eval_shape(jax.vmap(small_env.reset), keys)
    n = small_env.n_agents
    good = jax.tree.map(lambda x: jnp.zeros((3, n), jnp.int32), _actions(n))
    out = jax.eval_shape(jax.vmap(small_env.step), keys, states, good)
    assert out[2].shape == (3, n)  # reward [R, N]
    bad = good.replace(target=jnp.zeros((3, n + 1), jnp.int32))
    with pytest.raises(ValueError, match=r"actions.target has shape \(17,\)"):
        jax.eval_shape(jax.vmap(small_env.step), keys, states, bad)


@pytest.mark.parametrize("change, field, shape", [
    (dict(map_size=40), "terrain", r"\(40, 40\) int8; this Env's config needs \(32, 32\)"),
    (dict(n_agents=32), "agents.pos", r"\(32, 2\) int32; this Env's config needs \(16, 2\)"),
    (dict(n_pops=8), "visits", r"\(8, 32, 32\) int32; this Env's config needs \(4, 32, 32\)"),
    (dict(n_entities=12), "entity_ids", r"\(16, 12\) int32; this Env's config needs \(16, 8\)"),
])
def test_step_rejects_a_state_built_for_another_config(small_env, small_cfg, change, field,
                                                       shape):
    other = nmmo_jax.Env(small_cfg.replace(**change))
    _, state = jax.eval_shape(other.reset, jax.random.key(0))
    with pytest.raises(ValueError, match=rf"state.{field} has shape {shape}"):
        _step_shapes(small_env, state, _actions(small_env.n_agents))


def test_step_rejects_a_state_of_the_wrong_dtype(small_env, realm):
    state = realm[1]
    state = state.replace(agents=state.agents.replace(health=state.agents.health.astype(float)))
    with pytest.raises(ValueError, match=r"state.agents.health has shape \(16,\) float32; "
                                         r"this Env's config needs \(16,\) int16"):
        _step_shapes(small_env, state, _actions(small_env.n_agents))


def test_check_actions_names_a_float_field_instead_of_crashing(small_env, realm):
    obs = realm[0]
    with pytest.raises(ValueError, match=r"actions.target has shape \(16,\) and dtype float"):
        small_env.check_actions(_actions(small_env.n_agents, target=jnp.zeros(16)), obs)


def _grass(rows=SIDE):
    return np.full((rows, SIDE), GRASS, np.int8)


@pytest.mark.parametrize("tiles, message", [
    (_grass(31), r"map must have shape \(32, 32\), got \(31, 32\)"),
    (_grass().astype(np.float32), "map must hold integer tile ids, got dtype float32"),
    (np.full((32, 32), 7), r"map tile ids must lie in \[0, 7\), got range \[7, 7\]"),
    (np.full((32, 32), -1), r"map tile ids must lie in \[0, 7\), got range \[-1, -1\]"),
])
def test_reset_checks_a_concrete_fixed_map_as_make_state_does(small_env, tiles, message):
    with pytest.raises(ValueError, match=message):
        small_env.reset(jax.random.key(0), None, tiles)
    with pytest.raises(ValueError, match=message):
        small_env.make_state(tiles, [])


@pytest.mark.parametrize("tiles, message", [
    (_grass(31), r"map must have shape \(32, 32\), got \(31, 32\)"),
    (_grass().astype(np.float32), "map must hold integer tile ids, got dtype float32"),
])
def test_reset_checks_a_traced_map_by_shape_and_dtype(small_env, tiles, message):
    with pytest.raises(ValueError, match=message):
        jax.eval_shape(lambda t: small_env.reset(jax.random.key(0), None, t), tiles)


def _scenario_map():
    tiles = _grass()
    tiles[5, 5], tiles[6, 6], tiles[7, 7] = WATER, STONE, ORE
    return tiles


@pytest.mark.parametrize("agent, message", [
    (dict(pos=(5, 5)), r"agent 0: pos \(5, 5\) is water, where no agent can stand"),
    (dict(pos=(6, 6)), r"agent 0: pos \(6, 6\) is stone"),
    (dict(pos=(7, 7)), r"agent 0: pos \(7, 7\) is ore"),
    (dict(pos=(9, 9), health=-5), r"agent 0: health must be in \[1, 10\], got -5"),
    (dict(pos=(9, 9), health=0), r"agent 0: health must be in \[1, 10\], got 0"),
    (dict(pos=(9, 9), health=11), r"agent 0: health must be in \[1, 10\], got 11"),
    (dict(pos=(9, 9), food=-1), r"agent 0: food must be in \[0, 32\], got -1"),
    (dict(pos=(9, 9), water=33), r"agent 0: water must be in \[0, 32\], got 33"),
    (dict(pos=(9, 9), freeze=-1), r"agent 0: freeze must be in \[0, 32767\], got -1"),
    (dict(pos=(9, 9), time_alive=-2), r"agent 0: time_alive must be in \[0, 2147483647\]"),
    (dict(pos=(9, 9), damage=-3), r"agent 0: damage must be in \[0, 32767\], got -3"),
    (dict(pos=(9, 9), health=2.5), "agent 0: health must be a whole number, got 2.5"),
    (dict(pos=(40, 9)), r"agent 0: pos \(40, 9\) is off the map"),
    (dict(pos=9), "agent 0: pos must be a \\(row, col\\) pair, got 9"),
    (dict(health=5), "agent 0: pos must be a \\(row, col\\) pair, got None"),
    (dict(pos=(9, 9), slot=16), r"agent 0: slot 16 not in \[0, 16\)"),
    (dict(pos=(9, 9), mana=3), r"agent 0: unknown fields \['mana'\]"),
])
def test_make_state_rejects_impossible_agents(small_env, agent, message):
    with pytest.raises(ValueError, match=message):
        small_env.make_state(_scenario_map(), [agent])


def test_make_state_rejects_a_slot_given_twice(small_env):
    # The second agent's default slot is its index, 1: the slot the first one took.
    with pytest.raises(ValueError, match="agent 1: slot 1 is already taken by agent 0"):
        small_env.make_state(_scenario_map(), [dict(pos=(9, 9), slot=1), dict(pos=(9, 10))])
    with pytest.raises(ValueError, match="agent 2: slot 0 is already taken by agent 0"):
        small_env.make_state(_scenario_map(), [dict(pos=(9, 9)), dict(pos=(9, 10)),
                                               dict(pos=(9, 11), slot=0)])


def test_make_state_accepts_the_extremes_of_every_range(small_env):
    p = small_env.default_params
    _, state = small_env.make_state(_scenario_map(), [
        dict(pos=(9, 9), health=1, food=0, water=int(p.max_water), freeze=0, time_alive=0,
             damage=0),
        dict(pos=(9, 10), health=int(p.max_health), food=int(p.max_food), water=0)])
    assert np.asarray(state.agents.health)[:2].tolist() == [1, int(p.max_health)]
    assert np.asarray(state.agents.alive).sum() == 2


@pytest.mark.parametrize("argv, message", [
    (["--realms", "0"], "argument --realms: must be >= 1, got 0"),
    (["--ticks", "-3"], "argument --ticks: must be >= 1, got -3"),
    (["--ticks", "0"], "argument --ticks: must be >= 1, got 0"),
    (["--gif-ticks", "0"], "argument --gif-ticks: must be >= 1, got 0"),
    (["--agents", "0"], "argument --agents: must be >= 1, got 0"),
    (["--seed", "-1"], r"argument --seed: must be in \[0, 2\*\*32\), got -1"),
])
def test_evaluate_command_line_rejects_empty_or_negative_runs(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["no/such/checkpoint.msgpack", *argv])
    assert exit_info.value.code == 2
    assert message.replace("\\", "") in capsys.readouterr().err.replace("\\", "")


def test_evaluate_command_line_names_an_unreadable_checkpoint(tmp_path, capsys):
    with pytest.raises(SystemExit):
        evaluate.main([str(tmp_path / "missing.msgpack")])
    assert "cannot read checkpoint" in capsys.readouterr().err


@pytest.mark.parametrize("realms, ticks, name", [(0, 10, "realms"), (2, -3, "ticks"),
                                                 (2, 0, "ticks"), (2.0, 10, "realms")])
def test_evaluate_rejects_empty_or_negative_runs(realms, ticks, name):
    with pytest.raises(ValueError, match=f"{name} must be an int >= 1"):
        evaluate.evaluate([], jax.random.key(0), realms=realms, ticks=ticks)


@pytest.mark.parametrize("argv, message", [
    (["--ticks", "-3"], "argument --ticks: must be >= 1, got -3"),
    (["--ticks", "0"], "argument --ticks: must be >= 1, got 0"),
    (["--fps", "0"], "argument --fps: must be > 0, got 0.0"),
    (["--agents", "16", "--pops", "4", "--map-size", "32", "--lava-border", "3",
      "--zoom", "16"], r"argument --zoom: must be a slot in [0, 16), got 16"),
    (["--agents", "10", "--pops", "4"], "n_agents (10) must be divisible by n_pops (4)"),
    (["--agents", "4000"], "must be <= 8 with n_agents=4000"),  # Chaos's melee damage 10
    (["--map", "original:200"], "argument --map: "),
    (["--map", "nowhere.npy"], "argument --map: "),
    (["--map-size", "32", "--lava-border", "3", "--map", "original:3"], "argument --map: "),
])
def test_render_command_line_rejects_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        render.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
