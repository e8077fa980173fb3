"""The tick (SPEC §3-5): move, attack, upkeep, deaths, spawn, regrow.

Each phase is a pure function over whole arrays. All agents act at once from the same
observation: moves resolve first, then attacks against the entity slots of that
observation (ranges checked at observation-time positions), then upkeep and deaths,
then spawning and regrowth.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from nmmo_jax.config import (
    DIED_COMBAT,
    DIED_LAVA,
    DIED_STARVATION,
    FOREST,
    LAVA,
    MAGE,
    MOVE_DELTAS,
    N_MOVES,
    N_STYLES,
    PASSABLE,
    SCRUB,
    WATER,
    Config,
    Params,
)
from nmmo_jax.state import Actions, Agents, Info, State
from nmmo_jax.terrain import spawn_ring

# Above every random priority (`_priority` gives values below 2^30).
NO_PRIORITY = 2**30


@struct.dataclass
class Attacks:
    """The attacks that land this tick.

    Attributes:
      target: [N] int32, slot hit by each agent, N (dropped) when it does not attack.
      style: [N] int32, style of each landed attack, -1 for none.
      damage: [N] int32, damage of each landed attack, 0 for none.
    """

    target: jnp.ndarray
    style: jnp.ndarray
    damage: jnp.ndarray


@struct.dataclass
class Draws:
    """The random numbers of one tick, from a single `jax.random.bits` call: on CPU
    every call is a loop of its own, whatever its size.

    Attributes:
      forage: [N] uint32, each agent's claim on the forest under it.
      slot: [N] uint32, each slot's claim on a spawn.
      place: [N] uint32, where on the spawn ring each slot would spawn.
      regrow: [2] uint32, the keys of this tick's per-tile regrowth draws (`tile_bits`).
    """

    forage: jnp.ndarray
    slot: jnp.ndarray
    place: jnp.ndarray
    regrow: jnp.ndarray


def draw(key: jax.Array, cfg: Config) -> Draws:
    """The random numbers of one tick."""
    n = cfg.n_agents
    bits = jax.random.bits(key, (3 * n + 2,), jnp.uint32)
    return Draws(forage=bits[:n], slot=bits[n:2 * n], place=bits[2 * n:3 * n],
                 regrow=bits[3 * n:])


def _mix(x: jnp.ndarray) -> jnp.ndarray:
    """MurmurHash3's 32-bit finaliser: every input bit flips each output bit with
    probability close to 1/2."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x85EBCA6B)
    x = x ^ (x >> 13)
    x = x * jnp.uint32(0xC2B2AE35)
    return x ^ (x >> 16)


def tile_bits(keys: jnp.ndarray, shape: tuple[int, int]) -> jnp.ndarray:
    """32 random bits per tile, [H, W] uint32: a counter-based hash of each tile's index
    under the tick's two random keys ([2] uint32). Per-tile draws then cost a few
    integer operations fused into their use, not a random-number call over the map."""
    rows = jax.lax.broadcasted_iota(jnp.uint32, shape, 0)
    index = rows * jnp.uint32(shape[1]) + jax.lax.broadcasted_iota(jnp.uint32, shape, 1)
    return _mix(_mix(index ^ keys[0]) + keys[1])


def _priority(noise: jnp.ndarray, eligible: jnp.ndarray) -> jnp.ndarray:
    """Distinct random priorities in [0, 2^30), [N] int32, -1 where not eligible: high
    bits of `noise` ([N] uint32) above the slot number, so ties cannot happen."""
    n = noise.shape[0]
    bits = max(int(n - 1).bit_length(), 1)
    high = (noise >> (bits + 2)).astype(jnp.int32) << bits
    return jnp.where(eligible, high | jnp.arange(n, dtype=jnp.int32), -1)


def _clamp(x: jnp.ndarray, top: jnp.ndarray) -> jnp.ndarray:
    return jnp.clip(x, 0, top)


