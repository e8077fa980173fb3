"""Map generation (SPEC §1): the rings, the tile mix, connectivity, keys and fixed maps."""

from collections import deque

import jax
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax import terrain
from nmmo_jax.config import FOREST, GRASS, LAVA, ORE, SCRUB, STONE, WATER

N_MAPS = 8


@pytest.fixture(scope="module")
def full_cfg() -> nmmo_jax.Config:
    """The reference 80 x 80 realm, whose terrain scale the thresholds were made for."""
    return nmmo_jax.config("chaos")


@pytest.fixture(scope="module")
def generate(full_cfg):
    """(key, params) -> (map, noise field v of the interior), jitted."""
    return jax.jit(lambda k, p: (terrain.generate(k, full_cfg, p),
                                 terrain.ridged_field(k, full_cfg)))


@pytest.fixture(scope="module")
def generate_many(full_cfg):
    """(keys, params) -> maps, one per key, vmapped and jitted."""
    return jax.jit(jax.vmap(lambda k, p: terrain.generate(k, full_cfg, p), (0, None)))


@pytest.fixture(scope="module")
def maps(generate_many, full_cfg) -> np.ndarray:
    """N_MAPS generated realms, [B, 80, 80]."""
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    return np.asarray(generate_many(keys, full_cfg.params))


def interior(tiles: np.ndarray, cfg: nmmo_jax.Config) -> np.ndarray:
    first = cfg.lava_border + 1
    return tiles[..., first:first + cfg.interior, first:first + cfg.interior]


def largest_component_share(walkable: np.ndarray) -> float:
    """Share of the walkable tiles in the largest 4-connected component (BFS)."""
    seen = np.zeros_like(walkable)
    largest = 0
    rows, cols = walkable.shape
    for start in zip(*np.nonzero(walkable)):
        if seen[start]:
            continue
        seen[start] = True
        queue, size = deque([start]), 0
        while queue:
            r, c = queue.popleft()
            size += 1
            for nr, nc in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
                if 0 <= nr < rows and 0 <= nc < cols and walkable[nr, nc] and not seen[nr, nc]:
                    seen[nr, nc] = True
                    queue.append((nr, nc))
        largest = max(largest, size)
    return largest / walkable.sum()


def test_lava_ring_surrounds_the_grass_spawn_ring(maps, full_cfg):
    border, side = full_cfg.lava_border, full_cfg.map_size
    ring = np.zeros((side, side), bool)
    ring[border:side - border, border:side - border] = True
    ring[border + 1:side - border - 1, border + 1:side - border - 1] = False
    outside = np.ones((side, side), bool)
    outside[border:side - border, border:side - border] = False
    for tiles in maps:
        assert np.all(tiles[outside] == LAVA)
        assert np.all(tiles[ring] == GRASS)


def test_spawn_ring_lists_every_ring_tile_once(full_cfg):
    ring = terrain.spawn_ring(full_cfg)
    lo, hi = full_cfg.lava_border, full_cfg.map_size - full_cfg.lava_border - 1
    assert ring.shape == (4 * (hi - lo), 2)
    assert len({tuple(p) for p in ring}) == len(ring)
    on_ring = (np.isin(ring[:, 0], (lo, hi)) | np.isin(ring[:, 1], (lo, hi)))
    assert on_ring.all() and ring.min() == lo and ring.max() == hi


def test_interior_holds_generated_tiles_only(maps, full_cfg):
    inner = interior(maps, full_cfg)
    assert set(np.unique(inner)) <= {LAVA, WATER, GRASS, FOREST, STONE}
    assert not np.isin(inner, (SCRUB, ORE)).any()


