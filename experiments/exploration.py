"""Exploration grows with the number of agents (the paper's Figure 6), measured.

Populations are trained in Chaos realms of 1, 8, 32 and 128 agent slots (the same map
size, the same budget of live agent-steps, --seeds seeds each); then each seed's trained
populations play --eval-realms fresh realms for --ticks ticks (the same maps for every
size) and their exploration is measured:

- coverage: the share of the walkable tiles (passable and not lava: grass and forest)
  that any agent stood on during the run;
- tiles per lifetime: the distinct tiles an agent stood on in its life, over the agents
  that died during the run (an agent still alive at the end has an unfinished life).

The populations every run starts from (untrained) are measured the same way, as the
reference of what the number of bodies alone explores. Intervals are 95% t intervals
over seeds. Writes exploration_maps.png (the tiles visited in one realm per size, the
same map), exploration_coverage.png (both measures against agents), exploration.json,
and prints a verdict line.

    python experiments/exploration.py       # about 11 minutes on the 2-core CPU
    python experiments/exploration.py --steps 2e7 --slots 8192 --eval-realms 32  # a GPU
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the `experiments` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from experiments import common
from nmmo_jax.policies import WALKABLE
from nmmo_jax.render import plot_value_map
from train.ppo import TrainConfig

NAME = "exploration"


def life_tiles(track: common.Track) -> np.ndarray:
    """Distinct tiles each agent that died during the run stood on, [L] int64."""
    tile = track.tile.astype(np.int64)  # [T+1, R, N]
    life = np.cumsum(track.newborn, axis=0)  # [T+1, R, N], lives begun in the slot so far
    cells, lives = int(tile.max()) + 1, int(life.max()) + 1
    slot = np.arange(life[0].size).reshape(life.shape[1:])  # [R, N]
    who = slot * lives + life  # [T+1, R, N], one id per (realm, slot, life)
    visited = np.unique(who[track.alive] * cells + tile[track.alive])  # (life, tile) pairs
    ids, counts = np.unique(visited // cells, return_counts=True)
    return counts[np.searchsorted(ids, who[:-1][track.died])]


def explored(measured: common.Measurement) -> dict[str, float]:
    """Coverage (mean over realms), tiles per lifetime and mean lifetime of one run."""
    walkable = WALKABLE[measured.terrain]  # [R, H, W]
    visited = (measured.visits.sum(1) > 0) & walkable
    tiles = life_tiles(measured.track)
    return {"coverage": float(np.mean(visited.sum((1, 2)) / walkable.sum((1, 2)))),
            "tiles_per_life": float(tiles.mean()) if tiles.size else float("nan"),
            "lifetime": float(measured.lifetime.sum() / max(measured.deaths.sum(), 1))}


def size(agents: int, args: argparse.Namespace, base: TrainConfig, out: Path
         ) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Trains and measures one size over every seed; returns its row of the JSON and
    the visits ([H, W], all populations) and terrain of seed 0's first realm."""
    config = common.setting(base, agents, args.pops, args.slots)
    training, trained, fresh, shown = [], [], [], []
    for seed in range(args.seeds):
        run = common.train(config, seed, args.steps, f"agents{agents}", out)
        key = common.measure_key(seed)
        measured = common.measure([run.competitor], key, args.eval_realms, args.ticks)
        start = common.untrained(config, seed, f"agents{agents}")
        training.append(run.record)
        trained.append(explored(measured))
        fresh.append(explored(common.measure([start], key, args.eval_realms, args.ticks)))
        shown = shown or [measured.visits[0].sum(0), measured.terrain[0]]
    row = {"agents": agents, "pops": config.pops, "realms": config.realms,
           "training": training, **common.summarise(trained), "untrained": common.summarise(fresh)}
    return row, *shown


def plot_maps(rows: list[dict[str, Any]], shown: list[tuple[np.ndarray, np.ndarray]],
              ticks: int, out: Path) -> str:
    """The tiles visited in one realm per size, log10 of the visits over the terrain."""
    fig, axes = common.figure(len(rows), width=4.6, height=4.0)
    for ax, row, (visits, terrain) in zip(axes, rows, shown, strict=True):
        heat = np.where(visits > 0, np.log10(np.maximum(visits, 1)), np.nan)
        plot_value_map(heat, terrain, ax=ax, cmap="magma",
                       title=f"{row['agents']} agent{'s' * (row['agents'] > 1)}: "
                             f"{row['coverage']['seeds'][0]:.1%} "
                             f"covered\nlog10 visits in {ticks} ticks, seed 0")
    return common.save(fig, out, "exploration_maps.png")


def plot_coverage(rows: list[dict[str, Any]], out: Path) -> str:
    """Coverage and tiles per lifetime against agents, trained and untrained."""
    fig, axes = common.figure(2)
    agents = [row["agents"] for row in rows]
    for ax, key, scale, label in ((axes[0], "coverage", 100, "walkable tiles visited (%)"),
                                  (axes[1], "tiles_per_life", 1, "distinct tiles per lifetime")):
        common.plot_intervals(ax, agents, [row[key] for row in rows], "trained", scale)
        common.plot_intervals(ax, agents, [row["untrained"][key] for row in rows],
                              "untrained", scale, linestyle="--")
        ax.set_xscale("log", base=2)
        ax.set_xticks(agents, [str(a) for a in agents])
        ax.set_xlabel("agent slots per realm")
        ax.set_ylabel(label)
        ax.legend()
    axes[0].set_title("coverage (95% interval over seeds)")
    axes[1].set_title("tiles per lifetime (95% interval over seeds)")
    return common.save(fig, out, "exploration_coverage.png")


def verdict(rows: list[dict[str, Any]]) -> str:
    """"coverage rises with agents: ..." when the mean coverage rises at every size."""
    means = [row["coverage"]["mean"] for row in rows]
    rises = all(b > a for a, b in itertools.pairwise(means))
    first, last = rows[0], rows[-1]
    sizes = ", ".join(f"{row['agents']}: {common.show(row['coverage'], 100)} %" for row in rows)
    return (f"coverage {'rises' if rises else 'does not rise at every step'} with agents: "
            f"{first['agents']} -> {last['agents']} agents, {100 * means[0]:.1f} % -> "
            f"{100 * means[-1]:.1f} % of walkable tiles ({sizes}; untrained "
            f"{100 * first['untrained']['coverage']['mean']:.1f} % -> "
            f"{100 * last['untrained']['coverage']['mean']:.1f} %); distinct tiles per "
            f"lifetime {first['tiles_per_life']['mean']:.1f} -> "
            f"{last['tiles_per_life']['mean']:.1f}")


def main(argv: list[str] | None = None) -> None:
    """Runs the experiment and writes its outputs."""
    start = time.perf_counter()
    parser = common.parser(__doc__, NAME, steps=5e5)
    parser.add_argument("--agents", type=int, nargs="+", default=[1, 8, 32, 128],
                        help="agent slots per realm, one setting each")
    args, base = common.parse(parser, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows, shown = [], []
    for agents in args.agents:
        row, visits, terrain = size(agents, args, base, out)
        rows.append(row)
        shown.append((visits, terrain))
    figures = [plot_maps(rows, shown, args.ticks, out), plot_coverage(rows, out)]
    common.finish(out, NAME, args, base, {"sizes": rows}, figures, verdict(rows), start)


if __name__ == "__main__":
    main()
