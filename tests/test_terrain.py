"""Map generation (SPEC §1): the noise, the original v1.0 maps, the rings, the tile mix,
connectivity, keys, and fixed maps."""

from collections import deque

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from opensimplex import OpenSimplex

import nmmo_jax
from nmmo_jax import terrain
from nmmo_jax.config import FOREST, GRASS, LAVA, ORE, SCRUB, STONE, WATER

N_MAPS = 8
NOISE_SEEDS = (0, 3, 2**40 + 7, -5)
noise2_jit = jax.jit(terrain.noise2)  # compiled once, the permutation is an argument


@pytest.fixture(scope="module")
def full_cfg() -> nmmo_jax.Config:
    """The reference 80 x 80 realm, whose terrain scale the thresholds were made for."""
    return nmmo_jax.config("chaos")


@pytest.fixture(scope="module")
def full_params() -> nmmo_jax.Params:
    """The Chaos rule numbers, thresholds included."""
    return nmmo_jax.params("chaos")


@pytest.fixture(scope="module")
def generate(full_cfg):
    """(key, params) -> (map, normalised noise field of the whole map), jitted."""
    return jax.jit(lambda k, p: (terrain.generate(k, full_cfg, p),
                                 terrain.random_field(k, full_cfg)))


@pytest.fixture(scope="module")
def generate_many(full_cfg):
    """(keys, params) -> maps, one per key, vmapped and jitted."""
    return jax.jit(jax.vmap(lambda k, p: terrain.generate(k, full_cfg, p), (0, None)))


@pytest.fixture(scope="module")
def maps(generate_many, full_params) -> np.ndarray:
    """N_MAPS generated realms, [B, 80, 80]."""
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    return np.asarray(generate_many(keys, full_params))


def interior(tiles: np.ndarray, cfg: nmmo_jax.Config) -> np.ndarray:
    first = cfg.lava_border + 1
    return tiles[..., first:first + cfg.interior, first:first + cfg.interior]


def largest_component_share(walkable: np.ndarray) -> float:
    """Share of the walkable tiles in the largest 4-connected component (BFS)."""
    seen = np.zeros_like(walkable)
    largest = 0
    rows, cols = walkable.shape
    for start in zip(*np.nonzero(walkable), strict=True):
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


def v1_map(seed: float) -> np.ndarray:
    """The v1.0 generator, tile by tile: ridged OpenSimplex octaves of the package's
    default-seed noise, normalised by the map's maximum, then the tile rules."""
    size, border, scale = 80, 9, 16
    noise = OpenSimplex(0).noise2
    field = np.zeros((size, size))
    for x in range(size):
        for y in range(size):
            nx, ny = seed + (x / size - 0.5), seed + (y / size - 0.5)
            octaves = []
            for i in range(8):
                n = noise(scale * 2**i * nx, scale * 2**i * ny) / 2.0 + 0.5
                v = 0.5**i * (2 * (0.5 - abs(0.5 - n)))
                if i > 0:
                    v *= sum(octaves)
                octaves.append(v)
            field[x, y] = sum(octaves)
    field /= field.max()
    tiles = np.zeros((size, size), np.int8)
    for r in range(size):
        for c in range(size):
            depth = min(r, c, size - 1 - r, size - 1 - c)
            v = field[r, c]
            if depth < border:
                tiles[r, c] = LAVA
            elif depth == border:
                tiles[r, c] = GRASS
            elif v == 0:
                tiles[r, c] = LAVA
            elif v < 0.3:
                tiles[r, c] = WATER
            elif v < 0.57:
                tiles[r, c] = GRASS
            elif v < 0.715:
                tiles[r, c] = FOREST
            else:
                tiles[r, c] = STONE
    return tiles


@pytest.mark.parametrize("seed", NOISE_SEEDS)
def test_noise_equals_opensimplex_in_float64(seed):
    points = np.random.default_rng(seed % 97).uniform(-1e6, 1e6, (2000, 2))
    points[:1000] /= 1e5  # near the origin too
    noise = OpenSimplex(seed).noise2
    expected = [noise(x, y) for x, y in points]
    got = terrain.noise2(points[:, 0], points[:, 1], terrain.permutation(seed), np)
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("seed", NOISE_SEEDS)
def test_noise_matches_opensimplex_in_float32_under_jit(seed):
    points = np.random.default_rng(seed % 89).uniform(-16, 16, (3000, 2)).astype(np.float32)
    noise = OpenSimplex(seed).noise2
    expected = [noise(float(x), float(y)) for x, y in points]
    got = noise2_jit(points[:, 0], points[:, 1], terrain.permutation(seed))
    assert got.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("index", [0, 17, 199])
def test_original_map_is_the_v1_generator_tile_for_tile(index):
    tiles = terrain.original_map(index)
    assert tiles.shape == (80, 80) and tiles.dtype == np.int8
    np.testing.assert_array_equal(tiles, v1_map(np.linspace(0, 2**32, 200)[index]))


def test_original_maps_differ_and_are_cached_read_only():
    first = terrain.original_map(5)
    assert terrain.original_map(5) is first
    assert not first.flags.writeable
    assert np.mean(first != terrain.original_map(6)) > 0.2


@pytest.mark.parametrize("index", [-1, 200, 1.0, True, "3"])
def test_original_map_rejects_bad_indices(index):
    with pytest.raises(ValueError, match=r"original map index .*\[0, 200\)"):
        terrain.original_map(index)