def test_interior_lava_only_where_the_noise_is_zero(generate, full_cfg):
    # SPEC §1: v == 0 -> lava; the rest is thresholded into water/grass/forest/stone.
    tiles, v = (np.asarray(x) for x in generate(jax.random.key(3), full_cfg.params))
    inner = interior(tiles, full_cfg)
    assert np.array_equal(inner == LAVA, v == 0.0)
    assert np.all(inner[(v > 0) & (v < 0.3)] == WATER)
    assert np.all(inner[(v >= 0.3) & (v < 0.57)] == GRASS)
    assert np.all(inner[(v >= 0.57) & (v < 0.715)] == FOREST)
    assert np.all(inner[v >= 0.715] == STONE)
    assert 0.0 <= v.min() and v.max() == pytest.approx(1.0)


def test_tile_shares_are_in_sane_bands(maps, full_cfg):
    inner = interior(maps, full_cfg)
    share = {t: float(np.mean(inner == t)) for t in (LAVA, WATER, GRASS, FOREST, STONE)}
    assert 0.05 < share[WATER] < 0.35
    assert 0.20 < share[GRASS] < 0.60
    assert 0.10 < share[FOREST] < 0.40
    assert 0.05 < share[STONE] < 0.35
    assert share[LAVA] < 0.05
    for tiles in inner:  # every map has every resource
        assert all(np.mean(tiles == t) > 0.02 for t in (WATER, GRASS, FOREST, STONE))


def test_walkable_land_is_mostly_one_region(maps):
    walkable = np.isin(maps, (GRASS, SCRUB, FOREST))
    shares = [largest_component_share(w) for w in walkable]
    assert min(shares) > 0.85
    assert np.mean(shares) > 0.93


def test_same_key_same_map_different_keys_different_maps(generate, full_cfg):
    make = lambda k: np.asarray(generate(k, full_cfg.params)[0])  # noqa: E731
    first = make(jax.random.key(7))
    assert np.array_equal(first, make(jax.random.key(7)))
    assert np.mean(first != make(jax.random.key(8))) > 0.2


def test_generation_vmaps_like_single_calls(maps, generate, full_cfg):
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    for i in (0, N_MAPS - 1):
        single = np.asarray(generate(keys[i], full_cfg.params)[0])
        assert np.array_equal(maps[i], single)
    assert len({m.tobytes() for m in maps}) == N_MAPS


def test_thresholds_are_params(full_cfg, generate_many):
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    dry = full_cfg.params.replace(water_threshold=full_cfg.params.water_threshold * 0)
    tiles = np.asarray(generate_many(keys, dry))
    assert not (interior(tiles, full_cfg) == WATER).any()
    assert (interior(tiles, full_cfg) == GRASS).mean() > 0.4


def test_reset_uses_a_fixed_map_as_given(small_env, key):
    cfg = small_env.cfg
    side, border = cfg.map_size, cfg.lava_border
    tiles = np.full((side, side), LAVA, np.int8)
    tiles[border:side - border, border:side - border] = GRASS
    tiles[10:14, 10:14] = WATER
    tiles[18, 5:25] = STONE
    tiles[20:23, 20:23] = FOREST
    _, state = small_env.reset(key, small_env.default_params, tiles)
    assert np.array_equal(np.asarray(state.tiles), tiles)
    assert np.array_equal(np.asarray(state.terrain), tiles)
    assert np.array_equal(np.asarray(state.capacity), (tiles == FOREST).astype(np.int8))
    spawned = np.asarray(state.agents.pos)[np.asarray(state.agents.alive)]
    ring = {tuple(p) for p in terrain.spawn_ring(cfg)}
    assert len(spawned) == 1 and tuple(spawned[0]) in ring


@pytest.mark.parametrize("bad, message", [
    (np.full((31, 32), GRASS), "shape"),
    (np.full((32,), GRASS), "shape"),
    (np.full((32, 32), 2.0), "integer"),
    (np.full((32, 32), 7), r"\[0, 7\)"),
    (np.full((32, 32), -1), r"\[0, 7\)"),
])
def test_check_map_rejects_bad_maps(small_cfg, bad, message):
    with pytest.raises(ValueError, match=message):
        terrain.check_map(bad, small_cfg)


def test_check_map_returns_int8(small_cfg):
    tiles = terrain.check_map(np.full((32, 32), GRASS, np.int64), small_cfg)
    assert tiles.dtype == np.int8
