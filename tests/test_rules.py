"""One scenario per rule of SPEC.md, on hand-made states.

Every test builds a small map (lava border, then grass) with `Env.make_state`, takes
one or a few ticks with explicit actions and checks what the rule says. All scenarios
share the session's small env, so the step compiles once; presets and rule changes go
through `Params`, which never recompiles.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax import terrain
from nmmo_jax.config import (
    DIED_COMBAT,
    DIED_LAVA,
    DIED_STARVATION,
    FOREST,
    GRASS,
    LAVA,
    MAGE,
    MELEE,
    PRESETS,
    RANGE,
    SCRUB,
    STONE,
    WATER,
)

STAY, EAST, SOUTH, WEST, NORTH = range(5)
CENTRE = (16, 16)
# Stats at which upkeep neither heals (not above half) nor starves (not at 0).
QUIET = dict(food=10, water=10)
VETERAN = 20  # time_alive past immunity


def rules(preset: str = "chaos", **changes) -> nmmo_jax.Params:
    """A preset's params without spawning (so scenarios stay as built), plus `changes`."""
    return nmmo_jax.params(**{**PRESETS[preset], "spawn_per_tick": 0, **changes})


@pytest.fixture(scope="module")
def env(small_env) -> nmmo_jax.Env:
    return small_env


@pytest.fixture(scope="module")
def chaos() -> nmmo_jax.Params:
    return rules("chaos", regrow_prob=0.0)


def arena(cfg: nmmo_jax.Config, **places) -> np.ndarray:
    """A map of the config's size: lava border, grass inside, and `places`
    (tile name -> list of (row, col)) set to their tile ids."""
    ids = dict(lava=LAVA, water=WATER, grass=GRASS, forest=FOREST, stone=STONE)
    border = cfg.lava_border
    tiles = np.full((cfg.map_size, cfg.map_size), LAVA, np.int8)
    tiles[border:cfg.map_size - border, border:cfg.map_size - border] = GRASS
    for name, positions in places.items():
        for row, col in positions:
            tiles[row, col] = ids[name]
    return tiles


def entity_slot(state: nmmo_jax.State, attacker: int, victim: int) -> int:
    """The entity slot of `victim` in `attacker`'s observation."""
    found = np.flatnonzero(np.asarray(state.entity_ids[attacker]) == victim)
    assert found.size, f"agent {victim} is not in agent {attacker}'s entity list"
    return int(found[0])


def act(state: nmmo_jax.State, moves=None, attacks=None) -> nmmo_jax.Actions:
    """Actions: `moves` {slot: move}, `attacks` {slot: (style, victim slot)}; everyone
    else stays and targets itself (no attack)."""
    n = state.agents.alive.shape[0]
    move, style, target = (np.zeros(n, np.int32) for _ in range(3))
    for slot, choice in (moves or {}).items():
        move[slot] = choice
    for slot, (kind, victim) in (attacks or {}).items():
        style[slot] = kind
        target[slot] = entity_slot(state, slot, victim)
    return nmmo_jax.Actions(move=jnp.asarray(move), style=jnp.asarray(style),
                            target=jnp.asarray(target))


def run(env, state, params, ticks=1, seed=0, **actions):
    """Steps `ticks` times with the same actions; returns the last step's outputs."""
    out = None
    for t in range(ticks):
        out = env.step(jax.random.key(seed * 1000 + t), state, act(state, **actions), params)
        state = out[1]
    return out


def stats(state: nmmo_jax.State, slot: int) -> dict:
    a = state.agents
    return {name: int(getattr(a, name)[slot])
            for name in ("health", "food", "water", "freeze", "time_alive")}


def pos(state: nmmo_jax.State, slot: int) -> tuple:
    return tuple(int(x) for x in state.agents.pos[slot])


# --- Resources (SPEC §2) -----------------------------------------------------------


def test_forage_gives_five_food_and_leaves_scrub(env, chaos):
    tiles = arena(env.cfg, forest=[CENTRE])
    _, state = env.make_state(tiles, [dict(pos=CENTRE, **QUIET)], chaos)
    _, state, *_ = run(env, state, chaos)
    assert stats(state, 0)["food"] == 10 + 5 - 1
    assert int(state.tiles[CENTRE]) == SCRUB
    assert int(state.capacity[CENTRE]) == 0
    assert int(state.terrain[CENTRE]) == FOREST


