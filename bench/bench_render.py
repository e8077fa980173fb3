"""Rendering cost: recording a rollout on device, drawing its frames, writing a GIF.

Chaos preset at full size (80 x 80 map, 128 agents, 8 populations) unless told
otherwise. Prints the time to compile and run `record`, to draw every frame on the
reused figure, and to draw and write the GIF; asserts nothing.

    python bench/bench_render.py                       # fighter, 200 ticks
    python bench/bench_render.py --policy forager --ticks 300 --zoom 0
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time

import jax

import nmmo_jax
from nmmo_jax import render
from nmmo_jax.policies import POLICIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default="fighter", choices=sorted(POLICIES))
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--agents", type=int, default=128)
    parser.add_argument("--pops", type=int, default=8)
    parser.add_argument("--zoom", type=int, default=None, help="slot for the zoom panel")
    args = parser.parse_args()

    env = nmmo_jax.Env(nmmo_jax.config("chaos", n_agents=args.agents, n_pops=args.pops))
    policy = POLICIES[args.policy]
    print(f"{platform.node()} {jax.devices()[0].device_kind}, {args.policy}, "
          f"{args.agents} agents, {args.ticks} ticks")

    start = time.perf_counter()
    jax.block_until_ready(render.record(env, policy, jax.random.key(0), None, args.ticks))
    print(f"record, first call (compile + run): {time.perf_counter() - start:6.2f} s")
    start = time.perf_counter()
    trajectory = jax.block_until_ready(
        render.record(env, policy, jax.random.key(1), None, args.ticks))
    print(f"record, compiled:                   {time.perf_counter() - start:6.2f} s")

    start = time.perf_counter()
    frames = sum(1 for _ in render.iter_frames(trajectory, zoom_agent=args.zoom,
                                               progress=False))
    drawn = time.perf_counter() - start
    print(f"draw {frames} frames:                   {drawn:6.2f} s "
          f"({1000 * drawn / frames:.0f} ms/frame)")

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "rollout.gif")
        start = time.perf_counter()
        render.save_gif(trajectory, path, zoom_agent=args.zoom, progress=False)
        written = time.perf_counter() - start
        size = os.path.getsize(path) / 2**20
    print(f"draw + write GIF:                   {written:6.2f} s ({size:.1f} MiB)")
    print(render.summary(trajectory))


if __name__ == "__main__":
    main()
