"""API-level behaviour: invariants over random rollouts, jit/vmap equivalence,
determinism, no retrace, sharding, the realm horizon."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax.config import LAVA, PASSABLE, STONE, WATER
from nmmo_jax.policies import random_policy
from nmmo_jax.wrappers import Lifetimes, RealmHorizon, distinct_tiles, visits_by_tile_type

TICKS = 120
policy = jax.jit(random_policy)


def wild_actions(key, obs, k):
    """Random legal actions, with one agent in four given out-of-range values."""
    legal = random_policy(key, obs)
    n = obs.alive.shape[0]
    wild = jax.random.bernoulli(jax.random.fold_in(key, 1), 0.25, (n,))
    junk = jax.random.randint(jax.random.fold_in(key, 2), (3, n), -3, k + 4)
    return nmmo_jax.Actions(move=jnp.where(wild, junk[0], legal.move),
                            style=jnp.where(wild, junk[1], legal.style),
                            target=jnp.where(wild, junk[2], legal.target))


@pytest.fixture(scope="module")
def rollout(small_env):
    """A jitted random rollout of TICKS ticks: stacked (obs, state, reward, done, info)
    before and after each tick."""
    env = small_env
    params = env.default_params

    def tick(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        actions = wild_actions(act_key, obs, env.n_entities)
        new_obs, new_state, reward, done, info = env.step(step_key, state, actions, params)
        return (new_obs, new_state), (obs, state, new_obs, new_state, reward, done, info)

    @jax.jit
    def run(key):
        obs, state = env.reset(key, params)
        return jax.lax.scan(tick, (obs, state), jax.random.split(key, TICKS))[1]

    return jax.tree.map(np.asarray, run(jax.random.key(3)))


def test_stats_stay_within_bounds(rollout, small_env):
    p = small_env.default_params
    state = rollout[3]
    for name, top in (("health", p.max_health), ("food", p.max_food), ("water", p.max_water)):
        value = getattr(state.agents, name)
        assert value.min() >= 0 and value.max() <= int(top), name
    assert state.agents.freeze.min() >= 0


def test_no_live_agent_on_lava_water_or_stone(rollout):
    state = rollout[3]
    a = state.agents
    t = np.arange(TICKS)[:, None]
    under = state.tiles[t, a.pos[..., 0], a.pos[..., 1]]
    assert not np.any(a.alive & np.isin(under, [LAVA, WATER, STONE]))
    assert np.all(np.asarray(PASSABLE)[under[a.alive]])


def test_population_grows_and_agents_die(rollout):
    state, done, info = rollout[3], rollout[5], rollout[6]
    assert state.agents.alive.sum(1).max() > 3
    assert done.sum() > 0
    assert np.all(info.lifetime[done] > 0) and np.all(info.lifetime[~done] == 0)
    assert np.all((info.cause > 0) == done)
    np.testing.assert_array_equal(info.pop_deaths.sum(1), done.sum(1))


def test_dead_slots_are_inert_and_masked(rollout):
    obs_before, new_obs, reward, done = rollout[0], rollout[2], rollout[4], rollout[5]
    dead = ~new_obs.alive
    assert not np.any(new_obs.entity_mask[dead])
    assert not np.any(new_obs.own[dead]) and not np.any(new_obs.tiles[dead])
    assert not np.any(new_obs.counts[dead])
    assert np.all(new_obs.target_mask[dead][:, :, 1:] == 0)
    assert np.all(new_obs.target_mask[..., 0])
    empty_before = ~obs_before.alive
    assert not np.any(reward[empty_before]) and not np.any(done[empty_before])


def test_death_reward_is_minus_one_on_the_death_tick(rollout):
    reward, done = rollout[4], rollout[5]
    np.testing.assert_array_equal(reward, -done.astype(np.float32))


def test_counts_equal_live_agents_per_tile(rollout, small_cfg):
    obs, state = rollout[2], rollout[3]
    r, size = small_cfg.view_radius, small_cfg.map_size
    for t in range(0, TICKS, 7):
        a = jax.tree.map(lambda x: x[t], state.agents)
        grid = np.zeros((size + 2 * r, size + 2 * r), np.int32)
        np.add.at(grid, (a.pos[a.alive, 0] + r, a.pos[a.alive, 1] + r), 1)
        for i in np.flatnonzero(a.alive):
            row, col = a.pos[i]
            np.testing.assert_array_equal(obs.counts[t, i], grid[row:row + 2 * r + 1, col:col + 2 * r + 1])


def test_entity_slots_are_self_then_nearest_in_view(rollout, small_cfg):
    obs, state = rollout[2], rollout[3]
    r, k = small_cfg.view_radius, small_cfg.n_entities
    for t in range(0, TICKS, 5):
        a = jax.tree.map(lambda x: x[t], state.agents)
        ids = state.entity_ids[t]
        for i in np.flatnonzero(a.alive):
            assert ids[i, 0] == i
            np.testing.assert_array_equal(obs.entities[t, i, 0], obs.own[t, i])
            seen = ids[i][ids[i] >= 0]
            assert len(set(seen)) == len(seen) and np.all(a.alive[seen])
            gap = np.max(np.abs(a.pos[seen] - a.pos[i]), axis=1)
            assert np.all(gap <= r) and np.all(np.diff(gap[1:]) >= 0)
            in_view = np.flatnonzero(a.alive & (np.max(np.abs(a.pos - a.pos[i]), axis=1) <= r))
            _, per_tile = np.unique(a.pos[in_view], axis=0, return_counts=True)
            indexable = np.minimum(per_tile, small_cfg.max_stack).sum()
            lower = np.sum(a.alive[:i] & np.all(a.pos[:i] == a.pos[i], axis=1))
            self_indexed = lower < small_cfg.max_stack
            assert len(seen) == min(k, indexable + (not self_indexed))
            if len(in_view) > k:  # nobody left out is nearer than the farthest shown
                left_out = np.setdiff1d(in_view, seen)
                assert np.max(np.abs(a.pos[left_out] - a.pos[i]), axis=1).min() >= gap.max()
            np.testing.assert_array_equal(obs.entity_mask[t, i], ids[i] >= 0)


def test_target_masks_agree_with_ranges(rollout, small_env):
    obs, state = rollout[2], rollout[3]
    ranges = np.asarray(small_env.default_params.ranges)
    pos, ids = state.agents.pos, state.entity_ids
    t = np.arange(TICKS)[:, None, None]
    gap = np.max(np.abs(pos[t, np.maximum(ids, 0)] - pos[:, :, None]), axis=-1)  # [T, N, K]
    expected = (ids >= 0)[:, :, None] & (gap[:, :, None] <= ranges[None, None, :, None])
    expected[..., 0] = True
    np.testing.assert_array_equal(obs.target_mask, expected)


def test_population_is_slot_mod_n_pops(rollout, small_cfg):
    np.testing.assert_array_equal(rollout[2].population,
                                  np.broadcast_to(np.arange(small_cfg.n_agents) % small_cfg.n_pops,
                                                  rollout[2].population.shape))


def test_visits_and_exploration_counters(rollout, small_cfg):
    state = rollout[3]
    final = jax.tree.map(lambda x: x[-1], state)
    # One visit per live agent per observation, the reset observation included.
    assert final.visits.sum() == rollout[0].alive.sum() + rollout[2].alive[-1].sum()
    by_type = np.asarray(visits_by_tile_type(final))
    assert by_type.sum() == final.visits.sum() and by_type[:, WATER].sum() == 0
    assert np.all(np.asarray(distinct_tiles(final)) == (final.visits > 0).sum((1, 2)))


def test_lifetimes_accumulate_info(rollout):
    info = rollout[6]
    totals = Lifetimes.zeros(info.pop_deaths.shape[1])
    for t in range(TICKS):
        totals = totals.add(jax.tree.map(lambda x: x[t], info))
    assert int(totals.deaths.sum()) == rollout[5].sum()
    mean = np.asarray(totals.mean())
    both = np.asarray(totals.deaths) > 0
    np.testing.assert_allclose(mean[both], (info.pop_lifetime.sum(0) / info.pop_deaths.sum(0))[both])


def _short_rollout(env, key, ticks=3):
    obs, state = env.reset(key)
    out = []
    for t in range(ticks):
        actions = policy(jax.random.fold_in(key, t), obs)
        obs, state, reward, done, info = env.step(jax.random.fold_in(key, 100 + t), state, actions)
        out.append((obs, state, reward, done))
    return out


def _assert_trees_equal(a, b):
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)), a, b)


def test_jit_equals_no_jit(small_env):
    key = jax.random.key(11)
    obs, state = small_env.reset(key)
    actions = policy(key, obs)
    jitted = small_env.step(key, state, actions)
    with jax.disable_jit():
        eager = small_env.step(key, state, actions)
    _assert_trees_equal(jitted, eager)


def test_vmap_over_realms_equals_a_loop(small_env):
    keys = jax.random.split(jax.random.key(5), 3)
    params = small_env.default_params

    def realm(key):
        obs, state = small_env.reset(key, params)
        return small_env.step(key, state, policy(key, obs), params)

    batched = jax.jit(jax.vmap(realm))(keys)
    for i in range(3):
        _assert_trees_equal(jax.tree.map(lambda x: x[i], batched), realm(keys[i]))


def test_same_key_same_trajectory_other_key_other(small_env):
    a = _short_rollout(small_env, jax.random.key(7))
    b = _short_rollout(small_env, jax.random.key(7))
    c = _short_rollout(small_env, jax.random.key(8))
    _assert_trees_equal(a, b)
    assert not np.array_equal(np.asarray(a[-1][1].terrain), np.asarray(c[-1][1].terrain))


def test_step_compiles_once_for_new_keys_and_params(small_cfg):
    env = nmmo_jax.Env(small_cfg)
    obs, state = env.reset(jax.random.key(0))
    actions = policy(jax.random.key(1), obs)
    for i, damage in enumerate((10, 3, 0, 7)):
        params = env.default_params.replace(melee_damage=jnp.int32(damage),
                                            regrow_prob=jnp.float32(0.1 * i))
        obs, state, *_ = env.step(jax.random.key(i), state, actions, params)
        actions = policy(jax.random.key(i + 5), obs)
    assert env.step._cache_size() == 1


def test_fixed_map_is_used_as_given(small_env, small_cfg):
    tiles = np.full((small_cfg.map_size,) * 2, 2, np.int8)
    tiles[:3], tiles[-3:], tiles[:, :3], tiles[:, -3:] = 0, 0, 0, 0
    tiles[10:14, 10:14] = 4
    obs, state = small_env.reset(jax.random.key(0), small_env.default_params, tiles)
    np.testing.assert_array_equal(np.asarray(state.tiles), tiles)
    np.testing.assert_array_equal(np.asarray(state.capacity), (tiles == 4).astype(np.int8))


def test_realm_horizon_regenerates_the_map(small_env):
    horizon = RealmHorizon(small_env, horizon=4)
    key = jax.random.key(2)
    obs, state = horizon.reset(key)
    first_map = np.asarray(state.terrain)
    for t in range(4):
        obs, state, reward, done, info = horizon.step(
            jax.random.fold_in(key, t), state, policy(jax.random.fold_in(key, 9 + t), obs))
    assert int(state.tick) == 0
    assert not np.array_equal(np.asarray(state.terrain), first_map)
    assert np.all(np.asarray(info.lifetime)[np.asarray(done)] > 0)
    with pytest.raises(ValueError, match="horizon"):
        RealmHorizon(small_env, horizon=0)


SHARDED = textwrap.dedent("""
    import jax, numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec
    import nmmo_jax
    from nmmo_jax.policies import random_policy
    env = nmmo_jax.Env(nmmo_jax.config("chaos", map_size=32, lava_border=3, n_agents=16,
                                       n_pops=4, n_entities=8))
    params = env.default_params
    mesh = Mesh(np.array(jax.devices()), ("realm",))
    keys = jax.random.split(jax.random.key(0), 8)

    def run(keys):
        obs, state = jax.vmap(env.reset, (0, None))(keys, params)
        for t in range(3):
            actions = jax.vmap(random_policy)(keys, obs)
            obs, state, *_ = jax.vmap(env.step, (0, 0, 0, None))(keys, state, actions, params)
        return state

    plain = jax.jit(run)(keys)
    sharded_keys = jax.device_put(keys, NamedSharding(mesh, PartitionSpec("realm")))
    sharded = jax.jit(run)(sharded_keys)
    assert len(jax.devices()) == 4
    assert len(sharded.agents.health.sharding.device_set) == 4
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)),
                 plain, sharded)
    print("sharded ok")
""")


def test_realms_shard_across_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    result = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sharded ok" in result.stdout
