"""Baseline policies: uniform random, a scripted forager, fighter and evader.

Every policy is a pure, jittable function `policy(key, obs) -> Actions` of one realm's
`Observation` (leading axis N, one row per slot); vmap it over realms. They read only
the observation, so they are fair opponents for a learned policy and a floor to beat.

The scripted movement is a shortest-path walk inside the agent's view window: a
breadth-first distance field (relaxed over the walkable tiles of the window, all agents
at once) from the tiles the agent wants to reach, then one step downhill. Walkable
means passable and not lava (grass, scrub, forest), so a scripted agent never steps on
lava, water, stone or ore.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nmmo_jax.config import (
    FOREST,
    LAVA,
    MOVE_DELTAS,
    N_MOVES,
    N_STYLES,
    PASSABLE,
    TIME_ALIVE_CENTRE,
    TIME_ALIVE_SCALE,
    WATER,
    Feature,
)
from nmmo_jax.state import Actions, Observation

Policy = Callable[[jax.Array, Observation], Actions]

# Tile ids a scripted agent may step on: passable and not lava. [7] bool.
WALKABLE = np.array([passable and tile != LAVA for tile, passable in enumerate(PASSABLE)])


def random_policy(key: jax.Array, obs: Observation) -> Actions:
    """Uniform move, uniform style, and a target uniform among the slots that style can
    hit (its `target_mask` row, which always holds slot 0, the no-op). All three come
    from one draw of 32-bit words, each taken modulo its count (a bias of at most count / 2^32)."""
    n = obs.alive.shape[0]
    bits = jax.random.bits(key, (3, n), jnp.uint32)
    style = (bits[1] % N_STYLES).astype(jnp.int32)
    legal = jnp.take_along_axis(obs.target_mask, style[:, None, None], axis=1)[:, 0]  # [N, K]
    seen = jnp.cumsum(legal, axis=1, dtype=jnp.int32)  # [N, K] legal slots up to each slot
    pick = (bits[2] % seen[:, -1].astype(jnp.uint32)).astype(jnp.int32)  # which legal slot
    target = jnp.sum(seen <= pick[:, None], axis=1)  # index of the pick-th legal slot
    return Actions(move=(bits[0] % N_MOVES).astype(jnp.int32), style=style,
                   target=target.astype(jnp.int32))


def make_forager(food_threshold: float = 0.6, water_threshold: float = 0.6,
                 heading_ticks: int = 16) -> Policy:
    """A scripted survivor that never attacks (target 0).

    When water is at or below `water_threshold` of its maximum it walks to the nearest
    tile in view that is 4-adjacent to water and stays there (drinking); when food is
    at or below `food_threshold` it walks to the nearest forest in view and stands on
    it (eating); when both are low it serves the lower one first. Otherwise, or when
    no such tile is reachable in view, it explores: it heads for the far edge of its
    window in a heading that changes every `heading_ticks` ticks of its life (a hash
    of its slot and age, so agents fan out), bending toward the other edges around
    obstacles.
    """

    def forager(key: jax.Array, obs: Observation) -> Actions:
        move = forage_moves(key, obs, food_threshold, water_threshold, heading_ticks)
        zeros = jnp.zeros_like(move)
        return Actions(move=move, style=zeros, target=zeros)

    return forager


def make_fighter(food_threshold: float = 0.6, water_threshold: float = 0.6,
                 heading_ticks: int = 16) -> Policy:
    """The forager's moves plus an attack on the weakest enemy in range.

    An enemy is a filled entity slot of another population (same-population feature
    -0.5). Among the enemies that some style can reach (`target_mask`), the one with
    the lowest health is attacked, with the first style that reaches it in the order
    melee, range, mage (the order of falling damage in the Chaos rules).
    """
    forager = make_forager(food_threshold, water_threshold, heading_ticks)

    def fighter(key: jax.Array, obs: Observation) -> Actions:
        style, target = weakest_enemy_attack(obs)
        return forager(key, obs).replace(style=style, target=target)

    return fighter


def make_evader(flee_radius: int = 3, food_threshold: float = 0.6,
                water_threshold: float = 0.6, heading_ticks: int = 16) -> Policy:
    """The fighter, keeping its distance: while an enemy in view is within `flee_radius`
    tiles (Chebyshev; 3 is the mage's reach in Chaos) it takes the walkable step, or
    stays, that leaves the nearest enemy farthest, the forager's move winning ties; it
    moves like the forager otherwise and attacks like the fighter.

    Keeping out of reach is what the Chaos rules reward: a mage hit freezes its target
    and drains its food and water, so an agent caught in range rarely walks away.
    """

    def evader(key: jax.Array, obs: Observation) -> Actions:
        forage = forage_moves(key, obs, food_threshold, water_threshold, heading_ticks)
        style, target = weakest_enemy_attack(obs)
        return Actions(move=flee_moves(obs, forage, flee_radius), style=style, target=target)

    return evader


def flee_moves(obs: Observation, move: jax.Array, flee_radius: int) -> jax.Array:
    """`move` ([N] int32), replaced by the step away from the nearest enemy for the agents
    with an enemy within `flee_radius` tiles (see `make_evader`)."""
    r = obs.tiles.shape[1] // 2
    offset = jnp.round(obs.entities[..., Feature.ROW_OFFSET:Feature.COL_OFFSET + 1] * r)
    after = offset[:, None] - jnp.asarray(MOVE_DELTAS, jnp.float32)[None, :, None]  # [N, 5, K, 2]
    gap = jnp.min(jnp.where(_enemies(obs)[:, None], jnp.max(jnp.abs(after), axis=-1), jnp.inf),
                  axis=-1)  # [N, 5] nearest enemy after each move
    legal = _walkable_steps(jnp.asarray(WALKABLE)[obs.tiles]) & obs.move_mask  # [N, 5]
    preferred = jnp.arange(N_MOVES) == move[:, None]
    score = jnp.where(legal, gap + 0.5 * preferred, -jnp.inf)
    threatened = gap[:, 0] <= flee_radius
    return jnp.where(threatened, jnp.argmax(score, axis=1), move).astype(jnp.int32)


def _enemies(obs: Observation) -> jax.Array:
    """Filled entity slots of another population (same-population feature -0.5), [N, K]."""
    return obs.entity_mask & (obs.entities[..., Feature.SAME_POP] < 0)


def weakest_enemy_attack(obs: Observation) -> tuple[jax.Array, jax.Array]:
    """(style [N], target [N]) int32 attacking the weakest enemy in range; (0, 0), the
    no-op, for agents with none."""
    reachable = _enemies(obs) & jnp.any(obs.target_mask, axis=1)  # [N, K]
    health = jnp.where(reachable, obs.entities[..., Feature.HEALTH], jnp.inf)
    found = jnp.any(reachable, axis=1)
    target = jnp.where(found, jnp.argmin(health, axis=1), 0)
    hits = jnp.take_along_axis(obs.target_mask, target[:, None, None], axis=2)[..., 0]  # [N, 3]
    style = jnp.where(found, jnp.argmax(hits, axis=1), 0)  # first style that reaches
    return style.astype(jnp.int32), target.astype(jnp.int32)


def forage_moves(key: jax.Array, obs: Observation, food_threshold: float,
                 water_threshold: float, heading_ticks: int) -> jax.Array:
    """The forager's move for every slot, [N] int32 (see `make_forager`)."""
    v = obs.tiles.shape[1]
    walkable = jnp.asarray(WALKABLE)[obs.tiles]  # [N, V, V]
    food = obs.own[:, Feature.FOOD] + 0.5  # fraction of max
    water = obs.own[:, Feature.WATER] + 0.5
    hungry, thirsty = food <= food_threshold, water <= water_threshold
    drink = thirsty & (~hungry | (water <= food))
    eat = hungry & ~drink
    shore = walkable & _next_to(obs.tiles == WATER)
    goal = (drink[:, None, None] & shore) | (eat[:, None, None] & (obs.tiles == FOREST))
    # Exploring edges cost more than any in-view path when a goal is wanted, so they
    # only win when no goal is reachable.
    detour = jnp.where(drink | eat, 3.0 * v, 0.0)[:, None, None]
    source = jnp.where(goal, 0.0, _edge_costs(obs, heading_ticks) + detour)
    distance = _distance_field(jnp.where(walkable, source, jnp.inf), walkable, 2 * v)
    return _downhill(key, distance, walkable)


def _next_to(mask: jax.Array) -> jax.Array:
    """Tiles with a 4-neighbour in `mask` ([N, V, V] bool), same shape."""
    pad = jnp.pad(mask, ((0, 0), (1, 1), (1, 1)))
    return pad[:, :-2, 1:-1] | pad[:, 2:, 1:-1] | pad[:, 1:-1, :-2] | pad[:, 1:-1, 2:]


def _edge_costs(obs: Observation, heading_ticks: int) -> jax.Array:
    """Exploration sources, [N, V, V] float32: the window's edge tiles, costing 0 on the
    agent's heading side, V/2 on the two sides beside it and V opposite; inf inside."""
    n, v = obs.tiles.shape[:2]
    heading = _hash(jnp.arange(n, dtype=jnp.uint32), observed_age(obs) // heading_ticks) % 4
    # Sides in move order minus one: east, south, west, north.
    index = jnp.arange(v)
    on_side = jnp.stack([
        jnp.broadcast_to(index[None, :] == v - 1, (v, v)),
        jnp.broadcast_to(index[:, None] == v - 1, (v, v)),
        jnp.broadcast_to(index[None, :] == 0, (v, v)),
        jnp.broadcast_to(index[:, None] == 0, (v, v)),
    ])  # [4, V, V]
    turn = (jnp.arange(4, dtype=jnp.uint32)[None, :] - heading[:, None]) % 4  # [N, 4]
    side_cost = jnp.minimum(turn, 4 - turn).astype(jnp.float32) * (v / 2)  # [N, 4]
    cost = jnp.where(on_side[None], side_cost[:, :, None, None], jnp.inf)  # [N, 4, V, V]
    return jnp.min(cost, axis=1)


def observed_age(obs: Observation) -> jax.Array:
    """Each slot's time alive decoded from its own TIME_ALIVE feature, [N] uint32."""
    time = obs.own[:, Feature.TIME_ALIVE] * TIME_ALIVE_SCALE + TIME_ALIVE_CENTRE
    return jnp.round(jnp.maximum(time, 0.0)).astype(jnp.uint32)


def _hash(a: jax.Array, b: jax.Array) -> jax.Array:
    """A well-mixed uint32 of two uint32 arrays."""
    h = a * jnp.uint32(0x9E3779B1) ^ (b * jnp.uint32(0x85EBCA77) + jnp.uint32(0x27D4EB2F))
    h = (h ^ (h >> 15)) * jnp.uint32(0x2C1B3C6D)
    return h ^ (h >> 13)


def _distance_field(source: jax.Array, walkable: jax.Array, steps: int) -> jax.Array:
    """Shortest walking distance to the cheapest source, [N, V, V] float32.

    `source` holds each tile's starting cost (inf for non-sources); `steps` rounds of
    4-neighbour relaxation over walkable tiles find every path up to that many steps.
    """

    def relax(d: jax.Array, _: None) -> tuple[jax.Array, None]:
        pad = jnp.pad(d, ((0, 0), (1, 1), (1, 1)), constant_values=jnp.inf)
        near = jnp.minimum(jnp.minimum(pad[:, :-2, 1:-1], pad[:, 2:, 1:-1]),
                           jnp.minimum(pad[:, 1:-1, :-2], pad[:, 1:-1, 2:]))
        return jnp.where(walkable, jnp.minimum(d, near + 1.0), jnp.inf), None

    distance, _ = jax.lax.scan(relax, source, None, length=steps)
    return distance


def _neighbours(window: jax.Array) -> jax.Array:
    """The window's centre and its 4 neighbours in `MOVE_DELTAS` order, [N, 5]."""
    r = window.shape[1] // 2
    deltas = np.asarray(MOVE_DELTAS)
    return window[:, r + deltas[:, 0], r + deltas[:, 1]]


def _walkable_steps(walkable: jax.Array) -> jax.Array:
    """Which moves lead onto a walkable tile of the window ([N, V, V] bool), [N, 5] bool;
    staying always counts."""
    return _neighbours(walkable).at[:, 0].set(True)


def _downhill(key: jax.Array, distance: jax.Array, walkable: jax.Array) -> jax.Array:
    """One step down the distance field from the window centre, [N] int32.

    Staying wins ties (a goal reached is kept); other ties break at random. An agent
    with no reachable source takes a random move among the walkable ones (or stays).
    """
    n = distance.shape[0]
    legal = _walkable_steps(walkable)  # [N, 5]
    score = jnp.where(legal, _neighbours(distance), jnp.inf).at[:, 0].add(-0.5)
    noise = jax.random.uniform(key, (n, N_MOVES), maxval=0.25)
    reachable = jnp.any(jnp.isfinite(score), axis=1, keepdims=True)
    score = jnp.where(reachable, score + noise, jnp.where(legal, noise, jnp.inf))
    return jnp.argmin(score, axis=1).astype(jnp.int32)


forager = make_forager()
fighter = make_fighter()
evader = make_evader()

POLICIES: dict[str, Policy] = {"random": random_policy, "forager": forager, "fighter": fighter,
                               "evader": evader}
