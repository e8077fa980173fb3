"""Observations and target masks (SPEC §6), through an exact grid index of agents.

Who stands near whom is answered by a per-tile index built from positions in
O(N + H*W): the live count and the lowest live slot (the head) of every tile, and for
each head a row listing its tile's live slots. An observer crops its window of counts,
marks the tiles where others stand as bits in `view_order` (one product with a
constant matrix of powers of two), and takes its nearest occupied tiles from the bits;
the agents on those tiles are read from the index, lowest slot first. The work per
agent is proportional to the view, never to the number of agents, and the list is
exact however many agents share a tile.

Tie rule of the entity list: agents in view come in `view_order` of their offset from
the observer (Chebyshev distance, then squared Euclidean distance, then row offset,
then column offset), and agents sharing a tile come lowest slot first.

Windows are cropped from maps padded by the view radius on every side, with V rows of
zeros below where the dead look: their windows come out zero with no pass to blank
them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nmmo_jax.config import (
    LAVA,
    N_FEATURES,
    TIME_ALIVE_CENTRE,
    TIME_ALIVE_SCALE,
    Config,
    Feature,
    Params,
)
from nmmo_jax.game import legal_moves
from nmmo_jax.state import Agents, Observation, State

# Bits per word of an observer's occupied-tile bitset: a sum of distinct powers of two
# below 2^24 is exact in float32, the accumulator of the product that packs the bits.
WORD_BITS = 24


@struct.dataclass
class GridIndex:
    """Live agents by tile: per tile its live count and lowest live slot (its head);
    per head, a row of `members` listing its tile's live slots.

    Only the `depth` lowest live slots of a tile are placed: no entity list takes more
    than K - 1 others from one tile, so `depth` = K is enough. The per-tile maps are
    int16 while slots fit (`slot_dtype`), halving the bytes of every pass over them.

    Attributes:
      count: [H*W] int16 (int32 from 2^15 slots), live agents on each tile.
      head: [H*W] same dtype, the lowest live slot on each tile, N where none.
      members: [N, depth] int32, row h holds the live slots of the tile headed by slot h,
        lowest first; N where none.
      rank: [N] int32, each placed agent's column in its tile's row (0 for the head),
        `depth` for the dead and the unplaced.
    """

    count: jnp.ndarray
    head: jnp.ndarray
    members: jnp.ndarray
    rank: jnp.ndarray


def slot_dtype(n_agents: int) -> type:
    """The integer type of the per-tile maps: int16 while it holds 0 .. n_agents."""
    return jnp.int16 if n_agents < 2**15 else jnp.int32


def tile_ranks(flat: jnp.ndarray, alive: jnp.ndarray, cells: int, depth: int
               ) -> jnp.ndarray:
    """Each live agent's rank among the live agents of its tile, lowest slot first, [N]
    int32; `depth` for the dead and for ranks past `depth - 1`.

    Each round scatters the lowest unplaced live slot of every tile into a fresh map
    ([cells]) and places it (O(N + cells) a round). Rounds run until every live agent is
    placed (as many as the deepest stack) or `depth` rounds have run; vmapped, the
    batch runs as many as its deepest realm. The loop carries only [N] arrays: vmapped,
    every carry is selected between old and new values each round, which for a map
    would be a pass over it.
    """
    n = flat.shape[0]
    dtype = slot_dtype(n)
    slots = jnp.arange(n, dtype=dtype)

    def more(carry: tuple) -> jnp.ndarray:
        s, _, left = carry
        return (s < depth) & jnp.any(left)

    def place(carry: tuple) -> tuple:
        s, rank, left = carry
        head = jnp.full((cells,), n, dtype).at[flat].min(jnp.where(left, slots, n).astype(dtype))
        placed = left & (head[flat] == slots)
        return s + 1, jnp.where(placed, s, rank), left & ~placed

    start = (jnp.int32(0), jnp.full((n,), depth, jnp.int32), alive)
    return jax.lax.while_loop(more, place, start)[1]


def build_index(agents: Agents, cfg: Config) -> GridIndex:
    """Groups live agents by tile in O(N + H*W)."""
    n, depth, cells = cfg.n_agents, cfg.n_entities, cfg.map_size * cfg.map_size
    dtype = slot_dtype(n)
    flat = agents.pos[:, 0] * cfg.map_size + agents.pos[:, 1]
    slots = jnp.arange(n, dtype=jnp.int32)
    live = jnp.where(agents.alive, slots, n).astype(dtype)
    head = jnp.full((cells,), n, dtype).at[flat].min(live)
    rank = tile_ranks(flat, agents.alive, cells, depth)
    count = jnp.zeros((cells,), dtype).at[flat].add(agents.alive.astype(dtype))
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


def padded(grid: jnp.ndarray, fill: int, cfg: Config) -> jnp.ndarray:
    """An [H, W] map with `fill` for view_radius tiles around it and V rows of zeros
    below, [H + 2r + V, W + 2r]: what every window is cropped from."""
    r, v = cfg.view_radius, cfg.view_size
    return jnp.pad(jnp.pad(grid, r, constant_values=fill), ((0, v), (0, 0)))


def windows(grid: jnp.ndarray, agents: Agents, cfg: Config) -> jnp.ndarray:
    """The V x V window of a `padded` map around each live agent, [N, V, V]; zeros for
    the dead (the rows below the map)."""
    empty = jnp.array([cfg.map_size + 2 * cfg.view_radius, 0], jnp.int32)
    corner = jnp.where(agents.alive[:, None], agents.pos, empty)
    size = (cfg.view_size, cfg.view_size)
    return jax.vmap(lambda c: jax.lax.dynamic_slice(grid, (c[0], c[1]), size))(corner)


def _bit_weights(cfg: Config) -> np.ndarray:
    """[V*V, B] float32 packing a row-major window into B words of `WORD_BITS` bits: the
    tile at `view_order` position t weighs 2^(t mod WORD_BITS) in word t // WORD_BITS."""
    order, v, r = view_order(cfg), cfg.view_size, cfg.view_radius
    t = np.arange(len(order))
    weights = np.zeros((len(order), -(-len(order) // WORD_BITS)), np.float32)
    weights[(order[:, 0] + r) * v + order[:, 1] + r, t // WORD_BITS] = 2.0 ** (t % WORD_BITS)
    return weights


def occupied_words(counts: jnp.ndarray, alive: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """Bitsets of the window tiles where others stand, [N, B] int32: bit t of the
    concatenated words is the tile at position t of `view_order`.

    `counts` is the [N, V, V] window of live counts; the observer is taken off its own
    tile. The packing is a bfloat16 product summed in float32, exact on any device
    (0 or 1 times powers of two, sums below 2^24).
    """
    n, v, r = counts.shape[0], cfg.view_size, cfg.view_radius
    own = jnp.zeros((v, v), counts.dtype).at[r, r].set(1)
    others = counts - own * alive.astype(counts.dtype)[:, None, None] > 0
    packed = jax.lax.dot(others.reshape(n, v * v).astype(jnp.bfloat16),
                         jnp.asarray(_bit_weights(cfg), jnp.bfloat16),
                         preferred_element_type=jnp.float32)
    return packed.astype(jnp.int32)


def _running_total(x: jnp.ndarray) -> jnp.ndarray:
    """Inclusive prefix sum along axis 1 of small whole numbers ([M, L] int32, sums below
    2^24): a float32 product with a triangular matrix of ones, exact there and faster
    on CPU than a cumsum (a reduce-window)."""
    upto = np.triu(np.ones((x.shape[1], x.shape[1]), np.float32))  # [i, j]: i <= j
    return jnp.dot(x.astype(jnp.float32), upto).astype(jnp.int32)


def _nth_set_bit(word: jnp.ndarray, nth: jnp.ndarray) -> jnp.ndarray:
    """Position of the `nth` (0-based) set bit of each `word` (< 2^WORD_BITS), by binary
    search with population counts."""
    position = jnp.zeros_like(nth)
    for width in (16, 8, 4, 2, 1):
        low = jax.lax.population_count(word & ((1 << width) - 1))
        skip = nth >= low
        nth = jnp.where(skip, nth - low, nth)
        word = jnp.where(skip, word >> width, word)
        position = position + jnp.where(skip, width, 0)
    return position


def nearest_tiles(words: jnp.ndarray, count: int) -> jnp.ndarray:
    """The `view_order` positions of each observer's first `count` occupied tiles, from
    its bitset words ([N, B] int32), [N, count] int32; B * WORD_BITS where fewer are."""
    b = words.shape[1]
    ends = _running_total(jax.lax.population_count(words))  # [N, B] tiles up to word b
    j = jnp.arange(count, dtype=jnp.int32)[None, :, None]
    passed = ends[:, None, :] <= j  # [N, count, B]: word b ends before the j-th tile
    word_of = jnp.sum(passed, axis=2, dtype=jnp.int32)
    before = jnp.max(jnp.where(passed, ends[:, None, :], 0), axis=2)
    word = jnp.sum(jnp.where(word_of[..., None] == jnp.arange(b), words[:, None, :], 0), axis=2)
    bit = _nth_set_bit(word, j[..., 0] - before)
    return jnp.where(word_of < b, word_of * WORD_BITS + bit, b * WORD_BITS)


def nearest_entities(agents: Agents, index: GridIndex, counts: jnp.ndarray, cfg: Config
                     ) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The K nearest live agents in each observer's view, [N, K] int32 (-1 where empty),
    and their offsets from the observer, [N, K, 2] int32 (0 where empty).

    Slot 0 is the observer; the others follow the module's tie rule. `counts` is the
    [N, V, V] window of live counts. Dead observers see nothing (all -1). The first
    K - 1 occupied tiles hold the first K - 1 agents; each gives up to K - 1 of its
    agents, lowest slot first, to the ranks that fall on it.
    """
    n, k = cfg.n_agents, cfg.n_entities
    alive = agents.alive
    order = view_order(cfg)
    t = len(order)
    offset = jnp.asarray(np.concatenate([order, np.zeros((1, 2), np.int32)]))  # [T + 1, 2]
    tiles = jnp.minimum(nearest_tiles(occupied_words(counts, alive, cfg), k - 1), t)  # [N, J]
    side = jnp.array([cfg.map_size, 1])
    cell = (agents.pos @ side)[:, None] + offset[tiles] @ side
    others = index.count[cell] - (tiles == 0) * alive[:, None]  # the observer is no other
    taken = jnp.where(tiles < t, jnp.minimum(others, k - 1), 0)  # [N, J] agents per tile
    ends = _running_total(taken)
    q = jnp.arange(k - 1, dtype=jnp.int32)[None, :, None]
    passed = ends[:, None, :] <= q  # [N, Q, J]: tile j ends before the q-th agent
    tile_of = jnp.sum(passed, axis=2, dtype=jnp.int32)  # [N, Q], J when fewer agents
    layer = q[..., 0] - jnp.sum(jnp.where(passed, taken[:, None, :], 0), axis=2)
    listed = alive[:, None] & (tile_of < k - 1)
    tile_of = jnp.minimum(tile_of, k - 2)
    head = jnp.take_along_axis(index.head[cell], tile_of, axis=1).astype(jnp.int32)
    at = jnp.take_along_axis(offset[tiles], tile_of[..., None], axis=1)  # [N, Q, 2]
    own_tile = (at[..., 0] == 0) & (at[..., 1] == 0)
    layer = jnp.where(own_tile & (layer >= index.rank[:, None]), layer + 1, layer)
    found = index.members[jnp.minimum(head, n - 1), jnp.minimum(layer, k - 1)]
    self = jnp.where(alive, jnp.arange(n, dtype=jnp.int32), -1)[:, None]
    ids = jnp.concatenate([self, jnp.where(listed, found, -1)], axis=1)
    offsets = jnp.where(listed[..., None], at, 0)
    return ids, jnp.concatenate([jnp.zeros((n, 1, 2), jnp.int32), offsets], axis=1)


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


def _unit(feature: Feature) -> jnp.ndarray:
    """The [F] one-hot vector of a feature's column."""
    return jnp.asarray(np.eye(N_FEATURES, dtype=np.float32)[feature])


def entity_features(table: jnp.ndarray, agents: Agents, ids: jnp.ndarray,
                    offsets: jnp.ndarray, cfg: Config) -> jnp.ndarray:
    """The `Feature`s of the agents `ids` [N, K] as seen by each observer (row i of `ids`
    is observer i; `offsets` [N, K, 2] from `nearest_entities`; `table` from
    `_agent_table`), [N, K, F] float32; zero where id < 0. The observer-dependent
    columns are added to the gathered rows of `table`, which hold 0 there."""
    seen = jnp.maximum(ids, 0)
    delta = offsets.astype(jnp.float32) / max(cfg.view_radius, 1)
    kin = jnp.where(agents.population[seen] == agents.population[:, None], 0.5, -0.5)
    rows = (table[seen] + delta[..., :1] * _unit(Feature.ROW_OFFSET)
            + delta[..., 1:] * _unit(Feature.COL_OFFSET) + kin[..., None] * _unit(Feature.SAME_POP))
    return jnp.where((ids >= 0)[..., None], rows, 0.0)


def target_mask(ids: jnp.ndarray, offsets: jnp.ndarray, params: Params) -> jnp.ndarray:
    """Which entity slots each style can hit, [N, 3, K] bool; slot 0 (no-op) always True."""
    distance = jnp.max(jnp.abs(offsets), axis=-1)  # Chebyshev, [N, K]
    reach = (ids >= 0)[:, None, :] & (distance[:, None, :] <= params.ranges[None, :, None])
    return reach | (jnp.arange(ids.shape[1]) == 0)


def observe(state: State, params: Params, cfg: Config) -> tuple[Observation, jnp.ndarray]:
    """The observation of every slot and the entity ids behind it ([N, K] int32)."""
    agents = state.agents
    index = build_index(agents, cfg)
    side = cfg.map_size
    shown = jnp.minimum(index.count, 127).astype(jnp.int8).reshape(side, side)  # saturated
    counts = windows(padded(shown, 0, cfg), agents, cfg)
    ids, offsets = nearest_entities(agents, index, counts, cfg)
    table = _agent_table(agents, params, cfg)
    own = jnp.where(agents.alive[:, None], table + 0.5 * _unit(Feature.SAME_POP), 0.0)
    obs = Observation(
        tiles=windows(padded(state.tiles, LAVA, cfg), agents, cfg),
        counts=counts,
        own=own,
        entities=entity_features(table, agents, ids, offsets, cfg),
        entity_mask=ids >= 0,
        target_mask=target_mask(ids, offsets, params),
        move_mask=legal_moves(agents, state.tiles, cfg),
        alive=agents.alive,
        population=agents.population,
    )
    return obs, ids
