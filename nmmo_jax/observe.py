"""Observations and target masks (SPEC §6), through a grid index of agents.

Who stands near whom is answered by a per-tile index scattered from positions: the
first `max_stack` live agents of every tile (lowest slot first) and the live count of
every tile. An observer reads its window of counts in a fixed nearest-first order, and
the k-th nearest neighbour is found from the running sum of those counts; the work per
agent is proportional to the view, never to the number of agents.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nmmo_jax.config import LAVA, Config, Params
from nmmo_jax.state import Agents, Observation, State


@struct.dataclass
class GridIndex:
    """Agents by tile.

    Attributes:
      stack: [S, H*W] int32, the s-th lowest live slot on each tile, N where none.
      count: [H*W] int32, live agents on each tile.
      layer: [N] int32, the layer s at which each live agent sits, S if unindexed.
    """

    stack: jnp.ndarray
    count: jnp.ndarray
    layer: jnp.ndarray


def build_index(agents: Agents, cfg: Config) -> GridIndex:
    """Scatters live agents into `max_stack` layers of a tile grid (O(N + H*W) per layer)."""
    n, cells = cfg.n_agents, cfg.map_size * cfg.map_size
    flat = agents.pos[:, 0] * cfg.map_size + agents.pos[:, 1]
    slots = jnp.arange(n, dtype=jnp.int32)
    left = agents.alive
    layer = jnp.full((n,), cfg.max_stack, jnp.int32)
    stack = []
    for s in range(cfg.max_stack):
        head = jnp.full((cells,), n, jnp.int32).at[flat].min(jnp.where(left, slots, n))
        placed = left & (head[flat] == slots)
        layer = jnp.where(placed, s, layer)
        left = left & ~placed
        stack.append(head)
    count = jnp.zeros((cells,), jnp.int32).at[flat].add(agents.alive.astype(jnp.int32))
    return GridIndex(jnp.stack(stack), count, layer)


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

    Slot 0 is the observer; the others follow `view_order`, and agents sharing a tile
    follow their slot order. Dead observers see nothing (all -1).
    """
    n, k, r, side = cfg.n_agents, cfg.n_entities, cfg.view_radius, cfg.map_size
    offsets = view_order(cfg)  # [T, 2] numpy, nearest first
    order = jnp.asarray(offsets)
    count_grid = jnp.pad(jnp.minimum(index.count, cfg.max_stack).reshape(side, side), r)
    cells = agents.pos[:, None, :] + order[None] + r  # [N, T, 2] in padded coordinates
    counts = count_grid[cells[..., 0], cells[..., 1]]  # [N, T] nearest first
    self_seen = index.layer < cfg.max_stack
    counts = counts.at[:, 0].add(-self_seen.astype(jnp.int32))  # others on own tile
    small = order.shape[0] * cfg.max_stack < 2**15
    tile, layer = _rank_to_tile(counts.astype(jnp.int16 if small else jnp.int32), k - 1)
    found = tile < order.shape[0]
    tile = jnp.minimum(tile, order.shape[0] - 1)
    layer = jnp.where((tile == 0) & (layer >= index.layer[:, None]), layer + 1, layer)
    wide = side + 2 * r  # the stack grid padded by the view radius with "nobody" (N)
    stack = jnp.pad(index.stack.reshape(-1, side, side), ((0, 0), (r, r), (r, r)),
                    constant_values=n).reshape(cfg.max_stack, -1)
    step = jnp.asarray(offsets @ np.array([wide, 1], np.int32))  # [T] flat offsets
    centre = (agents.pos[:, 0] + r) * wide + agents.pos[:, 1] + r  # [N]
    others = stack[jnp.clip(layer, 0, cfg.max_stack - 1), centre[:, None] + step[tile]]
    others = jnp.where(found & (others < n), others, -1)
    slots = jnp.arange(n, dtype=jnp.int32)
    ids = jnp.concatenate([slots[:, None], others], axis=1)
    return jnp.where(agents.alive[:, None], ids, -1)


def _agent_table(agents: Agents, params: Params, cfg: Config) -> jnp.ndarray:
    """Each agent's observer-independent features, [N, 9] float32: time_alive/100,
    centred health, food, water, row and col, damage, population, freeze. One row
    gather of this table replaces a gather per feature."""
    def centred(x: jnp.ndarray, top: jnp.ndarray) -> jnp.ndarray:
        top = top.astype(jnp.float32)
        return (x.astype(jnp.float32) - top / 2) / top

    pos = agents.pos.astype(jnp.float32)
    return jnp.stack([
        agents.time_alive.astype(jnp.float32) / 100.0,
        centred(agents.health, params.max_health),
        centred(agents.food, params.max_food),
        centred(agents.water, params.max_water),
        (pos[:, 0] - cfg.map_size / 2) / cfg.map_size,
        (pos[:, 1] - cfg.map_size / 2) / cfg.map_size,
        agents.damage.astype(jnp.float32) / params.max_health.astype(jnp.float32),
        agents.population.astype(jnp.float32),
        agents.freeze.astype(jnp.float32) / jnp.maximum(params.mage_freeze, 1).astype(jnp.float32),
    ], axis=1)


def entity_offsets(agents: Agents, ids: jnp.ndarray) -> jnp.ndarray:
    """(row, col) of each seen agent minus its observer's, [N, K, 2] int32."""
    return agents.pos[jnp.maximum(ids, 0)] - agents.pos[:, None, :]


def entity_features(agents: Agents, ids: jnp.ndarray, offsets: jnp.ndarray, params: Params,
                    cfg: Config) -> jnp.ndarray:
    """The 11 features of the agents `ids` [N, K] as seen by each observer (row i of
    `ids` is observer i; `offsets` from `entity_offsets`), [N, K, 11] float32; zero
    where id < 0."""
    table = _agent_table(agents, params, cfg)  # [N, 9]
    seen = table[jnp.maximum(ids, 0)]  # [N, K, 9]
    delta = offsets.astype(jnp.float32) / max(cfg.view_radius, 1)
    same = jnp.where(seen[..., 7] == table[:, None, 7], 0.5, -0.5)
    feats = jnp.concatenate([seen[..., :6], delta, seen[..., 6:7], same[..., None],
                             seen[..., 8:9]], axis=-1)
    return jnp.where((ids >= 0)[..., None], feats, 0.0)


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
