"""Baseline policies: every action is legal, scripted agents go where the rules reward
them, and they outlive random agents in the same realm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nmmo_jax.config import FOREST, GRASS, LAVA, MAGE, MELEE, RANGE, STONE, WATER, Feature
from nmmo_jax.policies import POLICIES, WALKABLE, evader, fighter, forager, observed_age
from nmmo_jax.render import record

TICKS = 150
FORAGER, FIGHTER, EVADER = jax.jit(forager), jax.jit(fighter), jax.jit(evader)
EAST, SOUTH, WEST, NORTH = 1, 2, 3, 4


def grass_map(cfg, border: int = 3) -> np.ndarray:
    """Lava ring of `border` tiles around grass."""
    tiles = np.full((cfg.map_size, cfg.map_size), LAVA, np.int8)
    tiles[border:-border, border:-border] = GRASS
    return tiles


@pytest.fixture(scope="module")
def rollouts(small_env, key):
    """The same realm (same key) played by each policy for TICKS ticks."""
    return {name: jax.block_until_ready(record(small_env, POLICIES[name], key, None, TICKS))
            for name in ("random", "forager")}


@pytest.fixture(scope="module")
def replayed(small_env, rollouts):
    """Every recorded state's observation and each policy's actions on it."""
    params = small_env.default_params

    @jax.jit
    def act(states, key):
        obs = jax.vmap(small_env.observe, (0, None))(states, params)  # [S, N, ...]
        keys = jax.random.split(key, obs.alive.shape[0])
        return obs, {name: jax.vmap(policy)(keys, obs) for name, policy in POLICIES.items()}

    states = jax.tree.map(lambda a, b: jnp.concatenate([a, b]),
                          rollouts["random"].states, rollouts["forager"].states)
    return jax.device_get(act(states, jax.random.key(1)))


def mean_lifetime(trajectory) -> float:
    """Ticks lived per agent: the dead's lifetimes plus the survivors' ages."""
    info, last = trajectory.info, trajectory.states.agents
    deaths = int(np.sum(info.cause > 0))
    alive = np.asarray(last.alive[-1])
    lived = int(np.sum(info.lifetime)) + int(np.sum(np.asarray(last.time_alive[-1])[alive]))
    return lived / (deaths + int(alive.sum()))


def test_scripted_agents_outlive_random_agents(rollouts):
    random_life = mean_lifetime(rollouts["random"])
    forager_life = mean_lifetime(rollouts["forager"])
    assert forager_life > 3 * random_life, (forager_life, random_life)
    assert int(np.sum(rollouts["forager"].info.cause == 1)) == 0  # nobody walks into lava


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_attacks_are_legal(replayed, name):
    obs, actions = replayed
    act = actions[name]
    alive = obs.alive
    assert np.all((act.style[alive] >= 0) & (act.style[alive] < 3))
    k = obs.target_mask.shape[-1]
    assert np.all((act.target[alive] >= 0) & (act.target[alive] < k))
    legal = np.take_along_axis(
        np.take_along_axis(obs.target_mask, act.style[..., None, None], axis=2)[..., 0, :],
        act.target[..., None], axis=2)[..., 0]
    assert np.all(legal[alive])
    if name == "random":
        assert set(act.move[alive].tolist()) == set(range(5))
        assert set(act.style[alive].tolist()) == set(range(3))


@pytest.mark.parametrize("name", ["forager", "fighter", "evader"])
def test_scripted_moves_never_enter_lava_or_impassable_tiles(replayed, name):
    obs, actions = replayed
    move = actions[name].move
    r = obs.tiles.shape[-1] // 2
    deltas = np.array([(0, 0), (0, 1), (1, 0), (0, -1), (-1, 0)])
    flat = obs.tiles.reshape(*obs.tiles.shape[:2], -1)  # [S, N, V*V]
    index = (r + deltas[move, 0]) * obs.tiles.shape[-1] + r + deltas[move, 1]
    dest = np.take_along_axis(flat, index[..., None], axis=2)[..., 0]
    moving = obs.alive & (move != 0)
    assert moving.any()
    assert np.all(WALKABLE[dest[moving]])


def test_forager_never_attacks_and_fighter_attacks_only_enemies(replayed):
    obs, actions = replayed
    assert np.all(actions["forager"].target == 0)
    hit = obs.alive & (actions["fighter"].target > 0)
    assert hit.any()
    seen = np.take_along_axis(obs.entities[..., Feature.SAME_POP],
                              actions["fighter"].target[..., None], axis=2)[..., 0]
    assert np.all(seen[hit] == -0.5)


def test_observed_age_decodes_time_alive(small_env, small_cfg):
    ages = [0, 1, 49, 50, 51, 99, 150, 12345]
    agents = [{"pos": (5 + i, 10), "time_alive": age} for i, age in enumerate(ages)]
    obs, _ = small_env.make_state(grass_map(small_cfg), agents)
    assert np.asarray(observed_age(obs))[:len(ages)].tolist() == ages


def first_move(env, policy, tiles, agents, seed=0) -> int:
    """The move `policy` picks for slot 0 in the scenario `tiles`, `agents`."""
    obs, _ = env.make_state(tiles, agents)
    return int(policy(jax.random.key(seed), obs).move[0])


@pytest.mark.parametrize("distance,style", [(1, MELEE), (2, RANGE), (3, MAGE)])
def test_fighter_hits_weakest_enemy_with_the_strongest_style_in_range(
        small_env, small_cfg, distance, style):
    # Slot 0 (population 0) at (15, 15); a healthy enemy adjacent, a weak enemy
    # `distance` south, and a weaker teammate (slot 4, population 0) that must be spared.
    agents = [{"pos": (15, 15)}, {"pos": (15, 16), "health": 10},
              {"pos": (15 + distance, 15), "health": 3},
              {"pos": (15, 14), "slot": 4, "health": 1}]
    obs, state = small_env.make_state(grass_map(small_cfg), agents)
    act = FIGHTER(jax.random.key(0), obs)
    assert int(state.entity_ids[0, act.target[0]]) == 2
    assert int(act.style[0]) == style


def test_hungry_forager_walks_to_forest_and_eats_there(small_env, small_cfg):
    tiles = grass_map(small_cfg)
    tiles[15, 18] = FOREST
    hungry = {"pos": (15, 15), "food": 5}
    assert first_move(small_env, FORAGER, tiles, [hungry]) == EAST
    assert first_move(small_env, FORAGER, tiles, [{**hungry, "pos": (15, 18)}]) == 0


def test_hungry_forager_walks_around_a_wall(small_env, small_cfg):
    tiles = grass_map(small_cfg)
    tiles[15, 18] = FOREST
    tiles[12:19, 16] = STONE  # wall between the agent and the forest
    for seed in range(4):
        move = first_move(small_env, FORAGER, tiles, [{"pos": (15, 15), "food": 5}], seed)
        assert move in (SOUTH, NORTH)


def test_thirsty_forager_walks_to_water_and_drinks_beside_it(small_env, small_cfg):
    tiles = grass_map(small_cfg)
    tiles[11, 15] = WATER
    thirsty = {"pos": (15, 15), "water": 5}
    assert first_move(small_env, FORAGER, tiles, [thirsty]) == NORTH
    assert first_move(small_env, FORAGER, tiles, [{**thirsty, "pos": (12, 15)}]) == 0


def test_exploring_forager_on_the_spawn_ring_never_steps_into_lava(small_env, small_cfg):
    tiles = grass_map(small_cfg)
    obs, _ = small_env.make_state(tiles, [{"pos": (3, 3)}, {"pos": (3, 10)}])
    for seed in range(16):
        move = np.asarray(FORAGER(jax.random.key(seed), obs).move)
        assert move[0] not in (WEST, NORTH) and move[1] != NORTH


def test_evader_steps_away_from_an_enemy_in_mage_reach(small_env, small_cfg):
    # An enemy 2 tiles east: west puts it 3 away, every other move leaves it nearer.
    agents = [{"pos": (15, 15)}, {"pos": (15, 17)}]
    for seed in range(4):
        assert first_move(small_env, EVADER, grass_map(small_cfg), agents, seed) == WEST
    # Stone to the west: north and south keep it 2 away, staying too; east brings it to 1.
    tiles = grass_map(small_cfg)
    tiles[15, 14] = STONE
    moves = {first_move(small_env, EVADER, tiles, agents, seed) for seed in range(8)}
    assert moves <= {0, SOUTH, NORTH}


def test_evader_forages_when_no_enemy_is_in_reach_and_attacks_like_the_fighter(
        small_env, small_cfg):
    tiles = grass_map(small_cfg)
    tiles[15, 18] = FOREST
    # A teammate beside it and an enemy 4 tiles away (beyond the flee radius of 3).
    agents = [{"pos": (15, 15), "food": 5}, {"pos": (19, 15)}, {"pos": (15, 14), "slot": 4}]
    obs, _ = small_env.make_state(tiles, agents)
    key = jax.random.key(0)
    assert int(EVADER(key, obs).move[0]) == int(FORAGER(key, obs).move[0]) == EAST
    agents = [{"pos": (15, 15)}, {"pos": (17, 15), "health": 3}, {"pos": (15, 16)}]
    obs, _ = small_env.make_state(tiles, agents)
    fled, fought = EVADER(key, obs), FIGHTER(key, obs)
    assert (int(fled.style[0]), int(fled.target[0])) == (int(fought.style[0]),
                                                         int(fought.target[0]))
    assert int(fled.target[0]) > 0