def test_field_in_float32_follows_the_float64_formula():
    field = jax.jit(terrain.ridged_field, static_argnums=(2, 3))
    for seed, noise_seed in ((0.0, 0), (0.0, 2), (0.5, 1), (0.73, 11)):
        perm = terrain.permutation(noise_seed)
        exact = terrain.ridged_field(seed, perm, 80, 8, np)
        approx = np.asarray(field(jnp.float32(seed), perm, 80, 8))
        np.testing.assert_allclose(approx, exact, rtol=0, atol=1e-4)


def test_field_is_normalised_over_the_whole_map(generate, full_cfg, full_params):
    # SPEC §1: the field is divided by its maximum over all H x W tiles, and the interior
    # is classified from that field.
    thresholds = tuple(np.asarray(t) for t in terrain.thresholds(full_params))
    peaks_outside = 0
    for seed in range(3, 7):
        tiles, v = (np.asarray(x) for x in generate(jax.random.key(seed), full_params))
        assert v.shape == (full_cfg.map_size, full_cfg.map_size)
        assert v.max() == 1.0 and v.min() >= 0.0
        peaks_outside += interior(v, full_cfg).max() < 1.0
        np.testing.assert_array_equal(interior(tiles, full_cfg),
                                      terrain.classify(interior(v, full_cfg), thresholds, np))
    assert peaks_outside > 0


def test_lava_ring_surrounds_the_grass_spawn_ring(maps, full_cfg):
    border, side = full_cfg.lava_border, full_cfg.map_size
    ring = np.zeros((side, side), bool)
    ring[border:side - border, border:side - border] = True
    ring[border + 1:side - border - 1, border + 1:side - border - 1] = False
    outside = np.ones((side, side), bool)
    outside[border:side - border, border:side - border] = False
    for tiles in [*maps, terrain.original_map(0)]:
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


def test_classify_follows_the_thresholds_and_zero_is_lava():
    v = np.array([0.0, 1e-9, 0.2999, 0.3, 0.5699, 0.57, 0.7149, 0.715, 1.0])
    np.testing.assert_array_equal(
        terrain.classify(v, terrain.ORIGINAL_THRESHOLDS, np),
        [LAVA, WATER, WATER, GRASS, GRASS, FOREST, FOREST, STONE, STONE])


def test_tile_shares_match_the_original_maps(maps, full_cfg):
    # Bands hold the generated and the 200 original maps (bench/bench_terrain.py).
    originals = np.stack([terrain.original_map(i) for i in range(0, 200, 10)])
    for tiles in (interior(maps, full_cfg), interior(originals, full_cfg)):
        share = {t: float(np.mean(tiles == t)) for t in (LAVA, WATER, GRASS, FOREST, STONE)}
        assert 0.05 < share[WATER] < 0.11
        assert 0.40 < share[GRASS] < 0.50
        assert 0.26 < share[FOREST] < 0.32
        assert 0.15 < share[STONE] < 0.23
        assert share[LAVA] < 0.01
        for one in tiles:  # every map has every resource
            assert all(np.mean(one == t) > 0.03 for t in (WATER, GRASS, FOREST, STONE))


def test_walkable_land_is_mostly_one_region(maps):
    walkable = np.isin(maps, (GRASS, SCRUB, FOREST))
    shares = [largest_component_share(w) for w in walkable]
    assert min(shares) > 0.85
    assert np.mean(shares) > 0.95


def test_same_key_same_map_different_keys_different_maps(generate, full_params):
    make = lambda k: np.asarray(generate(k, full_params)[0])  # noqa: E731
    first = make(jax.random.key(7))
    assert np.array_equal(first, make(jax.random.key(7)))
    assert np.mean(first != make(jax.random.key(8))) > 0.2


def test_generation_vmaps_like_single_calls(maps, generate, full_params):
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    for i in (0, N_MAPS - 1):
        single = np.asarray(generate(keys[i], full_params)[0])
        assert np.array_equal(maps[i], single)
    assert len({m.tobytes() for m in maps}) == N_MAPS


def test_thresholds_are_params(full_cfg, full_params, generate_many):
    keys = jax.random.split(jax.random.key(0), N_MAPS)
    dry = full_params.replace(water_threshold=full_params.water_threshold * 0)
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


def test_load_map_names_generated_original_and_files(full_cfg, small_cfg, tmp_path):
    assert terrain.load_map("generated", full_cfg) is None
    np.testing.assert_array_equal(terrain.load_map("original:17", full_cfg),
                                  terrain.original_map(17))
    path = tmp_path / "realm.npy"
    np.save(path, np.full((32, 32), GRASS, np.int64))
    tiles = terrain.load_map(str(path), small_cfg)
    assert tiles.dtype == np.int8 and np.all(tiles == GRASS)


@pytest.mark.parametrize("spec, message", [
    ("original:200", r"'original:200'.*\[0, 200\)"),
    ("original:-1", r"'original:-1'.*integer in \[0, 200\)"),
    ("original:", r"'original:'.*integer"),
    ("nowhere.npy", r"'nowhere.npy'.*'generated', 'original:I'.*\.npy"),
    ("Generated", r"'Generated'.*'generated'"),
])
def test_load_map_rejects_bad_specs(full_cfg, spec, message):
    with pytest.raises(ValueError, match=message):
        terrain.load_map(spec, full_cfg)


def test_load_map_refuses_original_maps_for_other_shapes(small_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"'original:3'.*80 x 80.*lava border of 9"):
        terrain.load_map("original:3", small_cfg)
    path = tmp_path / "wrong.npy"
    np.save(path, np.full((80, 80), GRASS, np.int8))
    with pytest.raises(ValueError, match=r"wrong.npy.*shape \(32, 32\)"):
        terrain.load_map(str(path), small_cfg)
