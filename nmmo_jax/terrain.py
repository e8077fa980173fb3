"""Map generation (SPEC §1): the Neural MMO v1.0 terrain, from a PRNG key or as the
original fixed maps; loading and checking of fixed maps.

The terrain is a ridged multi-octave field of OpenSimplex 2-D noise (Kurt Spencer's
algorithm, as the `opensimplex` package implements `noise2`), normalised by its maximum
over the whole map and thresholded into lava, water, grass, forest and stone; the lava
ring and the grass spawn ring are painted over it. The noise is written once, over an
array module `xp`: numpy in float64 reproduces the package (and so the original maps)
bit for bit on the host; jax.numpy in float32 generates maps inside jit, where a random
permutation of the noise's lattice hash and a random offset take the place of the
original's integer seed.

Convention (as in v1.0, whose generator filled `terrain[x, y]`): a tile's row gives the
noise's first coordinate and its column the second.
"""

from __future__ import annotations

import functools
from pathlib import Path
from types import ModuleType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nmmo_jax.config import FOREST, GRASS, LAVA, N_TILE_TYPES, STONE, WATER, Config, Params

# OpenSimplex 2-D constants, exactly as Kurt Spencer's reference gives them.
STRETCH = -0.211324865405187  # (1 / sqrt(2 + 1) - 1) / 2
SQUISH = 0.366025403784439  # (sqrt(2 + 1) - 1) / 2
NORM = 47
# Gradients (x, y), flattened: directions to the vertices of an octagon from its centre.
GRADIENTS = np.array([5, 2, 2, 5, -5, 2, -2, 5, 5, -2, 2, -5, -5, -2, -2, -5], np.int32)
PERM_SIZE = 256

# The v1.0 generator's fixed settings: 200 maps of 80 x 80 from these seeds, noise seed 0.
ORIGINAL_SEEDS = np.linspace(0, 2**32, 200)  # float64
ORIGINAL_NOISE_SEED = 0
ORIGINAL_SIZE = 80
ORIGINAL_BORDER = 9
ORIGINAL_OCTAVES = 8
ORIGINAL_THRESHOLDS = (0.3, 0.57, 0.715)  # water, grass, forest


def permutation(seed: int) -> np.ndarray:
    """The permutation OpenSimplex derives from an integer seed, [256] int64.

    A 64-bit linear congruential generator (wrapping like a signed int64) drives a
    Fisher-Yates draw, as in the `opensimplex` package; Python ints keep it exact.
    """
    def lcg(state: int) -> int:
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        return state - 2**64 if state >= 2**63 else state

    state = int(seed)
    for _ in range(3):
        state = lcg(state)
    source = list(range(PERM_SIZE))
    perm = np.zeros(PERM_SIZE, np.int64)
    for i in range(PERM_SIZE - 1, -1, -1):
        state = lcg(state)
        r = (state + 31) % (i + 1)
        perm[i] = source[r]
        source[r] = source[i]
    return perm


def _vertex(perm: Any, xsb: Any, ysb: Any, dx0: Any, dy0: Any, a: Any, b: Any,
            xp: ModuleType) -> Any:
    """The contribution of lattice vertex (xsb + a, ysb + b) to the noise at a point
    (dx0, dy0) from the cell origin; zero outside the vertex's radius."""
    dx = dx0 - a - (a + b) * SQUISH
    dy = dy0 - b - (a + b) * SQUISH
    attn = 2 - dx * dx - dy * dy
    i = xp.mod(xsb + a, PERM_SIZE).astype(xp.int32)
    j = xp.mod(ysb + b, PERM_SIZE).astype(xp.int32)
    g = perm[(perm[i] + j) & (PERM_SIZE - 1)] & 0x0E
    gradients = xp.asarray(GRADIENTS)
    slope = gradients[g] * dx + gradients[g + 1] * dy
    squared = attn * attn
    return xp.where(attn > 0, squared * squared * slope, 0.0)


