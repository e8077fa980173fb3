"""API-level behaviour: invariants over random rollouts, jit/vmap equivalence,
determinism, no retrace, sharding, the realm horizon."""

import functools
import operator
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax.config import GRASS, LAVA, N_FEATURES, PASSABLE, STONE, WATER, Feature
from nmmo_jax.policies import random_policy
from nmmo_jax.rollout import Tick
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
    policy = functools.partial(wild_actions, k=env.n_entities)

    def transition(tick: Tick) -> tuple:
        return (tick.obs, tick.state, tick.next_obs, tick.next_state, tick.reward, tick.done,
                tick.info)

    @jax.jit
    def run(key):
        start = env.reset(key, params)
        return nmmo_jax.rollout(env, policy, key, TICKS, params, start, observe=transition)[1]

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
        a = jax.tree.map(operator.itemgetter(t), state.agents)
        grid = np.zeros((size + 2 * r, size + 2 * r), np.int32)
        np.add.at(grid, (a.pos[a.alive, 0] + r, a.pos[a.alive, 1] + r), 1)
        for i in np.flatnonzero(a.alive):
            row, col = a.pos[i]
            window = grid[row:row + 2 * r + 1, col:col + 2 * r + 1]
            np.testing.assert_array_equal(obs.counts[t, i], window)


def nearest_by_rule(pos: np.ndarray, alive: np.ndarray, r: int, k: int) -> np.ndarray:
    """Host reference of the entity lists, [N, K] int64, -1 where empty: each live
    observer, then the K - 1 nearest other live agents within Chebyshev distance r,
    sorted by the documented tie rule (Chebyshev distance, squared Euclidean distance,
    row offset, column offset, then slot). Brute force over all pairs."""
    n = len(alive)
    ids = np.full((n, k), -1)
    for i in np.flatnonzero(alive):
        seen = []
        for j in np.flatnonzero(alive):
            dr, dc = (int(x) for x in pos[j] - pos[i])
            if j != i and max(abs(dr), abs(dc)) <= r:
                seen.append((max(abs(dr), abs(dc)), dr * dr + dc * dc, dr, dc, j))
        row = [i] + [key[-1] for key in sorted(seen)[:k - 1]]
        ids[i, :len(row)] = row
    return ids


def assert_exact_entity_lists(obs, state, cfg, every: int = 1) -> int:
    """Checks every `every`-th tick's entity lists against `nearest_by_rule`; returns
    the deepest stack seen (live agents on one tile)."""
    deepest = 0
    for t in range(0, state.tick.shape[0], every):
        a = jax.tree.map(operator.itemgetter(t), state.agents)
        expected = nearest_by_rule(a.pos, a.alive, cfg.view_radius, cfg.n_entities)
        np.testing.assert_array_equal(state.entity_ids[t], expected, err_msg=f"tick {t}")
        np.testing.assert_array_equal(obs.entity_mask[t], expected >= 0)
        np.testing.assert_array_equal(obs.entities[t][:, 0], obs.own[t])
        if a.alive.any():
            deepest = max(deepest, np.unique(a.pos[a.alive], axis=0, return_counts=True)[1].max())
    return deepest


@pytest.fixture(scope="module")
def crowded_rollout():
    """A random rollout on an 8 x 8 grass map with 64 slots refilled every tick, so
    agents pile up on the 20 tiles of the spawn ring: (config, new obs, new state)
    stacked over ticks."""
    cfg = nmmo_jax.config("chaos", map_size=8, lava_border=1, n_agents=64, n_pops=4,
                          view_radius=2, n_entities=6)
    env = nmmo_jax.Env(cfg)
    params = env.default_params.replace(spawn_per_tick=jnp.int32(cfg.n_agents))
    tiles = np.full((8, 8), LAVA, np.int8)
    tiles[1:-1, 1:-1] = GRASS

    def after(tick: Tick) -> tuple:
        return tick.next_obs, tick.next_state

    @jax.jit
    def run(key):
        start = env.reset(key, params, tiles)
        return nmmo_jax.rollout(env, random_policy, key, 40, params, start, observe=after)[1]

    return cfg, *jax.tree.map(np.asarray, run(jax.random.key(4)))


