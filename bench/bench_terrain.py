"""Terrain statistics: maps generated from keys beside the 200 original v1.0 maps.

For each map, the share of the interior taken by each tile type and the share of the
walkable interior (grass, scrub, forest) that can be reached from the spawn ring by
4-connected steps, once through every passable tile (lava included, as SPEC allows)
and once avoiding lava. Prints mean [min, max] over the maps of each set, and the time
to generate a batch of maps on device; asserts nothing.

    python bench/bench_terrain.py              # 64 generated maps
    python bench/bench_terrain.py --maps 256
"""

from __future__ import annotations

import argparse
import platform
import time

import jax
import numpy as np

import nmmo_jax
from nmmo_jax import terrain
from nmmo_jax.config import FOREST, GRASS, LAVA, PASSABLE, SCRUB, STONE, TILE_NAMES, WATER

SHARES = (WATER, GRASS, FOREST, STONE, LAVA)
WALKABLE = (GRASS, SCRUB, FOREST)


def reachable_share(maps: np.ndarray, border: int, through: tuple[int, ...]) -> np.ndarray:
    """Per map, the share of walkable interior tiles reached from the spawn ring by
    4-connected steps over tiles of the types `through`, [B] float."""
    depth = terrain.ring_depth(maps.shape[-1])
    open_ = np.isin(maps, through)
    reached = open_ & (depth == border)
    while True:
        grown = reached.copy()
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown[:, :, 1:] |= reached[:, :, :-1]
        grown[:, :, :-1] |= reached[:, :, 1:]
        grown &= open_
        if np.array_equal(grown, reached):
            break
        reached = grown
    walkable = np.isin(maps, WALKABLE) & (depth > border)
    return (reached & walkable).sum((1, 2)) / walkable.sum((1, 2))


def statistics(maps: np.ndarray, border: int) -> dict[str, np.ndarray]:
    """Per-map interior tile shares and reachable shares, each [B]."""
    inner = maps[:, border + 1:-border - 1, border + 1:-border - 1]
    stats = {TILE_NAMES[t]: (inner == t).mean((1, 2)) for t in SHARES}
    passable = tuple(t for t, ok in enumerate(PASSABLE) if ok)
    stats["reachable (lava passable)"] = reachable_share(maps, border, passable)
    stats["reachable (avoiding lava)"] = reachable_share(maps, border, WALKABLE)
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=64, help="maps generated from keys")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env, params = nmmo_jax.make("chaos")
    cfg = env.cfg
    generate = jax.jit(jax.vmap(lambda k: terrain.generate(k, cfg, params)))
    keys = jax.random.split(jax.random.key(args.seed), args.maps)
    start = time.perf_counter()
    jax.block_until_ready(generate(keys))
    first = time.perf_counter() - start
    start = time.perf_counter()
    generated = np.asarray(jax.block_until_ready(generate(keys)))
    again = time.perf_counter() - start
    print(f"{platform.node()} {jax.devices()[0].device_kind}: {args.maps} maps of "
          f"{cfg.map_size} x {cfg.map_size}, compile + run {first:.2f} s, run {again:.3f} s")

    start = time.perf_counter()
    original = np.stack([terrain.original_map(i) for i in range(len(terrain.ORIGINAL_SEEDS))])
    print(f"{len(original)} original maps on the host (float64): "
          f"{time.perf_counter() - start:.2f} s\n")

    sets = {f"generated ({args.maps})": statistics(generated, cfg.lava_border),
            f"original ({len(original)})": statistics(original, terrain.ORIGINAL_BORDER)}
    print(f"{'interior share':27s}" + "".join(f"{name:>26s}" for name in sets))
    for metric in next(iter(sets.values())):
        cells = [f"{v.mean():.3f} [{v.min():.3f}, {v.max():.3f}]" for v in
                 (stats[metric] for stats in sets.values())]
        print(f"{metric:27s}" + "".join(f"{cell:>26s}" for cell in cells))


if __name__ == "__main__":
    main()
