"""Observations and target masks (SPEC §6), through an exact grid index of agents.

Who stands near whom is answered by a per-tile index built from positions in
O(N + H*W): the live count and the lowest live slot (the head) of every tile, and for
each head a row listing its tile's live slots. An observer reads its window of counts
in a fixed nearest-first order; the k-th nearest neighbour is found from the running
sum of those counts and read from the row of its tile's head. The work per agent is
proportional to the view, never to the number of agents, and the list is exact
however many agents share a tile.

Tie rule of the entity list: agents in view come in `view_order` of their offset from
the observer (Chebyshev distance, then squared Euclidean distance, then row offset,
then column offset), and agents sharing a tile come lowest slot first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nmmo_jax.config import (LAVA, N_FEATURES, TIME_ALIVE_CENTRE, TIME_ALIVE_SCALE, Config,
                             Feature, Params)
from nmmo_jax.state import Agents, Observation, State


@struct.dataclass
class GridIndex:
    """Live agents by tile: per tile its live count and lowest live slot (its head);
    per head, a row of `members` listing its tile's live slots.

    Only the `depth` lowest live slots of a tile are placed: no entity list takes more
    than K - 1 others from one tile, so `depth` = K is enough.

    Attributes:
      count: [H*W] int32, live agents on each tile.
      head: [H*W] int32, the lowest live slot on each tile, N where none.
      members: [N, depth] int32, row h holds the live slots of the tile headed by slot h,
        lowest first; N where none.
      rank: [N] int32, each placed agent's column in its tile's row (0 for the head),
        `depth` for the dead and the unplaced.
    """

    count: jnp.ndarray
    head: jnp.ndarray
    members: jnp.ndarray
    rank: jnp.ndarray


def tile_ranks(flat: jnp.ndarray, alive: jnp.ndarray, head: jnp.ndarray, depth: int
               ) -> jnp.ndarray:
    """Each live agent's rank among the live agents of its tile, lowest slot first, [N]
    int32; `depth` for the dead and for ranks past `depth - 1`.

    Starting from `head` (the lowest live slot per tile, [H*W], N where none), each
    round places the current head of every tile, then clears those tiles and scatters
    the lowest unplaced slot into them (O(N) a round). Rounds run until every live agent
    is placed (as many as the deepest stack: in 64 default Chaos realms over 200 ticks,
    2-3 in a typical realm and at most 5 in any) or `depth` rounds have run; vmapped,
    the batch runs as many as its deepest realm.
    """
    n, cells = flat.shape[0], head.shape[0]
    slots = jnp.arange(n, dtype=jnp.int32)

    def more(carry: tuple) -> jnp.ndarray:
        s, _, left, _ = carry
        return (s < depth) & jnp.any(left)

    def place(carry: tuple) -> tuple:
        s, rank, left, head = carry
        placed = left & (head[flat] == slots)
        left = left & ~placed
        head = head.at[jnp.where(placed, flat, cells)].set(n, mode="drop")
        head = head.at[flat].min(jnp.where(left, slots, n))
        return s + 1, jnp.where(placed, s, rank), left, head

    start = (jnp.int32(0), jnp.full((n,), depth, jnp.int32), alive, head)
    return jax.lax.while_loop(more, place, start)[1]


def build_index(agents: Agents, cfg: Config) -> GridIndex:
    """Groups live agents by tile in O(N + H*W)."""
    n, cells, depth = cfg.n_agents, cfg.map_size * cfg.map_size, cfg.n_entities
    flat = agents.pos[:, 0] * cfg.map_size + agents.pos[:, 1]
    slots = jnp.arange(n, dtype=jnp.int32)
    head = jnp.full((cells,), n, jnp.int32).at[flat].min(jnp.where(agents.alive, slots, n))
    rank = tile_ranks(flat, agents.alive, head, depth)
    count = jnp.zeros((cells,), jnp.int32).at[flat].add(agents.alive.astype(jnp.int32))
    members = jnp.full((n, depth), n, jnp.int32).at[head[flat], rank].set(slots, mode="drop")
    return GridIndex(count=count, head=head, members=members, rank=rank)


def view_order(cfg: Config) -> np.ndarray:
    """Window offsets (drow, dcol) nearest first, [V*V, 2] int32; the centre comes first.

    Order: Chebyshev distance, then squared Euclidean distance, then row, then column.
    """
    r = cfg.view_radius
    offsets = [(dr, dc) for dr in range(-r, r + 1) for dc in range(-r, r + 1)]
    offsets.sort(key=lambda d: (max(abs(d[0]), abs(d[1])), d[0] ** 2 + d[1] ** 2, d[0], d[1]))
    return np.asarray(offsets, np.int32)


def _window(grid: jnp.ndarray, pos: jnp.ndarray, radius: int, fill: int) -> jnp.ndarray:
    """The (2r+1)^2 window of a [H, W] grid around each position, [N, V, V]."""
    padded = jnp.pad(grid, radius, constant_values=fill)
    size = 2 * radius + 1
    return jax.vmap(lambda p: jax.lax.dynamic_slice(padded, (p[0], p[1]), (size, size)))(pos)


def _block_split(t: int) -> int:
    """The largest divisor of t not above sqrt(t): the block count of a two-level scan."""
    rows = int(np.sqrt(t))
    while t % rows:
        rows -= 1
    return rows


def _rank_to_tile(counts: jnp.ndarray, n_ranks: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """For ranks j = 0 .. n_ranks-1, the tile holding the j-th agent and the agent's rank
    within that tile, given per-tile counts [N, T] in nearest-first order.

    A two-level prefix sum over T = B x G tiles: the block is found among B block totals,
    the tile among that block's G running totals. Everything is a compare-and-count over
    a short axis, which vectorises on CPU where gathers and long cumsums do not. Returns
    the tile [N, R] (T when fewer than j + 1 agents are in view) and the rank within it.
    """
    n, t = counts.shape
    b = _block_split(t)
    dt = counts.dtype  # int16 where totals fit: twice the lanes per vector op
    inner = jnp.cumsum(counts.reshape(n, b, t // b), axis=2, dtype=dt)  # [N, B, G]
    ends = jnp.cumsum(inner[:, :, -1], axis=1, dtype=dt)  # [N, B]
    rank = jnp.arange(n_ranks, dtype=dt)[None, :, None]  # [1, R, 1]
    passed = ends[:, None, :] <= rank  # [N, R, B]
    block = jnp.sum(passed, axis=2, dtype=jnp.int32)  # [N, R]
    within = rank[..., 0] - jnp.max(jnp.where(passed, ends[:, None, :], 0), axis=2)
    rows = jax.vmap(lambda rows, i: rows[jnp.minimum(i, b - 1)])(inner, block)  # [N, R, G]
    passed = rows <= within[..., None]
    tile = block * (t // b) + jnp.sum(passed, axis=2, dtype=jnp.int32)
    layer = within - jnp.max(jnp.where(passed, rows, 0), axis=2)
    return jnp.where(block < b, tile, t), layer.astype(jnp.int32)


def nearest_entities(agents: Agents, index: GridIndex, cfg: Config) -> jnp.ndarray:
    """The K nearest live agents in each observer's view, [N, K] int32, -1 where empty.

    Slot 0 is the observer; the others follow the module's tie rule (`view_order`, then
    lowest slot first on a tile). Dead observers see nothing (all -1).
    """
    n, k, r, side = cfg.n_agents, cfg.n_entities, cfg.view_radius, cfg.map_size
    offsets = view_order(cfg)  # [T, 2] numpy, nearest first
    t = offsets.shape[0]
    wide = side + 2 * r  # grids padded by the view radius (no agents outside the map)
    step = jnp.asarray(offsets @ np.array([wide, 1], np.int32))  # [T] flat offsets
    centre = (agents.pos[:, 0] + r) * wide + agents.pos[:, 1] + r  # [N]
    cells = centre[:, None] + step[None]  # [N, T] nearest first
    counts = jnp.pad(index.count.reshape(side, side), r).reshape(-1)[cells]
    counts = counts.at[:, 0].add(-agents.alive.astype(jnp.int32))  # others on own tile
    counts = jnp.minimum(counts, k - 1)  # no list takes more than K - 1 from one tile
    small = t * (k - 1) < 2**15
    tile, layer = _rank_to_tile(counts.astype(jnp.int16 if small else jnp.int32), k - 1)
    found = tile < t
    tile = jnp.minimum(tile, t - 1)
    layer = jnp.where((tile == 0) & (layer >= index.rank[:, None]), layer + 1, layer)
    head = jnp.pad(index.head.reshape(side, side), r).reshape(-1)[centre[:, None] + step[tile]]
    others = index.members[jnp.minimum(head, n - 1), layer]  # [N, K-1]
    ids = jnp.concatenate([jnp.arange(n, dtype=jnp.int32)[:, None],
                           jnp.where(found, others, -1)], axis=1)
    return jnp.where(agents.alive[:, None], ids, -1)


def _agent_table(agents: Agents, params: Params, cfg: Config) -> jnp.ndarray:
    """Each agent's observer-independent features in their `Feature` columns, [N, F]
    float32; the observer-dependent ROW_OFFSET, COL_OFFSET and SAME_POP hold 0. One row
    gather of this table replaces a gather per feature."""
    def centred(x: jnp.ndarray, top: jnp.ndarray) -> jnp.ndarray:
        top = top.astype(jnp.float32)
        return (x.astype(jnp.float32) - top / 2) / top

    pos = agents.pos.astype(jnp.float32)
    columns = {
        Feature.TIME_ALIVE:
            (agents.time_alive.astype(jnp.float32) - TIME_ALIVE_CENTRE) / TIME_ALIVE_SCALE,
        Feature.HEALTH: centred(agents.health, params.max_health),
        Feature.FOOD: centred(agents.food, params.max_food),
        Feature.WATER: centred(agents.water, params.max_water),
        Feature.ROW: (pos[:, 0] - cfg.map_size / 2) / cfg.map_size,
        Feature.COL: (pos[:, 1] - cfg.map_size / 2) / cfg.map_size,
        Feature.DAMAGE: agents.damage.astype(jnp.float32) / params.max_health.astype(jnp.float32),
        Feature.FREEZE: agents.freeze.astype(jnp.float32)
        / jnp.maximum(params.mage_freeze, 1).astype(jnp.float32),
    }
    zero = jnp.zeros((cfg.n_agents,), jnp.float32)
    return jnp.stack([columns.get(feature, zero) for feature in Feature], axis=1)


def entity_offsets(agents: Agents, ids: jnp.ndarray) -> jnp.ndarray:
    """(row, col) of each seen agent minus its observer's, [N, K, 2] int32."""
    return agents.pos[jnp.maximum(ids, 0)] - agents.pos[:, None, :]


