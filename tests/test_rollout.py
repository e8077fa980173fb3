"""The rollout helper and the one-line entry point: `nmmo_jax.rollout` plays a policy the
documented way (keys, batches, what it keeps), `nmmo_jax.make` builds a ready env."""

import jax
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax.policies import random_policy
from nmmo_jax.rollout import Tick

TICKS = 12
REALMS = 3


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def scanned(env, key, realms=None):
    """The rollout written out by hand, with the key order `nmmo_jax.rollout` documents:
    (reset key, run key); per tick (act key, step key), split once more per realm."""
    params = env.default_params
    reset_key, run_key = jax.random.split(key)
    if realms is None:
        start, step, policy = env.reset(reset_key, params), env.step, random_policy
    else:
        start = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, realms), params)
        step, policy = jax.vmap(env.step, (0, 0, 0, None)), jax.vmap(random_policy)

    def per_realm(key):
        return key if realms is None else jax.random.split(key, realms)

    def tick(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        obs, state, _, _, info = step(per_realm(step_key), state,
                                      policy(per_realm(act_key), obs), params)
        return (obs, state), info

    return jax.lax.scan(tick, start, jax.random.split(run_key, TICKS))


@pytest.mark.parametrize("realms", [None, REALMS])
def test_rollout_uses_keys_as_documented(small_env, realms):
    key = jax.random.key(11)
    played = nmmo_jax.rollout(small_env, random_policy, key, TICKS, realms=realms)
    assert_trees_equal(played, jax.jit(scanned, static_argnums=(0, 2))(small_env, key, realms))
    (_, state), info = played
    batch = () if realms is None else (REALMS,)
    assert info.cause.shape == (TICKS, *batch, small_env.n_agents)
    assert np.all(np.asarray(state.tick) == TICKS)


def test_observe_sees_the_tick_before_and_after(small_env):
    def both(tick: Tick):
        return tick.state.tick, tick.next_state.tick, tick.obs.alive, tick.next_obs.alive

    (obs, _), (before, after, seen, next_seen) = nmmo_jax.rollout(
        small_env, random_policy, jax.random.key(3), TICKS, observe=both)
    np.testing.assert_array_equal(before, np.arange(TICKS))
    np.testing.assert_array_equal(after, np.arange(1, TICKS + 1))
    np.testing.assert_array_equal(seen[1:], next_seen[:-1])
    np.testing.assert_array_equal(next_seen[-1], obs.alive)


def test_a_policy_hands_extra_outputs_to_observe(small_env):
    def policy(key, obs):
        actions = random_policy(key, obs)
        return actions, actions.move * 10  # [N], as a network's value would be

    def kept(tick: Tick):
        actions, extra = tick.act
        return actions.move, extra

    _, (move, extra) = nmmo_jax.rollout(small_env, policy, jax.random.key(4), TICKS,
                                        realms=REALMS, observe=kept)
    assert move.shape == (TICKS, REALMS, small_env.n_agents)
    np.testing.assert_array_equal(extra, move * 10)


def test_a_batch_policy_gets_every_realm_and_the_act_key(small_env):
    key = jax.random.key(5)

    def batch_policy(act_key, obs):  # leaves [R, N, ...]
        assert obs.alive.shape == (REALMS, small_env.n_agents)
        return jax.vmap(random_policy)(jax.random.split(act_key, REALMS), obs)

    apart = nmmo_jax.rollout(small_env, random_policy, key, TICKS, realms=REALMS)
    whole = nmmo_jax.rollout(small_env, batch_policy, key, TICKS, realms=REALMS,
                             vmap_policy=False)
    assert_trees_equal(apart, whole)


def test_realm_keys_choose_each_realms_key(small_env):
    def reversed_split(key, realms):
        return jax.random.split(key, realms)[::-1]

    key = jax.random.key(6)
    default = nmmo_jax.rollout(small_env, random_policy, key, TICKS, realms=REALMS)
    reversed_ = nmmo_jax.rollout(small_env, random_policy, key, TICKS, realms=REALMS,
                                 realm_keys=reversed_split)
    assert_trees_equal(jax.tree.map(lambda x: x[::-1], default[0]), reversed_[0])
    assert_trees_equal(jax.tree.map(lambda x: x[:, ::-1], default[1]), reversed_[1])


@pytest.mark.parametrize("realms, message", [
    (None, "the start state holds 3 realms but the rollout plays one realm"),
    (2, "the start state holds 3 realms but the rollout plays realms=2"),
])
def test_a_start_of_the_wrong_batch_is_rejected(small_env, realms, message):
    keys = jax.random.split(jax.random.key(7), 3)
    start = jax.vmap(small_env.reset)(keys)
    with pytest.raises(ValueError, match=message):
        nmmo_jax.rollout(small_env, random_policy, keys[0], 2, start=start, realms=realms)


def test_make_builds_the_preset_with_overrides():
    env, params = nmmo_jax.make("law", n_agents=32, n_pops=4, melee_damage=5)
    assert isinstance(env, nmmo_jax.Env)
    assert (env.cfg.preset, env.n_agents, env.n_pops) == ("law", 32, 4)
    assert_trees_equal(params, nmmo_jax.params("law", melee_damage=5))
    assert int(params.melee_damage) == 5 and int(params.mage_freeze) == 0


def test_make_defaults_to_chaos_and_names_bad_overrides():
    env, params = nmmo_jax.make()
    assert env.cfg.preset == "chaos"
    assert_trees_equal(params, nmmo_jax.params("chaos"))
    assert_trees_equal(params, env.default_params)
    listed = r"unknown fields \['speed'\]; static \(Config\): .*'n_agents'.*; rule numbers"
    with pytest.raises(ValueError, match=listed + r" \(Params\): .*'melee_damage'"):
        nmmo_jax.make("chaos", speed=2)
    with pytest.raises(ValueError, match="unknown preset 'peace'"):
        nmmo_jax.make("peace")
