"""The data of a realm: agents as a struct of arrays, tiles, observations, actions.

N is `Config.n_agents`, P `Config.n_pops`, K `Config.n_entities`, V `Config.view_size`,
H = W = `Config.map_size`. Every per-agent array has a leading axis of size N; a slot
whose `alive` is False is empty and inert.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct


@struct.dataclass
class Agents:
    """Per-slot agent arrays.

    Attributes:
      pos: [N, 2] int32, (row, col) on the map.
      health, food, water: [N] int16, in [0, max].
      freeze: [N] int16, the freeze counter: the agent cannot move while it is above 0
        (a mage hit sets it to mage_freeze, upkeep lowers it by 1 each tick).
      time_alive: [N] int32, ticks lived (0 on the spawn tick's observation).
      damage: [N] int16, health damage taken last tick (0 while immune).
      population: [N] int32, slot % n_pops.
      alive: [N] bool.
      last_style: [N] int8, style of the attack made last tick, -1 for none.
      last_target: [N] int32, slot attacked last tick, -1 for none.
    """

    pos: jnp.ndarray
    health: jnp.ndarray
    food: jnp.ndarray
    water: jnp.ndarray
    freeze: jnp.ndarray
    time_alive: jnp.ndarray
    damage: jnp.ndarray
    population: jnp.ndarray
    alive: jnp.ndarray
    last_style: jnp.ndarray
    last_target: jnp.ndarray


@struct.dataclass
class State:
    """One realm.

    Attributes:
      agents: the `Agents` struct of arrays.
      terrain: [H, W] int8, each tile's original type (what it regrows to).
      tiles: [H, W] int8, each tile's current type (a depleted forest shows as scrub).
      capacity: [H, W] int8, resource left on each tile (forest: 0 or forest_capacity).
      entity_ids: [N, K] int32, the slot seen in each entity slot of the last
        observation, -1 where empty; attacks are resolved against it.
      visits: [P, H, W] int32, ticks spent by each population on each tile; an empty
        [P, 0, 0] array unless the config's `count_visits` is on.
      tick: [] int32, ticks since the realm was made.
    """

    agents: Agents
    terrain: jnp.ndarray
    tiles: jnp.ndarray
    capacity: jnp.ndarray
    entity_ids: jnp.ndarray
    visits: jnp.ndarray
    tick: jnp.ndarray


@struct.dataclass
class Actions:
    """What every slot does this tick; int32 [N] each.

    Attributes:
      move: 0 stay, 1 east (0,+1), 2 south (+1,0), 3 west (0,-1), 4 north (-1,0).
      style: 0 melee, 1 range, 2 mage.
      target: an entity slot of the agent's observation, in [0, K); slot 0 is the agent
        itself and means "no attack".

    Inside jit, out-of-range values are the no-op: a move outside [0, 5) stays, a style
    outside [0, 3) or a target outside [0, K), empty, or out of the style's range does
    not attack. `Env.check_actions` raises on them instead.
    """

    move: jnp.ndarray
    style: jnp.ndarray
    target: jnp.ndarray


@struct.dataclass
class Observation:
    """What every slot sees.

    Attributes:
      tiles: [N, V, V] int8, tile ids of the window centred on the agent (outside the
        map reads as lava, 0).
      counts: [N, V, V] int8, live agents on each window tile (saturates at 127).
      own: [N, F] float32, the agent's own features (layout of `entities`); F is
        `config.N_FEATURES` (11).
      entities: [N, K, F] float32, the K nearest live agents in view, slot 0 the
        observer, then nearest first: in `observe.view_order` of the offset (Chebyshev
        distance, then squared Euclidean, then row, then column), lowest slot first
        among agents on one tile. Exact: every agent on a tile counts, and nobody in
        view is left out while a farther agent is listed. Columns are named by
        `config.Feature`: TIME_ALIVE (time_alive - 50)/100, HEALTH (health - max/2)/max,
        FOOD and WATER likewise, ROW (row - H/2)/H, COL (col - H/2)/H, ROW_OFFSET and
        COL_OFFSET (offset from the observer / view_radius), DAMAGE (damage taken last
        tick / max_health), SAME_POP (+0.5 same population, -0.5 not), FREEZE
        (freeze / mage_freeze; freeze itself when mage_freeze is 0). Empty slots are
        zero.
      entity_mask: [N, K] bool, which entity slots hold an agent.
      target_mask: [N, 3, K] bool, which slots each style (melee, range, mage) can
        target: filled slots within the style's Chebyshev range. Slot 0 (self, the
        no-op) is always True, so every row has a legal choice.
      move_mask: [N, 5] bool, which moves change the agent's tile (`MOVE_DELTAS` order):
        "stay" always True; a step when the agent is live, not frozen, and the tile it
        leads to is on the map and passable. A masked move is a wasted tick ("stay").
      alive: [N] bool, which slots hold a live agent.
      population: [N] int32, each slot's population.
    """

    tiles: jnp.ndarray
    counts: jnp.ndarray
    own: jnp.ndarray
    entities: jnp.ndarray
    entity_mask: jnp.ndarray
    target_mask: jnp.ndarray
    move_mask: jnp.ndarray
    alive: jnp.ndarray
    population: jnp.ndarray


@struct.dataclass
class Info:
    """What a tick did, for logging without host round-trips.

    Attributes:
      lifetime: [N] int32, ticks lived by each agent that died this tick, else 0.
      cause: [N] int8, why each slot's agent died this tick (`config.CAUSE_NAMES`:
        0 none, 1 lava, 2 starvation or thirst, 3 combat).
      spawned: [N] bool, slots that received a new agent this tick.
      pop_alive: [P] int32, live agents per population after the tick.
      pop_deaths: [P] int32, deaths per population this tick.
      pop_lifetime: [P] int32, summed lifetimes of this tick's deaths per population.
      damage_dealt: [N] int32, health damage this slot's attack caused (after immunity).
    """

    lifetime: jnp.ndarray
    cause: jnp.ndarray
    spawned: jnp.ndarray
    pop_alive: jnp.ndarray
    pop_deaths: jnp.ndarray
    pop_lifetime: jnp.ndarray
    damage_dealt: jnp.ndarray