def test_depleted_forest_gives_no_food(env, chaos):
    tiles = arena(env.cfg, forest=[CENTRE])
    _, state = env.make_state(tiles, [dict(pos=CENTRE, **QUIET)], chaos)
    _, state, *_ = run(env, state, chaos, ticks=2)
    assert stats(state, 0)["food"] == 10 + 5 - 2


def test_regrowth_returns_the_forest(env):
    certain = rules(regrow_prob=1.0)
    tiles = arena(env.cfg, forest=[CENTRE])
    _, state = env.make_state(tiles, [dict(pos=CENTRE, **QUIET)], certain)
    _, state, *_ = run(env, state, certain, moves={0: STAY})
    assert int(state.tiles[CENTRE]) == SCRUB
    _, state, *_ = run(env, state, certain, moves={0: EAST})
    assert int(state.tiles[CENTRE]) == FOREST
    assert int(state.capacity[CENTRE]) == 1


def test_without_regrowth_scrub_stays(env, chaos):
    tiles = arena(env.cfg, forest=[CENTRE])
    _, state = env.make_state(tiles, [dict(pos=CENTRE, **QUIET)], chaos)
    _, state, *_ = run(env, state, chaos, ticks=6, moves={0: STAY})
    assert int(state.tiles[CENTRE]) == SCRUB
    assert int(state.capacity[CENTRE]) == 0


def test_drink_from_four_adjacent_water_only(env, chaos):
    # One agent per direction of a 4-neighbour, one with water only on a diagonal.
    agents = [(8, 8), (8, 20), (20, 8), (20, 20), (14, 14)]
    water = [(8, 9), (9, 20), (20, 7), (19, 20), (15, 15)]
    tiles = arena(env.cfg, water=water)
    _, state = env.make_state(tiles, [dict(pos=p, **QUIET) for p in agents], chaos)
    _, state, *_ = run(env, state, chaos)
    assert [stats(state, i)["water"] for i in range(5)] == [14, 14, 14, 14, 9]


# --- Upkeep (SPEC §3) ---------------------------------------------------------------


def test_health_regenerates_only_when_food_and_water_exceed_half(env, chaos):
    cases = [dict(food=32, water=32), dict(food=17, water=17), dict(food=16, water=32),
             dict(food=32, water=16), dict(food=10, water=10)]
    agents = [dict(pos=(6 + 4 * i, 10), health=5, **c) for i, c in enumerate(cases)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos)
    assert [stats(state, i)["health"] for i in range(5)] == [6, 6, 5, 5, 5]


def test_health_never_exceeds_its_maximum(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=CENTRE)], chaos)
    _, state, *_ = run(env, state, chaos)
    assert stats(state, 0)["health"] == 10


def test_food_and_water_fall_by_one_each_tick(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=CENTRE, food=20, water=25)], chaos)
    _, state, *_ = run(env, state, chaos, ticks=3)
    assert (stats(state, 0)["food"], stats(state, 0)["water"]) == (17, 22)


def test_starvation_and_thirst_each_cost_one_health(env, chaos):
    cases = [dict(food=1, water=10), dict(food=10, water=1), dict(food=1, water=1),
             dict(food=0, water=0), dict(food=10, water=10)]
    agents = [dict(pos=(6 + 4 * i, 10), health=5, **c) for i, c in enumerate(cases)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos)
    assert [stats(state, i)["health"] for i in range(5)] == [4, 4, 3, 3, 5]
    assert [stats(state, i)["food"] for i in range(5)] == [0, 9, 0, 0, 9]


def test_time_alive_grows_by_one_each_tick(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=CENTRE, time_alive=7)], chaos)
    _, state, *_ = run(env, state, chaos, ticks=4)
    assert stats(state, 0)["time_alive"] == 11


def test_death_at_zero_health_ends_the_slot(env, chaos):
    dying = dict(pos=CENTRE, health=1, food=1, water=10, time_alive=VETERAN)
    _, state = env.make_state(arena(env.cfg), [dying, dict(pos=(8, 8))], chaos)
    _, state, _, done, info = run(env, state, chaos)
    assert not bool(state.agents.alive[0]) and bool(state.agents.alive[1])
    assert np.asarray(done).tolist()[:2] == [True, False]
    assert int(info.cause[0]) == DIED_STARVATION and int(info.cause[1]) == 0
    assert int(info.lifetime[0]) == VETERAN + 1 and int(info.lifetime[1]) == 0
    assert int(info.pop_deaths[0]) == 1 and int(info.pop_lifetime[0]) == VETERAN + 1


