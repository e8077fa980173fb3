"""Map generation from a PRNG key (SPEC §1), and checking of fixed maps.

The interior is a ridged multi-octave gradient-noise field thresholded into water,
grass, forest and stone; around it lie the grass spawn ring and the lava border.
Gradients come from an integer hash of the lattice point, so every octave costs the
same whatever its frequency and nothing map-sized is drawn from the key.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from nmmo_jax.config import FOREST, GRASS, LAVA, N_TILE_TYPES, STONE, WATER, Config, Params


def _hash(ix: jnp.ndarray, iy: jnp.ndarray, seed: jnp.ndarray) -> jnp.ndarray:
    """A well-mixed uint32 from integer lattice coordinates and a seed."""
    h = ix.astype(jnp.uint32) * jnp.uint32(0x8DA6B343)
    h = h ^ (iy.astype(jnp.uint32) * jnp.uint32(0xD8163841)) ^ seed
    h = (h ^ (h >> 16)) * jnp.uint32(0x7FEB352D)
    h = (h ^ (h >> 15)) * jnp.uint32(0x846CA68B)
    return h ^ (h >> 16)


# Perlin noise rarely leaves [-0.5, 0.5]; a tanh with this gain spreads it like the
# simplex noise of the original generator, without reaching the ends (where the ridge is
# exactly 0, the value that SPEC reserves for lava).
NOISE_GAIN = 1.75


def gradient_noise(x: jnp.ndarray, y: jnp.ndarray, seed: jnp.ndarray) -> jnp.ndarray:
    """2-D Perlin gradient noise at points (x, y), spread over (0, 1)."""
    x0, y0 = jnp.floor(x), jnp.floor(y)
    fx, fy = x - x0, y - y0
    ix, iy = x0.astype(jnp.int32), y0.astype(jnp.int32)

    def corner(dx: int, dy: int) -> jnp.ndarray:
        angle = _hash(ix + dx, iy + dy, seed).astype(jnp.float32) * (2 * math.pi / 2**32)
        return jnp.cos(angle) * (fx - dx) + jnp.sin(angle) * (fy - dy)

    def fade(t: jnp.ndarray) -> jnp.ndarray:
        return t * t * t * (t * (t * 6 - 15) + 10)

    u, v = fade(fx), fade(fy)
    bottom = corner(0, 0) + u * (corner(1, 0) - corner(0, 0))
    top = corner(0, 1) + u * (corner(1, 1) - corner(0, 1))
    n = jnp.tanh((bottom + v * (top - bottom)) * (math.sqrt(2.0) * NOISE_GAIN))
    return (n + 1.0) * 0.5


def ridged_field(key: jax.Array, cfg: Config) -> jnp.ndarray:
    """The normalised ridged noise value v in [0, 1] over the interior, [I, I] float32."""
    seed_key, offset_key = jax.random.split(key)
    seed = jax.random.bits(seed_key, (), jnp.uint32)
    offset = jax.random.uniform(offset_key, (2,), minval=0.0, maxval=1024.0)
    first = cfg.lava_border + 1
    coords = (jnp.arange(first, first + cfg.interior, dtype=jnp.float32) / cfg.map_size) - 0.5
    rows, cols = jnp.meshgrid(coords, coords, indexing="ij")
    scale = cfg.map_size / 5.0
    total = jnp.zeros_like(rows)
    for octave in range(cfg.terrain_octaves):
        freq = scale * 2.0**octave
        n = gradient_noise(rows * freq + offset[0], cols * freq + offset[1],
                           seed + jnp.uint32(octave * 0x9E3779B9 % 2**32))
        ridge = 2.0 * (0.5 - jnp.abs(0.5 - n))
        total = ridge if octave == 0 else total + 0.5**octave * ridge * total
    return total / jnp.maximum(jnp.max(total), 1e-12)


def classify(v: jnp.ndarray, params: Params) -> jnp.ndarray:
    """Tile ids from noise values with SPEC's thresholds, int8 of v's shape."""
    tile = jnp.where(v < params.water_threshold, WATER,
           jnp.where(v < params.grass_threshold, GRASS,
           jnp.where(v < params.forest_threshold, FOREST, STONE)))
    return jnp.where(v == 0.0, LAVA, tile).astype(jnp.int8)


def generate(key: jax.Array, cfg: Config, params: Params) -> jnp.ndarray:
    """A new realm map, [H, W] int8: lava ring, grass spawn ring, noise interior."""
    interior = classify(ridged_field(key, cfg), params)
    ring = cfg.lava_border
    tiles = jnp.full((cfg.map_size, cfg.map_size), LAVA, jnp.int8)
    tiles = tiles.at[ring:cfg.map_size - ring, ring:cfg.map_size - ring].set(GRASS)
    return tiles.at[ring + 1:ring + 1 + cfg.interior, ring + 1:ring + 1 + cfg.interior].set(interior)


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
