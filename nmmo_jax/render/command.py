"""The command line: record a baseline policy in one realm and draw it."""

from __future__ import annotations

import argparse

import jax

from nmmo_jax import make
from nmmo_jax.cli import HelpFormatter
from nmmo_jax.config import PRESETS
from nmmo_jax.policies import POLICIES
from nmmo_jax.render.output import iter_frames, write_frames, write_gif
from nmmo_jax.render.recording import record, summary
from nmmo_jax.terrain import load_map


def main(argv: list[str] | None = None, prog: str = "nmmo-render") -> None:
    """Records a rollout, writes it as a GIF and/or PNG frames, and prints a summary."""
    parser = argparse.ArgumentParser(
        prog=prog, formatter_class=HelpFormatter,
        description="Record a baseline policy in one realm and draw it.")
    parser.add_argument("--preset", default="chaos", choices=sorted(PRESETS),
                        help="rule preset: %(choices)s")
    parser.add_argument("--policy", default="forager", choices=sorted(POLICIES),
                        help="baseline policy every agent plays: %(choices)s")
    parser.add_argument("--ticks", type=int, default=300, help="ticks to record")
    parser.add_argument("--seed", type=int, default=0, help="seed of the map and the rollout")
    parser.add_argument("--out", default="rollout.gif", help="GIF path ('' for none)")
    parser.add_argument("--frames", default=None,
                        help="folder for one PNG per recorded state (default: none)")
    parser.add_argument("--fps", type=float, default=10, help="GIF frames per second")
    parser.add_argument("--zoom", type=int, default=None,
                        help="slot to follow in a zoom panel (default: no zoom panel)")
    parser.add_argument("--agents", type=int, default=None,
                        help="agent slots, n_agents (default: the preset's)")
    parser.add_argument("--pops", type=int, default=None,
                        help="populations, n_pops (default: the preset's)")
    parser.add_argument("--map-size", type=int, default=None,
                        help="map side in tiles, lava ring included (default: the preset's)")
    parser.add_argument("--lava-border", type=int, default=None,
                        help="lava ring width in tiles (default: the preset's)")
    parser.add_argument("--map", default="generated", metavar="SPEC",
                        help="'generated' (a new map from --seed), 'original:I' (the v1.0 "
                             "map I, 0-199) or the path of a .npy map")
    args = parser.parse_args(argv)
    if args.ticks < 1:
        parser.error(f"argument --ticks: must be >= 1, got {args.ticks}")
    if not args.fps > 0:
        parser.error(f"argument --fps: must be > 0, got {args.fps}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"argument --seed: must be in [0, 2**32), got {args.seed}")

    sizes = {"n_agents": args.agents, "n_pops": args.pops, "map_size": args.map_size,
             "lava_border": args.lava_border}
    try:
        env, params = make(args.preset, **{k: v for k, v in sizes.items() if v is not None})
    except ValueError as err:
        parser.error(str(err))
    cfg = env.cfg
    if args.zoom is not None and not 0 <= args.zoom < cfg.n_agents:
        parser.error(f"argument --zoom: must be a slot in [0, {cfg.n_agents}), got {args.zoom}")
    try:
        tiles = load_map(args.map, cfg)
    except ValueError as err:
        parser.error(f"argument --map: {err}")
    key = jax.random.key(args.seed)
    # A fixed map: the realm `record` would reset, on that map (same key split).
    realm = None if tiles is None else env.reset(jax.random.split(key)[0], params, tiles)[1]
    trajectory = jax.block_until_ready(
        record(env, POLICIES[args.policy], key, params, args.ticks, realm))
    if args.out or args.frames:
        images = iter_frames(trajectory, zoom_agent=args.zoom)
        if args.frames:
            images = write_frames(images, args.frames)
        if args.out:
            print(f"wrote {write_gif(images, args.out, fps=args.fps)}")
        else:
            for _ in images:
                pass
        if args.frames:
            print(f"wrote {trajectory.ticks + 1} frames to {args.frames}")
    print(summary(trajectory))