def _steps_land(agents: Agents, target: jnp.ndarray, tiles: jnp.ndarray, cfg: Config
                ) -> jnp.ndarray:
    """Whether each agent would stand on `target` ([N, ..., 2] positions) after stepping
    there: it is live and not frozen, and the tile is on the map and passable by its
    current type. [N, ...] bool; the one rule of `move` and `legal_moves`."""
    on_map = jnp.all((target >= 0) & (target < cfg.map_size), axis=-1)
    safe = jnp.clip(target, 0, cfg.map_size - 1)
    passable = jnp.asarray(PASSABLE)[tiles[safe[..., 0], safe[..., 1]]]
    free = agents.alive & (agents.freeze == 0)
    return free.reshape(free.shape + (1,) * (on_map.ndim - 1)) & on_map & passable


def legal_moves(agents: Agents, tiles: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Which moves change each agent's tile, [N, 5] bool: "stay" always; a step when the
    agent is live and not frozen and the tile it leads to is on the map and passable by
    its current type. The observation's `move_mask`, by the rule `move` applies."""
    target = agents.pos[:, None, :] + jnp.asarray(MOVE_DELTAS, jnp.int32)  # [N, 5, 2]
    return _steps_land(agents, target, tiles, cfg).at[:, 0].set(True)


def move(agents: Agents, tiles: jnp.ndarray, actions: Actions, cfg: Config) -> Agents:
    """Moves every live, unfrozen agent one tile unless the tile is impassable or off-map
    (the rule of `legal_moves`). A move outside [0, 5) is "stay".
    """
    choice = jnp.where((actions.move >= 0) & (actions.move < N_MOVES), actions.move, 0)
    target = agents.pos + jnp.asarray(MOVE_DELTAS, jnp.int32)[choice]  # [N, 2]
    go = _steps_land(agents, target, tiles, cfg)
    return agents.replace(pos=jnp.where(go[:, None], target, agents.pos))


def choose_attacks(agents: Agents, entity_ids: jnp.ndarray, actions: Actions,
                   params: Params, cfg: Config) -> Attacks:
    """Resolves each agent's (style, target slot) against the observation it acted on.

    Positions are those at observation time, so call this before `move`. A style outside
    [0, 3), a target outside [1, K), an empty slot or a target out of the style's range
    is no attack.
    """
    n, k = cfg.n_agents, cfg.n_entities
    style_ok = (actions.style >= 0) & (actions.style < N_STYLES)
    slot_ok = (actions.target >= 1) & (actions.target < k)
    style = jnp.where(style_ok, actions.style, 0)
    slot = jnp.where(slot_ok, actions.target, 0)
    target = jnp.take_along_axis(entity_ids, slot[:, None], axis=1)[:, 0]
    reach = jnp.max(jnp.abs(agents.pos[jnp.maximum(target, 0)] - agents.pos), axis=1)
    lands = (agents.alive & style_ok & slot_ok & (target >= 0)
             & (target != jnp.arange(n)) & (reach <= params.ranges[style]))
    return Attacks(
        target=jnp.where(lands, target, n),
        style=jnp.where(lands, style, -1),
        damage=jnp.where(lands, params.damages[style], 0),
    )


def attack(agents: Agents, attacks: Attacks, params: Params, cfg: Config
           ) -> tuple[Agents, jnp.ndarray]:
    """Applies damage, vampirism and mage freeze; hits on one target add up.

    Immune targets take no health damage but are still drained and frozen (as in the
    original). Vampirism moves floor(damage * vampirism) food and water from the target
    to the attacker, each side clamped to [0, max]. A mage hit whose damage is above
    zero (before immunity) sets the target's freeze counter to `mage_freeze`; a
    zero-damage mage hit (Law, base) freezes nobody. The counter then drops by 1 in
    this tick's upkeep (`thaw`), so the target loses its next `mage_freeze - 1` moves.
    Returns the agents and the health damage each attack dealt ([N] int32).
    """
    n = cfg.n_agents
    immune = agents.time_alive < params.immunity_ticks
    incoming = jnp.zeros((n,), jnp.int32).at[attacks.target].add(attacks.damage, mode="drop")
    taken = jnp.where(immune, 0, incoming)
    drain = jnp.floor(attacks.damage * params.vampirism).astype(jnp.int32)
    drained = jnp.zeros((n,), jnp.int32).at[attacks.target].add(drain, mode="drop")
    freezes = (attacks.style == MAGE) & (attacks.damage > 0)
    frozen = jnp.zeros((n,), bool).at[attacks.target].max(freezes, mode="drop")
    target_immune = immune[jnp.minimum(attacks.target, n - 1)] & (attacks.target < n)
    dealt = jnp.where(target_immune, 0, attacks.damage)
    agents = agents.replace(
        health=_clamp(agents.health - taken, params.max_health).astype(jnp.int16),
        food=_clamp(agents.food - drained + drain, params.max_food).astype(jnp.int16),
        water=_clamp(agents.water - drained + drain, params.max_water).astype(jnp.int16),
        damage=taken.astype(jnp.int16),
        freeze=jnp.where(frozen, params.mage_freeze, agents.freeze).astype(jnp.int16),
        last_style=attacks.style.astype(jnp.int8),
        last_target=jnp.where(attacks.target < n, attacks.target, -1),
    )
    return agents, dealt


def forage_winners(noise: jnp.ndarray, agents: Agents, capacity: jnp.ndarray,
                   terrain: jnp.ndarray, eligible: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Which agents harvest the forest under them, [N] bool; one random winner per tile.

    Each candidate gets a random priority from `noise` ([N] uint32; `_priority`) and the
    highest priority on each tile wins.
    """
    side = cfg.map_size
    r, c = agents.pos[:, 0], agents.pos[:, 1]
    candidate = eligible & (terrain[r, c] == FOREST) & (capacity[r, c] > 0)
    priority = _priority(noise, candidate)
    flat = r * side + c
    best = jnp.full((side * side,), -1, jnp.int32).at[flat].max(priority)
    return candidate & (best[flat] == priority)


def next_to_water(agents: Agents, tiles: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Whether any 4-neighbour of each agent is water, [N] bool."""
    neighbours = agents.pos[:, None, :] + jnp.asarray(MOVE_DELTAS[1:], jnp.int32)[None]
    inside = jnp.all((neighbours >= 0) & (neighbours < cfg.map_size), axis=2)
    safe = jnp.clip(neighbours, 0, cfg.map_size - 1)
    return jnp.any(inside & (tiles[safe[..., 0], safe[..., 1]] == WATER), axis=1)


def upkeep(noise: jnp.ndarray, state: State, agents: Agents, living: jnp.ndarray,
           params: Params, cfg: Config) -> tuple[Agents, jnp.ndarray, jnp.ndarray]:
    """SPEC §3 upkeep for the `living` agents, in order.

    Freeze -1, lava, forage and drink, regenerate, hunger and thirst, starve, age.
    `noise` ([N] uint32) settles contested forests. Returns the agents, the new tile
    capacities and the cause of each upkeep death ([N] int8, 0 where none).
    """
    r, c = agents.pos[:, 0], agents.pos[:, 1]
    on_lava = living & (state.tiles[r, c] == LAVA)
    active = living & ~on_lava
    harvest = forage_winners(noise, agents, state.capacity, state.terrain, active, cfg)
    capacity = state.capacity.at[r, c].add(-harvest.astype(jnp.int8))
    drink = active & next_to_water(agents, state.tiles, cfg)
    food = _clamp(agents.food + harvest * params.forage_food, params.max_food)
    water = _clamp(agents.water + drink * params.drink_water, params.max_water)
    fed = (2 * food > params.max_food) & (2 * water > params.max_water)
    health = _clamp(agents.health + fed, params.max_health)
    food = _clamp(food - 1, params.max_food)
    water = _clamp(water - 1, params.max_water)
    health = _clamp(health - (food == 0) - (water == 0), params.max_health)
    starved = active & (health <= 0)
    agents = agents.replace(
        health=jnp.where(active, health, agents.health).astype(jnp.int16),
        food=jnp.where(active, food, agents.food).astype(jnp.int16),
        water=jnp.where(active, water, agents.water).astype(jnp.int16),
        time_alive=jnp.where(active, agents.time_alive + 1, agents.time_alive))
    cause = jnp.where(on_lava, DIED_LAVA, jnp.where(starved, DIED_STARVATION, 0))
    return agents, capacity, cause.astype(jnp.int8)


def thaw(agents: Agents, living: jnp.ndarray) -> Agents:
    """Upkeep step 1: freeze -1 (not below 0) for the `living` agents.

    It runs after `attack`, so a mage hit's counter also drops in the tick of the hit,
    as in the original, where each agent's upkeep ran before its own move.
    """
    ticked = jnp.maximum(agents.freeze - 1, 0)
    return agents.replace(freeze=jnp.where(living, ticked, agents.freeze).astype(jnp.int16))


def spawn(draws: Draws, agents: Agents, params: Params, cfg: Config
          ) -> tuple[Agents, jnp.ndarray]:
    """Fills up to `spawn_per_tick` random empty slots with fresh agents on the spawn ring.

    The slots taken are the free ones of highest random priority (a uniformly random
    subset), found in O(N) per slot spawned rather than by sorting. A slot's place on
    the ring is its `draws.place` modulo the ring's length (uniform up to a bias of
    ring length / 2^32). Returns the agents and the mask of slots spawned ([N] bool).
    """
    ring = jnp.asarray(spawn_ring(cfg))
    priority = _priority(draws.slot, ~agents.alive)
    born = priority >= _kth_highest(priority, params.spawn_per_tick)
    place = ring[draws.place % jnp.uint32(ring.shape[0])]
    fresh = fresh_agents(place, params, cfg)
    agents = jax.tree.map(lambda a, b: jnp.where(_expand(born, a), a, b), fresh, agents)
    return agents, born


def _kth_highest(priority: jnp.ndarray, k: jnp.ndarray) -> jnp.ndarray:
    """The k-th highest of the distinct `priority` values in [0, 2^30) ([N] int32, -1
    for none): 0 when k covers them all, NO_PRIORITY when k is 0. One max over N per
    rank, and no loop at all when every candidate is taken."""
    rounds = jnp.where(k >= jnp.sum(priority >= 0), 0, k)

    def lower(carry: tuple) -> tuple:
        taken, top = carry
        return taken + 1, jnp.max(jnp.where(priority < top, priority, -1))

    _, top = jax.lax.while_loop(lambda carry: carry[0] < rounds, lower,
                                (jnp.int32(0), jnp.int32(NO_PRIORITY)))
    return jnp.where(rounds == 0, jnp.where(k == 0, NO_PRIORITY, 0), top)


def _expand(mask: jnp.ndarray, like: jnp.ndarray) -> jnp.ndarray:
    return mask.reshape(mask.shape + (1,) * (like.ndim - 1))


def fresh_agents(pos: jnp.ndarray, params: Params, cfg: Config) -> Agents:
    """A full set of live, newborn agents at `pos` ([N, 2]) with full stats."""
    n = cfg.n_agents
    full = lambda v: jnp.full((n,), v, jnp.int16)  # noqa: E731
    return Agents(
        pos=pos.astype(jnp.int32), health=full(params.max_health), food=full(params.max_food),
        water=full(params.max_water), freeze=full(0), time_alive=jnp.zeros((n,), jnp.int32),
        damage=full(0), population=jnp.arange(n, dtype=jnp.int32) % cfg.n_pops,
        alive=jnp.ones((n,), bool), last_style=jnp.full((n,), -1, jnp.int8),
        last_target=jnp.full((n,), -1, jnp.int32))


def empty_agents(cfg: Config, params: Params) -> Agents:
    """All slots empty (dead) at the map's corner."""
    agents = fresh_agents(jnp.zeros((cfg.n_agents, 2), jnp.int32), params, cfg)
    return agents.replace(alive=jnp.zeros((cfg.n_agents,), bool))


def regrow(keys: jnp.ndarray, terrain: jnp.ndarray, before: jnp.ndarray, capacity: jnp.ndarray,
           params: Params) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Each forest tile depleted at the start of the tick (capacities `before` this
    tick's harvest) gains 1 capacity with probability `regrow_prob`.

    A tile harvested this tick therefore shows as scrub in at least the next
    observation, whatever `regrow_prob`. Returns the capacities (`capacity` plus
    growth) and the current tile types (a forest below full shows as scrub). The draw
    uses 16 random bits per tile: the top half of `tile_bits` under `keys` ([2] uint32).
    """
    depleted = (terrain == FOREST) & (before < params.forest_capacity)
    threshold = jnp.round(params.regrow_prob * 65536.0).astype(jnp.uint32)
    grows = (tile_bits(keys, terrain.shape) >> 16) < threshold
    capacity = capacity + (depleted & grows).astype(jnp.int8)
    return capacity, current_tiles(terrain, capacity, params)


def current_tiles(terrain: jnp.ndarray, capacity: jnp.ndarray, params: Params) -> jnp.ndarray:
    """Tile types as shown: forest below full capacity shows as scrub, [H, W] int8."""
    depleted = (terrain == FOREST) & (capacity < params.forest_capacity)
    return jnp.where(depleted, SCRUB, terrain).astype(jnp.int8)


def count_visits(visits: jnp.ndarray, agents: Agents) -> jnp.ndarray:
    """Adds one visit per live agent to its population's count of its tile (nothing to
    an empty counter: a realm that does not count visits)."""
    if visits.size == 0:
        return visits
    return visits.at[agents.population, agents.pos[:, 0], agents.pos[:, 1]].add(
        agents.alive.astype(jnp.int32))


def per_population(x: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Sums a per-slot array over each population (slot i is in population i % P), [P]."""
    return x.reshape(cfg.pop_size, cfg.n_pops).sum(axis=0)


def tick(key: jax.Array, state: State, actions: Actions, params: Params, cfg: Config
         ) -> tuple[State, jnp.ndarray, jnp.ndarray, Info]:
    """One tick of a realm; returns the new state (observation not yet taken), reward,
    done and info."""
    draws = draw(key, cfg)
    before = state.agents
    attacks = choose_attacks(before, state.entity_ids, actions, params, cfg)
    agents = move(before, state.tiles, actions, cfg)
    agents, dealt = attack(agents, attacks, params, cfg)
    slain = before.alive & (agents.health <= 0)
    living = before.alive & ~slain
    agents = thaw(agents, living)
    agents, capacity, cause = upkeep(draws.forage, state, agents, living, params, cfg)
    cause = jnp.where(slain, DIED_COMBAT, cause).astype(jnp.int8)
    died = cause > 0
    lifetime = jnp.where(died, before.time_alive + 1, 0)
    agents = agents.replace(alive=agents.alive & ~died)
    agents, born = spawn(draws, agents, params, cfg)
    capacity, tiles = regrow(draws.regrow, state.terrain, state.capacity, capacity, params)
    survived = before.alive & ~died
    reward = jnp.where(params.reward_mode == 1, survived, -died.astype(jnp.float32))
    info = Info(
        lifetime=lifetime, cause=cause, spawned=born,
        pop_alive=per_population(agents.alive.astype(jnp.int32), cfg),
        pop_deaths=per_population(died.astype(jnp.int32), cfg),
        pop_lifetime=per_population(lifetime, cfg),
        damage_dealt=dealt)
    state = state.replace(agents=agents, capacity=capacity, tiles=tiles,
                          visits=count_visits(state.visits, agents), tick=state.tick + 1)
    return state, reward.astype(jnp.float32), died, info