def test_lava_kills_at_upkeep_the_tick_an_agent_steps_on_it(env, chaos):
    lava = (16, 17)
    tiles = arena(env.cfg, lava=[lava])
    walker = dict(pos=CENTRE, time_alive=5)
    _, state = env.make_state(tiles, [walker, dict(pos=(8, 8))], chaos)
    _, state, _, done, info = run(env, state, chaos, moves={0: EAST})
    assert pos(state, 0) == lava
    assert bool(done[0]) and not bool(state.agents.alive[0])
    assert int(info.cause[0]) == DIED_LAVA
    assert int(info.lifetime[0]) == 6
    assert not bool(done[1])


def test_agent_standing_on_lava_dies(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=(1, 1))], chaos)
    _, state, _, done, info = run(env, state, chaos)
    assert bool(done[0]) and int(info.cause[0]) == DIED_LAVA


# --- Moves (SPEC §5) -----------------------------------------------------------------


def test_moves_go_one_tile_in_each_direction(env, chaos):
    starts = [(8, 8), (8, 20), (20, 8), (20, 20), (14, 14)]
    _, state = env.make_state(arena(env.cfg), [dict(pos=p) for p in starts], chaos)
    moves = {0: EAST, 1: SOUTH, 2: WEST, 3: NORTH, 4: STAY}
    _, state, *_ = run(env, state, chaos, moves=moves)
    assert [pos(state, i) for i in range(5)] == [(8, 9), (9, 20), (20, 7), (19, 20), (14, 14)]


def test_impassable_tiles_block_moves(env, chaos):
    tiles = arena(env.cfg, water=[(8, 9)], stone=[(9, 20)])
    _, state = env.make_state(tiles, [dict(pos=(8, 8)), dict(pos=(8, 20))], chaos)
    _, state, *_ = run(env, state, chaos, moves={0: EAST, 1: SOUTH})
    assert [pos(state, 0), pos(state, 1)] == [(8, 8), (8, 20)]


def test_moves_off_the_map_are_noops(env, chaos):
    side = env.cfg.map_size
    tiles = np.full((side, side), GRASS, np.int8)
    corners = [(0, 5), (5, side - 1), (side - 1, 5), (5, 0)]
    _, state = env.make_state(tiles, [dict(pos=p) for p in corners], chaos)
    _, state, *_ = run(env, state, chaos, moves={0: NORTH, 1: EAST, 2: SOUTH, 3: WEST})
    assert [pos(state, i) for i in range(4)] == corners


def test_the_move_mask_marks_exactly_the_moves_that_change_the_tile(env, chaos):
    # Slot 0 between water (east) and stone (south), grass west, lava north; slot 1 on the
    # map's west edge; slot 2 frozen; slot 3 empty. Then every move of every slot is tried.
    tiles = arena(env.cfg, water=[(16, 17)], stone=[(17, 16)], lava=[(15, 16)])
    tiles[5, 0] = GRASS
    agents = [dict(pos=CENTRE), dict(pos=(5, 0)), dict(pos=(20, 20), freeze=2)]
    obs, state = env.make_state(tiles, agents, chaos)
    mask = np.asarray(obs.move_mask)
    assert mask[0].tolist() == [True, False, False, True, True]
    assert mask[1].tolist() == [True, True, True, False, True]
    assert mask[2].tolist() == mask[3].tolist() == [True, False, False, False, False]
    for choice in range(5):
        _, moved, *_ = run(env, state, chaos, moves={i: choice for i in range(3)})
        for slot in range(3):
            changed = pos(moved, slot) != pos(state, slot)
            assert changed == (bool(mask[slot, choice]) and choice != STAY)


def test_agents_may_share_a_tile(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=(16, 15)), dict(pos=(16, 17))], chaos)
    _, state, *_ = run(env, state, chaos, moves={0: EAST, 1: WEST})
    assert pos(state, 0) == pos(state, 1) == CENTRE