def test_entity_lists_are_exact_nearest_first(rollout, small_cfg):
    assert_exact_entity_lists(rollout[2], rollout[3], small_cfg, every=5)


def test_entity_lists_stay_exact_in_heavy_stacks(crowded_rollout):
    cfg, obs, state = crowded_rollout
    deepest = assert_exact_entity_lists(obs, state, cfg)
    assert deepest > cfg.n_entities, f"the rollout never stacked deeper than K ({deepest})"


def test_entity_features_describe_the_listed_agents(rollout, small_env):
    obs, state = rollout[2], rollout[3]
    p, cfg = small_env.default_params, small_env.cfg
    half = cfg.map_size / 2
    for t in range(0, TICKS, 10):
        a = jax.tree.map(lambda x, t=t: np.asarray(x[t], np.float64), state.agents)
        ids = state.entity_ids[t]
        seen = np.maximum(ids, 0)
        expected = {
            Feature.TIME_ALIVE: (a.time_alive[seen] - 50) / 100,
            Feature.HEALTH: (a.health[seen] - int(p.max_health) / 2) / int(p.max_health),
            Feature.FOOD: (a.food[seen] - int(p.max_food) / 2) / int(p.max_food),
            Feature.WATER: (a.water[seen] - int(p.max_water) / 2) / int(p.max_water),
            Feature.ROW: (a.pos[seen, 0] - half) / cfg.map_size,
            Feature.COL: (a.pos[seen, 1] - half) / cfg.map_size,
            Feature.ROW_OFFSET: (a.pos[seen, 0] - a.pos[:, None, 0]) / cfg.view_radius,
            Feature.COL_OFFSET: (a.pos[seen, 1] - a.pos[:, None, 1]) / cfg.view_radius,
            Feature.DAMAGE: a.damage[seen] / int(p.max_health),
            Feature.SAME_POP: np.where(a.population[seen] == a.population[:, None], 0.5, -0.5),
            Feature.FREEZE: a.freeze[seen] / int(p.mage_freeze),
        }
        assert set(expected) == set(Feature) and obs.entities.shape[-1] == N_FEATURES
        for feature, value in expected.items():
            np.testing.assert_allclose(obs.entities[t][..., feature],
                                       np.where(ids >= 0, value, 0.0), atol=1e-6,
                                       err_msg=f"tick {t}, {feature.name}")


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


def test_a_realm_that_does_not_count_visits_plays_the_same_game(rollout, small_cfg):
    """Counting visits is bookkeeping: with it off, every other field of every state and
    observation is the same, the counter stays an empty [P, 0, 0] array, and the
    exploration helpers refuse it by name."""
    env = nmmo_jax.Env(small_cfg.replace(count_visits=False))
    policy = functools.partial(wild_actions, k=env.n_entities)
    key = jax.random.key(3)  # the `rollout` fixture's
    (obs, state), _ = jax.jit(lambda k: nmmo_jax.rollout(env, policy, k, TICKS, None,
                                                         env.reset(k)))(key)
    counted = jax.tree.map(lambda x: x[-1], (rollout[2], rollout[3]))
    assert state.visits.shape == (small_cfg.n_pops, 0, 0)
    for got, want in zip(jax.tree.leaves((obs, state.replace(visits=counted[1].visits))),
                         jax.tree.leaves(counted), strict=True):
        np.testing.assert_array_equal(got, want)
    for helper in (visits_by_tile_type, distinct_tiles):
        with pytest.raises(ValueError, match="count_visits=True"):
            helper(state)


def test_lifetimes_accumulate_info(rollout):
    info = rollout[6]
    totals = Lifetimes.zeros(info.pop_deaths.shape[1])
    for t in range(TICKS):
        totals = totals.add(jax.tree.map(operator.itemgetter(t), info))
    assert int(totals.deaths.sum()) == rollout[5].sum()
    mean = np.asarray(totals.mean())
    both = np.asarray(totals.deaths) > 0
    expected = info.pop_lifetime.sum(0) / np.maximum(info.pop_deaths.sum(0), 1)
    np.testing.assert_allclose(mean[both], expected[both])


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
        _assert_trees_equal(jax.tree.map(operator.itemgetter(i), batched), realm(keys[i]))


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