def noise2(x: Any, y: Any, perm: Any, xp: ModuleType = jnp) -> Any:
    """OpenSimplex 2-D noise at points (x, y) (broadcast), in [-1, 1].

    `perm` is a [256] permutation of 0..255 (`permutation(seed)` gives the package's).
    Written without branches: each point sums the two vertices every cell shares, the
    vertex its triangle adds and the one extra vertex that can reach it. With `xp` numpy
    and float64 inputs the result equals `opensimplex.OpenSimplex(seed).noise2` bit for
    bit; with jax.numpy it runs under jit and vmap in float32.
    """
    perm = xp.asarray(perm)
    stretch = (x + y) * STRETCH
    xs, ys = x + stretch, y + stretch
    xsb, ysb = xp.floor(xs), xp.floor(ys)
    squish = (xsb + ysb) * SQUISH
    dx0, dy0 = x - (xsb + squish), y - (ysb + squish)
    xins, yins = xs - xsb, ys - ysb
    in_sum = xins + yins

    lower = in_sum <= 1  # in the triangle at (0, 0), else in the one at (1, 1)
    zins = xp.where(lower, 1 - in_sum, 2 - in_sum)
    near = xp.where(lower, (zins > xins) | (zins > yins), (zins < xins) | (zins < yins))
    x_wins = xins > yins
    # The extra vertex, as an offset from the cell origin.
    ext_a = xp.where(lower, xp.where(near, xp.where(x_wins, 1.0, -1.0), 1.0),
                     xp.where(near, xp.where(x_wins, 2.0, 0.0), 0.0))
    ext_b = xp.where(lower, xp.where(near, xp.where(x_wins, -1.0, 1.0), 1.0),
                     xp.where(near, xp.where(x_wins, 0.0, 2.0), 0.0))
    corner = xp.where(lower, 0.0, 1.0)  # the triangle's own vertex: (0, 0) or (1, 1)

    def vertex(a: Any, b: Any) -> Any:
        return _vertex(perm, xsb, ysb, dx0, dy0, a, b, xp)

    value = vertex(1.0, 0.0) + vertex(0.0, 1.0) + vertex(corner, corner)
    return (value + vertex(ext_a, ext_b)) / NORM


def ridged_field(seed: Any, perm: Any, size: int, octaves: int, xp: ModuleType = jnp) -> Any:
    """The ridged noise field of a `size`-wide map, divided by its maximum, [size, size].

    Tile (r, c) samples octave i at `scale * 2^i * (seed + t / size - 0.5)` for t = r and
    t = c, with scale = int(size / 5). The octave's value n = noise / 2 + 0.5 becomes the
    ridge 2 (0.5 - |0.5 - n|); the field is the first ridge plus, for every later octave,
    0.5^i times its ridge times the sum so far. Float64 with numpy reproduces v1.0.
    """
    scale = int(size / 5)
    coords = seed + (xp.arange(size) / size - 0.5)  # [size]

    def ridge(freq: Any) -> Any:
        n = noise2(freq * coords[:, None], freq * coords[None, :], perm, xp) / 2.0 + 0.5
        return 2 * (0.5 - xp.abs(0.5 - n))

    def add_octave(total: Any, octave: tuple[Any, Any]) -> tuple[Any, None]:
        freq, amplitude = octave
        return total + amplitude * ridge(freq) * total, None

    freqs = scale * 2.0 ** xp.arange(octaves)  # exact powers of two
    amplitudes = 0.5 ** xp.arange(octaves)
    total = ridge(freqs[0])
    if xp is jnp:  # one compiled octave, not one per octave
        total, _ = jax.lax.scan(add_octave, total, (freqs[1:], amplitudes[1:]))
    else:
        for octave in zip(freqs[1:], amplitudes[1:], strict=True):
            total, _ = add_octave(total, octave)
    return total / xp.maximum(xp.max(total), np.finfo(np.float32).tiny)


def classify(v: Any, thresholds: tuple[Any, Any, Any], xp: ModuleType = jnp) -> Any:
    """Tile ids from normalised field values, int8 of v's shape: v == 0 lava, then water,
    grass and forest below each of the (water, grass, forest) thresholds, else stone."""
    water, grass, forest = thresholds
    tile = xp.where(v < water, WATER,
           xp.where(v < grass, GRASS,
           xp.where(v < forest, FOREST, STONE)))
    return xp.where(v == 0.0, LAVA, tile).astype(xp.int8)


def ring_depth(size: int) -> np.ndarray:
    """How far each tile lies inside the map edge (0 on the edge), [size, size] int32."""
    edge = np.minimum(np.arange(size), np.arange(size)[::-1])
    return np.minimum(edge[:, None], edge[None, :]).astype(np.int32)


def paint_rings(tiles: Any, border: int, xp: ModuleType = jnp) -> Any:
    """Paints the lava ring (`border` tiles deep) and the grass spawn ring inside it
    over a map, [H, W] int8."""
    depth = ring_depth(tiles.shape[0])
    tiles = xp.where(depth == border, GRASS, tiles)
    return xp.where(depth < border, LAVA, tiles).astype(xp.int8)


def thresholds(params: Params) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """The (water, grass, forest) terrain thresholds of `params`."""
    return params.water_threshold, params.grass_threshold, params.forest_threshold