def entity_features(agents: Agents, ids: jnp.ndarray, offsets: jnp.ndarray, params: Params,
                    cfg: Config) -> jnp.ndarray:
    """The `Feature`s of the agents `ids` [N, K] as seen by each observer (row i of `ids`
    is observer i; `offsets` from `entity_offsets`), [N, K, F] float32; zero where
    id < 0."""
    seen = _agent_table(agents, params, cfg)[jnp.maximum(ids, 0)]  # [N, K, F]
    delta = offsets.astype(jnp.float32) / max(cfg.view_radius, 1)
    kin = agents.population[jnp.maximum(ids, 0)] == agents.population[:, None]
    relative = {Feature.ROW_OFFSET: delta[..., 0], Feature.COL_OFFSET: delta[..., 1],
                Feature.SAME_POP: jnp.where(kin, 0.5, -0.5)}
    column = jnp.arange(N_FEATURES)
    for feature, value in relative.items():
        seen = jnp.where(column == feature, value[..., None], seen)
    return jnp.where((ids >= 0)[..., None], seen, 0.0)


def target_mask(ids: jnp.ndarray, offsets: jnp.ndarray, params: Params) -> jnp.ndarray:
    """Which entity slots each style can hit, [N, 3, K] bool; slot 0 (no-op) always True."""
    distance = jnp.max(jnp.abs(offsets), axis=-1)  # Chebyshev, [N, K]
    mask = (ids >= 0)[:, None, :] & (distance[:, None, :] <= params.ranges[None, :, None])
    return mask.at[:, :, 0].set(True)


def observe(state: State, params: Params, cfg: Config) -> tuple[Observation, jnp.ndarray]:
    """The observation of every slot and the entity ids behind it ([N, K] int32)."""
    agents = state.agents
    index = build_index(agents, cfg)
    ids = nearest_entities(agents, index, cfg)
    alive = agents.alive
    r, side = cfg.view_radius, cfg.map_size
    tiles = _window(state.tiles, agents.pos, r, LAVA)
    counts = _window(jnp.minimum(index.count, 127).reshape(side, side).astype(jnp.int8),
                     agents.pos, r, 0)
    offsets = entity_offsets(agents, ids)
    entities = entity_features(agents, ids, offsets, params, cfg)
    obs = Observation(
        tiles=jnp.where(alive[:, None, None], tiles, 0).astype(jnp.int8),
        counts=jnp.where(alive[:, None, None], counts, 0).astype(jnp.int8),
        own=entities[:, 0],
        entities=entities,
        entity_mask=ids >= 0,
        target_mask=target_mask(ids, offsets, params),
        alive=alive,
        population=agents.population,
    )
    return obs, ids