def test_eight_agents_on_one_tile_are_all_seen_and_attackable(env, chaos):
    # Slots 0-7 share the centre (K - 1 = 7 others each); slot 8 stands next to them.
    k = env.cfg.n_entities
    stack = [dict(pos=CENTRE, time_alive=VETERAN, **QUIET) for _ in range(8)]
    obs, state = env.make_state(arena(env.cfg), [*stack, dict(pos=(16, 17))], chaos)
    assert int(obs.counts[8][env.cfg.view_radius, env.cfg.view_radius - 1]) == 8
    for observer in range(8):
        others = sorted(set(range(8)) - {observer})
        assert np.asarray(state.entity_ids[observer]).tolist() == [observer, *others]
        assert np.all(np.asarray(obs.target_mask[observer, MELEE]))
    # Next door the K - 1 nearest are the stack's lowest slots (the tie rule).
    assert np.asarray(state.entity_ids[8]).tolist() == [8, *range(k - 1)]
    assert np.all(np.asarray(obs.target_mask[8, MELEE]))
    hits = {7: (RANGE, 6), 8: (RANGE, 5), 1: (MELEE, 7)}
    _, state, *_ = run(env, state, chaos, attacks=hits)
    assert [stats(state, i)["health"] for i in (5, 6)] == [8, 8]
    assert not bool(state.agents.alive[7])


def test_a_stack_deeper_than_k_fills_every_list_nearest_first(env, chaos):
    # Slots 0-11 on the centre, slot 12 one tile east, slot 13 two tiles east, slot 14
    # two tiles west. Everyone on the centre sees K - 1 others from the centre; slot 13
    # sees slot 12 first, then the stack's lowest slots, never slot 14 behind them.
    k, n_stack = env.cfg.n_entities, 12
    assert n_stack > k
    stack = [dict(pos=CENTRE) for _ in range(n_stack)]
    agents = [*stack, dict(pos=(16, 17)), dict(pos=(16, 18)), dict(pos=(16, 14))]
    obs, state = env.make_state(arena(env.cfg), agents, chaos)
    ids = np.asarray(state.entity_ids)
    assert ids[11].tolist() == [11, *range(k - 1)]
    assert ids[3].tolist() == [3, 0, 1, 2, 4, 5, 6, 7]
    assert ids[12].tolist() == [12, *range(k - 1)]
    assert ids[13].tolist() == [13, 12, *range(k - 2)]
    assert np.all(np.asarray(obs.entity_mask)[:n_stack + 3])
    assert int(obs.counts[13][env.cfg.view_radius, env.cfg.view_radius - 2]) == n_stack


def test_frozen_agents_cannot_move(env, chaos):
    _, state = env.make_state(arena(env.cfg), [dict(pos=CENTRE, freeze=2)], chaos)
    _, state, *_ = run(env, state, chaos, moves={0: EAST})
    assert pos(state, 0) == CENTRE and stats(state, 0)["freeze"] == 1
    _, state, *_ = run(env, state, chaos, moves={0: EAST})
    assert pos(state, 0) == CENTRE and stats(state, 0)["freeze"] == 0
    _, state, *_ = run(env, state, chaos, moves={0: EAST})
    assert pos(state, 0) == (16, 17)


# --- Combat (SPEC §5) ----------------------------------------------------------------


@pytest.mark.parametrize("preset, ranges", [("chaos", (1, 2, 3)), ("base", (1, 4, 4))])
@pytest.mark.parametrize("style", [MELEE, RANGE, MAGE])
def test_style_range_is_chebyshev(env, preset, ranges, style):
    # Base deals no damage: give it Chaos's damages so a hit in range shows.
    params = rules(preset, melee_damage=10, range_damage=2, mage_damage=1)
    reach = ranges[style]
    near = dict(pos=(8 + reach, 8 + reach), time_alive=VETERAN, **QUIET)  # diagonal
    far = dict(pos=(8 + reach + 1, 20), time_alive=VETERAN, **QUIET)
    agents = [dict(pos=(8, 8)), near, dict(pos=(8, 20)), far]
    obs, state = env.make_state(arena(env.cfg), agents, params)
    assert bool(obs.target_mask[0, style, entity_slot(state, 0, 1)])
    assert not bool(obs.target_mask[2, style, entity_slot(state, 2, 3)])
    _, _, _, _, info = run(env, state, params, attacks={0: (style, 1), 2: (style, 3)})
    assert int(info.damage_dealt[0]) == [10, 2, 1][style]
    assert int(info.damage_dealt[2]) == 0