def random_field(key: jax.Array, cfg: Config) -> jnp.ndarray:
    """The normalised ridged field of a new realm, [H, W] float32 in [0, 1].

    The key draws a random permutation of the noise's lattice hash and a seed offset in
    [0, 1), small enough that float32 keeps the sample coordinates precise.
    """
    perm_key, seed_key = jax.random.split(key)
    perm = jax.random.permutation(perm_key, PERM_SIZE)
    seed = jax.random.uniform(seed_key, ())
    return ridged_field(seed, perm, cfg.map_size, cfg.terrain_octaves, jnp)


def generate(key: jax.Array, cfg: Config, params: Params) -> jnp.ndarray:
    """A new realm map, [H, W] int8: lava ring, grass spawn ring, noise interior."""
    tiles = classify(random_field(key, cfg), thresholds(params))
    return paint_rings(tiles, cfg.lava_border)


@functools.lru_cache(maxsize=len(ORIGINAL_SEEDS), typed=True)
def original_map(i: int) -> np.ndarray:
    """The v1.0 map `i` (0..199), [80, 80] int8, read-only.

    Computed on the host in float64 exactly as the original generator did: seed
    `linspace(0, 2^32, 200)[i]`, noise seed 0, 8 octaves, the default thresholds.
    """
    if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not (
            0 <= i < len(ORIGINAL_SEEDS)):
        raise ValueError(f"original map index must be an int in [0, {len(ORIGINAL_SEEDS)}), "
                         f"got {i!r}")
    field = ridged_field(ORIGINAL_SEEDS[i], permutation(ORIGINAL_NOISE_SEED), ORIGINAL_SIZE,
                         ORIGINAL_OCTAVES, np)
    tiles = paint_rings(classify(field, ORIGINAL_THRESHOLDS, np), ORIGINAL_BORDER, np)
    tiles.flags.writeable = False
    return tiles


def load_map(spec: str, cfg: Config) -> np.ndarray | None:
    """The fixed map a `--map` option names, [H, W] int8, or None for generated maps.

    `spec` is "generated", "original:I" (the v1.0 map I, 0..199; needs an 80 x 80 map
    with a 9-tile lava border) or the path of a .npy file holding an integer map.
    Raises `ValueError` naming the spec when it cannot be used.
    """
    if spec == "generated":
        return None
    if spec.startswith("original:"):
        index = spec.removeprefix("original:")
        if not index.isdigit():
            raise ValueError(f"map {spec!r}: expected 'original:I' with I an integer in "
                             f"[0, {len(ORIGINAL_SEEDS)})")
        if (cfg.map_size, cfg.lava_border) != (ORIGINAL_SIZE, ORIGINAL_BORDER):
            raise ValueError(
                f"map {spec!r}: the original maps are {ORIGINAL_SIZE} x {ORIGINAL_SIZE} with "
                f"a lava border of {ORIGINAL_BORDER}, but the config has map_size "
                f"{cfg.map_size} and lava_border {cfg.lava_border}")
        try:
            return original_map(int(index))
        except ValueError as error:
            raise ValueError(f"map {spec!r}: {error}") from None
    path = Path(spec)
    if path.suffix != ".npy" or not path.is_file():
        raise ValueError(f"map {spec!r}: expected 'generated', 'original:I' (I in "
                         f"[0, {len(ORIGINAL_SEEDS)})) or the path of an existing .npy file")
    try:
        return check_map(np.load(path, allow_pickle=False), cfg)
    except ValueError as error:
        raise ValueError(f"map {spec!r}: {error}") from None


def spawn_ring(cfg: Config) -> np.ndarray:
    """The (row, col) of every spawn-ring tile, [R, 2] int32, clockwise from top-left."""
    lo, hi = cfg.lava_border, cfg.map_size - cfg.lava_border - 1
    side = np.arange(lo, hi)
    top = np.stack([np.full_like(side, lo), side], 1)
    right = np.stack([side, np.full_like(side, hi)], 1)
    bottom = np.stack([np.full_like(side, hi), side[::-1] + 1], 1)
    left = np.stack([side[::-1] + 1, np.full_like(side, lo)], 1)
    return np.concatenate([top, right, bottom, left]).astype(np.int32)


def check_map(tiles: np.ndarray, cfg: Config) -> np.ndarray:
    """Checks a fixed map and returns it as int8; raises `ValueError` if unusable."""
    tiles = np.asarray(tiles)
    if tiles.shape != (cfg.map_size, cfg.map_size):
        raise ValueError(f"map must have shape {(cfg.map_size, cfg.map_size)}, got {tiles.shape}")
    if not np.issubdtype(tiles.dtype, np.integer):
        raise ValueError(f"map must hold integer tile ids, got dtype {tiles.dtype}")
    if tiles.min() < 0 or tiles.max() >= N_TILE_TYPES:
        raise ValueError(f"map tile ids must lie in [0, {N_TILE_TYPES}), "
                         f"got range [{tiles.min()}, {tiles.max()}]")
    return tiles.astype(np.int8)