@pytest.mark.parametrize("style, health", [(RANGE, 8), (MAGE, 9)])
def test_style_damage_comes_off_health(env, chaos, style, health):
    agents = [dict(pos=CENTRE), dict(pos=(17, 17), time_alive=VETERAN, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, _, done, _ = run(env, state, chaos, attacks={0: (style, 1)})
    assert stats(state, 1)["health"] == health
    assert int(state.agents.damage[1]) == 10 - health
    assert not bool(done[1])


def test_melee_kill_is_a_combat_death_without_upkeep(env, chaos):
    agents = [dict(pos=CENTRE), dict(pos=(16, 17), time_alive=VETERAN, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, after, _, done, info = run(env, state, chaos, attacks={0: (MELEE, 1)})
    assert bool(done[1]) and not bool(after.agents.alive[1])
    assert int(info.cause[1]) == DIED_COMBAT
    assert int(info.lifetime[1]) == VETERAN + 1
    assert stats(after, 1)["time_alive"] == VETERAN  # upkeep skipped


def test_attacks_are_simultaneous_so_two_agents_can_kill_each_other(env, chaos):
    agents = [dict(pos=CENTRE, time_alive=VETERAN), dict(pos=(16, 17), time_alive=VETERAN)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, _, done, info = run(env, state, chaos, attacks={0: (MELEE, 1), 1: (MELEE, 0)})
    assert np.asarray(done).tolist()[:2] == [True, True]
    assert [int(c) for c in info.cause[:2]] == [DIED_COMBAT, DIED_COMBAT]


def test_targeting_self_is_no_attack(env, chaos):
    agents = [dict(pos=CENTRE, time_alive=VETERAN, **QUIET),
              dict(pos=(16, 17), time_alive=VETERAN, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, _, _, info = run(env, state, chaos, attacks={0: (MELEE, 0)})
    assert stats(state, 0)["health"] == stats(state, 1)["health"] == 10
    assert int(info.damage_dealt[0]) == 0


def test_immunity_blocks_health_damage_in_the_first_15_ticks(env, chaos):
    # Range hits a 14-tick-old and a 15-tick-old agent; mage hits a 14-tick-old one.
    agents = [dict(pos=(8, 8)), dict(pos=(9, 9), time_alive=14, health=5, **QUIET),
              dict(pos=(8, 20)), dict(pos=(9, 21), time_alive=15, health=5, **QUIET),
              dict(pos=(20, 8)), dict(pos=(21, 9), time_alive=14, health=5, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    hits = {0: (RANGE, 1), 2: (RANGE, 3), 4: (MAGE, 5)}
    _, state, _, _, info = run(env, state, chaos, attacks=hits)
    assert [stats(state, i)["health"] for i in (1, 3, 5)] == [5, 3, 5]
    assert [int(info.damage_dealt[i]) for i in (0, 2, 4)] == [0, 2, 0]


def test_immune_targets_are_still_drained_and_frozen(env, chaos):
    agents = [dict(pos=CENTRE, **QUIET), dict(pos=(17, 17), time_alive=0, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos, attacks={0: (MAGE, 1)})
    target = stats(state, 1)
    assert target["health"] == 10
    assert (target["food"], target["water"], target["freeze"]) == (8, 8, 2)
    assert (stats(state, 0)["food"], stats(state, 0)["water"]) == (10, 10)
    _, state, *_ = run(env, state, chaos, moves={1: EAST})
    assert pos(state, 1) == (17, 17)  # frozen although immune


def test_vampirism_moves_damage_food_and_water_to_the_attacker(env, chaos):
    agents = [dict(pos=CENTRE, **QUIET),
              dict(pos=(18, 18), food=20, water=20, time_alive=VETERAN)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos, attacks={0: (RANGE, 1)})
    assert (stats(state, 0)["food"], stats(state, 0)["water"]) == (10 + 2 - 1, 10 + 2 - 1)
    assert (stats(state, 1)["food"], stats(state, 1)["water"]) == (20 - 2 - 1, 20 - 2 - 1)


def test_vampirism_keeps_both_sides_within_bounds(env, chaos):
    # A nearly full attacker drains a nearly empty target.
    agents = [dict(pos=CENTRE, food=31, water=32),
              dict(pos=(18, 18), food=1, water=0, health=10, time_alive=VETERAN)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos, attacks={0: (RANGE, 1)})
    assert (stats(state, 0)["food"], stats(state, 0)["water"]) == (31, 31)
    assert (stats(state, 1)["food"], stats(state, 1)["water"]) == (0, 0)
    assert stats(state, 1)["health"] == 10 - 2 - 2  # hit, then hunger and thirst


def test_mage_freeze_costs_exactly_the_next_two_moves(env, chaos):
    # The target tries to move east every tick. The hit sets its counter to 3 and this
    # tick's upkeep lowers it to 2: the next two moves are lost, the third goes.
    agents = [dict(pos=(16, 13)), dict(pos=CENTRE, time_alive=VETERAN)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    _, state, *_ = run(env, state, chaos, moves={1: EAST}, attacks={0: (MAGE, 1)})
    assert pos(state, 1) == (16, 17)  # moves resolve before the hit
    assert stats(state, 1)["freeze"] == 2
    for tick, freeze in enumerate((1, 0)):
        _, state, *_ = run(env, state, chaos, seed=tick + 1, moves={1: EAST})
        assert pos(state, 1) == (16, 17), f"moved {tick + 1} ticks after the hit"
        assert stats(state, 1)["freeze"] == freeze
    _, state, *_ = run(env, state, chaos, seed=3, moves={1: EAST})
    assert pos(state, 1) == (16, 18)


@pytest.mark.parametrize("preset", ["chaos", "base"])
def test_mage_hit_without_damage_freezes_nobody(env, preset):
    # Chaos with mage damage 0 keeps mage_freeze 3; base has no damage at all.
    params = rules(preset, mage_damage=0)
    assert int(params.mage_freeze) == 3
    agents = [dict(pos=(16, 13)), dict(pos=CENTRE, time_alive=VETERAN, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, params)
    _, state, _, _, info = run(env, state, params, attacks={0: (MAGE, 1)})
    assert stats(state, 1)["freeze"] == 0 and int(info.damage_dealt[0]) == 0
    _, state, *_ = run(env, state, params, moves={1: EAST})
    assert pos(state, 1) == (16, 17)


def test_simultaneous_hits_add_up(env, chaos):
    target = dict(pos=CENTRE, time_alive=VETERAN, **QUIET)
    agents = [target, dict(pos=(14, 14)), dict(pos=(18, 16)), dict(pos=(16, 19))]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    hits = {1: (RANGE, 0), 2: (RANGE, 0), 3: (MAGE, 0)}
    _, state, *_ = run(env, state, chaos, attacks=hits)
    assert stats(state, 0)["health"] == 10 - 2 - 2 - 1
    assert int(state.agents.damage[0]) == 5
    assert stats(state, 0)["food"] == 10 - 5 - 1  # drained by each attacker
    assert stats(state, 0)["freeze"] == 2  # set to 3 by the mage, then upkeep


def test_law_does_no_damage_no_drain_no_freeze(env):
    law = rules("law")
    target = dict(pos=CENTRE, time_alive=VETERAN, **QUIET)
    agents = [target, dict(pos=(16, 15), **QUIET), dict(pos=(18, 16), **QUIET),
              dict(pos=(16, 19), **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, law)
    hits = {1: (MELEE, 0), 2: (RANGE, 0), 3: (MAGE, 0)}
    _, state, *_ = run(env, state, law, attacks=hits)
    assert stats(state, 0) == dict(health=10, food=9, water=9, freeze=0,
                                   time_alive=VETERAN + 1)
    assert [stats(state, i)["food"] for i in (1, 2, 3)] == [9, 9, 9]


def test_base_deals_no_damage_with_any_style(env):
    base = rules("base")
    target = dict(pos=CENTRE, time_alive=VETERAN, **QUIET)
    agents = [target, dict(pos=(16, 15), **QUIET), dict(pos=(12, 16), **QUIET),
              dict(pos=(16, 20), **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, base)
    hits = {1: (MELEE, 0), 2: (RANGE, 0), 3: (MAGE, 0)}
    _, state, _, _, info = run(env, state, base, attacks=hits)
    assert stats(state, 0) == dict(health=10, food=9, water=9, freeze=0,
                                   time_alive=VETERAN + 1)
    assert int(state.agents.damage[0]) == 0
    assert [int(info.damage_dealt[i]) for i in (1, 2, 3)] == [0, 0, 0]
    assert [int(state.agents.last_style[i]) for i in (1, 2, 3)] == [MELEE, RANGE, MAGE]


def test_out_of_range_actions_are_noops_inside_jit(env, chaos):
    # Agent 0: move 9 and style -1 at a valid target; agent 2: move -1 and melee at
    # entity slot K + 3; agent 4: a valid move and style 3.
    k = env.cfg.n_entities
    agents = [dict(pos=CENTRE), dict(pos=(16, 17), time_alive=VETERAN, **QUIET),
              dict(pos=(8, 8)), dict(pos=(8, 9), time_alive=VETERAN, **QUIET),
              dict(pos=(22, 8)), dict(pos=(22, 9), time_alive=VETERAN, **QUIET)]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    actions = act(state, moves={0: 9, 2: -1, 4: SOUTH},
                  attacks={0: (-1, 1), 2: (MELEE, 3), 4: (3, 5)})
    actions = actions.replace(target=actions.target.at[2].set(k + 3))
    _, state, _, _, info = env.step(jax.random.key(0), state, actions, chaos)
    assert [pos(state, i) for i in (0, 2, 4)] == [CENTRE, (8, 8), (23, 8)]
    assert [stats(state, i)["health"] for i in (1, 3, 5)] == [10, 10, 10]
    assert int(info.damage_dealt.sum()) == 0


def test_attack_on_an_empty_entity_slot_is_a_noop(env, chaos):
    agents = [dict(pos=CENTRE), dict(pos=(16, 17), time_alive=VETERAN, **QUIET)]
    obs, state = env.make_state(arena(env.cfg), agents, chaos)
    empty = int(np.flatnonzero(~np.asarray(obs.entity_mask[0]))[0])
    actions = act(state)
    actions = actions.replace(target=actions.target.at[0].set(empty))
    _, state, _, _, info = env.step(jax.random.key(0), state, actions, chaos)
    assert stats(state, 1)["health"] == 10 and int(info.damage_dealt[0]) == 0


def test_dead_slots_are_inert(env, chaos):
    agents = [dict(pos=CENTRE, time_alive=VETERAN, **QUIET)]
    obs, state = env.make_state(arena(env.cfg), agents, chaos)
    actions = nmmo_jax.Actions(move=jnp.full(env.n_agents, 7, jnp.int32).at[0].set(0),
                               style=jnp.full(env.n_agents, 9, jnp.int32).at[0].set(0),
                               target=jnp.full(env.n_agents, -4, jnp.int32).at[0].set(0))
    env.check_actions(actions, obs)  # only live agents are checked
    _, after, reward, done, info = env.step(jax.random.key(0), state, actions, chaos)
    dead = slice(1, None)
    assert not np.asarray(after.agents.alive[dead]).any()
    assert np.array_equal(np.asarray(after.agents.pos[dead]), np.asarray(state.agents.pos[dead]))
    assert not np.asarray(done).any() and not np.asarray(reward).any()
    assert stats(after, 0)["health"] == 10 and int(info.damage_dealt.sum()) == 0


def test_check_actions_names_the_offending_agent(env, chaos):
    agents = [dict(pos=CENTRE), dict(pos=(16, 18)), dict(pos=(8, 8)), dict(pos=(8, 12))]
    obs, state = env.make_state(arena(env.cfg), agents, chaos)
    env.check_actions(act(state), obs)
    bad_move = act(state)
    bad_move = bad_move.replace(move=bad_move.move.at[2].set(7))
    with pytest.raises(ValueError, match=r"agent 2: move 7"):
        env.check_actions(bad_move, obs)
    out_of_reach = act(state, attacks={0: (MELEE, 1)})  # two tiles away
    with pytest.raises(ValueError, match=r"agent 0: .*melee"):
        env.check_actions(out_of_reach, obs)
    wrong_shape = nmmo_jax.Actions(move=jnp.zeros(3, jnp.int32), style=bad_move.style,
                                   target=bad_move.target)
    with pytest.raises(ValueError, match="shape"):
        env.check_actions(wrong_shape, obs)


def test_step_checked_raises_naming_the_agent(env, chaos):
    agents = [dict(pos=CENTRE), dict(pos=(8, 8))]
    _, state = env.make_state(arena(env.cfg), agents, chaos)
    good = act(state)
    env.step_checked(jax.random.key(0), state, good, chaos)
    bad = good.replace(style=good.style.at[1].set(5))
    with pytest.raises(Exception, match=r"agent 1: style 5"):
        env.step_checked(jax.random.key(0), state, bad, chaos)


# --- Populations, spawning (SPEC §3-4) -------------------------------------------------


def test_spawn_fills_one_dead_slot_on_the_ring_with_full_stats(env):
    params = rules(spawn_per_tick=1)
    agents = [dict(pos=(8 + i, 8 + i), slot=s, **QUIET) for i, s in enumerate((0, 3, 5))]
    _, before = env.make_state(arena(env.cfg), agents, params)
    ring = {tuple(p) for p in terrain.spawn_ring(env.cfg)}
    slots = set()
    for seed in range(6):
        _, state, _, _, info = env.step(jax.random.key(seed), before, act(before), params)
        born = np.flatnonzero(np.asarray(info.spawned))
        assert born.size == 1
        slot = int(born[0])
        assert not bool(before.agents.alive[slot]) and bool(state.agents.alive[slot])
        assert pos(state, slot) in ring
        assert stats(state, slot) == dict(health=10, food=32, water=32, freeze=0,
                                          time_alive=0)
        assert int(state.agents.population[slot]) == slot % env.n_pops
        slots.add(slot)
    assert len(slots) > 1  # a random dead slot


def test_spawns_per_tick_follow_the_param(env):
    params = rules(spawn_per_tick=3)
    _, state = env.make_state(arena(env.cfg), [dict(pos=CENTRE)], params)
    _, state, _, _, info = env.step(jax.random.key(0), state, act(state), params)
    assert int(np.sum(info.spawned)) == 3 and int(state.agents.alive.sum()) == 4


def test_no_spawn_when_every_slot_is_alive(env):
    params = rules(spawn_per_tick=1)
    n = env.n_agents
    agents = [dict(pos=(5 + i, 5 + i % 4), **QUIET) for i in range(n)]
    _, state = env.make_state(arena(env.cfg), agents, params)
    _, state, _, _, info = env.step(jax.random.key(0), state, act(state), params)
    assert not np.asarray(info.spawned).any()
    assert int(state.agents.alive.sum()) == n


def test_population_is_slot_modulo_npop(env, chaos):
    agents = [dict(pos=(5 + i, 5 + i % 4), slot=i) for i in range(0, env.n_agents, 3)]
    obs, state = env.make_state(arena(env.cfg), agents, chaos)
    expected = np.arange(env.n_agents) % env.n_pops
    assert np.array_equal(np.asarray(state.agents.population), expected)
    assert np.array_equal(np.asarray(obs.population), expected)
    assert np.array_equal(np.asarray(state.visits.sum((1, 2))),
                          np.bincount(expected[[a["slot"] for a in agents]],
                                      minlength=env.n_pops))


def test_contested_forest_has_one_random_harvester(env, chaos):
    tiles = arena(env.cfg, forest=[CENTRE])
    _, state = env.make_state(tiles, [dict(pos=CENTRE, **QUIET), dict(pos=CENTRE, **QUIET)],
                              chaos)
    winners = []
    for seed in range(24):
        _, after, *_ = env.step(jax.random.key(seed), state, act(state), chaos)
        fed = [stats(after, i)["food"] == 14 for i in (0, 1)]
        assert sorted(fed) == [False, True]
        winners.append(fed.index(True))
    assert set(winners) == {0, 1}


# --- Reward (SPEC §7) ----------------------------------------------------------------


@pytest.mark.parametrize("mode, survivor, casualty", [("death", 0.0, -1.0),
                                                      ("alive", 1.0, 0.0)])
def test_reward_modes(env, mode, survivor, casualty):
    params = rules(reward_mode=mode)
    agents = [dict(pos=(8, 8)), dict(pos=(20, 20), health=1, food=0, water=0)]
    _, state = env.make_state(arena(env.cfg), agents, params)
    _, _, reward, done, _ = env.step(jax.random.key(0), state, act(state), params)
    reward = np.asarray(reward)
    assert reward.dtype == np.float32
    assert reward[0] == survivor and reward[1] == casualty
    assert np.all(reward[2:] == 0.0)  # empty slots
    assert np.asarray(done).tolist()[:3] == [False, True, False]


# --- Building scenarios -------------------------------------------------------------


def test_make_state_rejects_bad_agents(env, chaos):
    tiles = arena(env.cfg)
    with pytest.raises(ValueError, match=r"agent 1: pos \(40, 3\) is off the map"):
        env.make_state(tiles, [dict(pos=CENTRE), dict(pos=(40, 3))], chaos)
    with pytest.raises(ValueError, match="agent 0: slot 16"):
        env.make_state(tiles, [dict(pos=CENTRE, slot=16)], chaos)
    with pytest.raises(ValueError, match=r"agent 0: unknown fields \['hp'\]"):
        env.make_state(tiles, [dict(pos=CENTRE, hp=3)], chaos)
