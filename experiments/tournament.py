"""Agents trained among many outlive agents trained among few when they meet.

Populations are trained in Chaos realms of 16 and of 128 agent slots (--small, --large:
the same budget of live agent-steps, --seeds seeds each). Then each seed's two trained
sides meet in shared realms of every size in --arenas (train/evaluate.py's tournament:
each side plays half the slots, its populations beside the other's), --eval-realms
fresh realms for --ticks ticks per seed. Each side's mean lifetime over its agents that
died is given with a 95% confidence interval over the realms of every seed
(train/evaluate.py's `lifetime_interval`: realms are the samples). The paper's claim:
the side trained in the larger realm lives longer. Writes tournament.png,
tournament.json, and prints a verdict line.

    python experiments/tournament.py        # about 8 minutes on the 2-core CPU
    python experiments/tournament.py --steps 2e7 --slots 8192 --eval-realms 32   # a GPU
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the `experiments` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from experiments import common
from train.evaluate import lifetime_interval

NAME = "tournament"


def meet(sides: dict[str, list[common.Trained]], arena: int, args: argparse.Namespace
         ) -> dict[str, Any]:
    """Seed s's sides in `arena`-slot realms, every seed; each side's mean lifetime with
    its 95% interval over all realms, its deaths and its mean lifetime per seed."""
    realms = {name: [] for name in sides}  # name -> [(lifetime [R], deaths [R]) per seed]
    for seed, pair in enumerate(zip(*sides.values(), strict=True)):
        competitors = [run.competitor for run in pair]
        measured = common.measure(competitors, common.measure_key(seed), args.eval_realms,
                                  args.ticks, agents=arena)
        offset = 0
        for name, competitor in zip(sides, competitors, strict=True):
            own = slice(offset, offset + competitor.pops)
            realms[name].append((measured.lifetime[:, own].sum(1),
                                 measured.deaths[:, own].sum(1)))
            offset += competitor.pops
    result = {}
    for name, per_seed in realms.items():
        lifetime, deaths = (np.concatenate(x) for x in zip(*per_seed, strict=True))
        mean, low, high = lifetime_interval(lifetime, deaths)
        result[name] = {"mean": mean, "ci95": [low, high], "deaths": int(deaths.sum()),
                        "seeds": [float(lt.sum() / max(d.sum(), 1)) for lt, d in per_seed]}
    return result


def plot(arenas: dict[int, dict[str, Any]], out: Path) -> str:
    """Each side's mean lifetime in every arena size, with its 95% interval."""
    fig, (ax,) = common.figure(1, width=5.5)
    x = np.arange(len(arenas))
    for i, name in enumerate(next(iter(arenas.values()))):
        common.plot_intervals(ax, x + 0.1 * i, [sides[name] for sides in arenas.values()],
                              f"trained among {name}", linestyle="none")
    ax.set_xticks(x + 0.05, [f"{a}-slot arena" for a in arenas])
    ax.set_ylabel("mean lifetime of the agents that died (ticks)")
    ax.set_title("tournament (95% interval over seeds and realms)")
    ax.legend()
    return common.save(fig, out, "tournament.png")


def verdict(arenas: dict[int, dict[str, Any]], small: int, large: int) -> str:
    """"agents trained among LARGE outlive ..." when their interval lies above the
    others' in every arena."""
    holds = all(common.clearly_above(sides[str(large)], sides[str(small)])
                for sides in arenas.values())
    claim = "outlive" if holds else "do not clearly outlive"
    numbers = "; ".join(f"{arena}-slot arenas: {common.show(sides[str(large)])} vs "
                        f"{common.show(sides[str(small)])} ticks"
                        for arena, sides in arenas.items())
    return f"agents trained among {large} {claim} those trained among {small}: {numbers}"


def main(argv: list[str] | None = None) -> None:
    """Runs the experiment and writes its outputs."""
    start = time.perf_counter()
    parser = common.parser(__doc__, NAME, steps=1.5e6)
    parser.add_argument("--small", type=int, default=16, help="agent slots of the small realm")
    parser.add_argument("--large", type=int, default=128, help="agent slots of the large realm")
    parser.add_argument("--arenas", type=int, nargs="+", default=[16, 128],
                        help="agent slots of the shared realms, one tournament each")
    args, base = common.parse(parser, argv)
    configs = {str(size): common.setting(base, size, args.pops, args.slots)
               for size in (args.small, args.large)}
    if len(configs) < 2:
        parser.error("--small and --large must differ")
    pops = sum(math.gcd(args.pops, size) for size in (args.small, args.large))
    for arena in args.arenas:
        if arena % pops:
            parser.error(f"argument --arenas: {arena} slots cannot be split among the "
                         f"{pops} populations of both sides; use a multiple of {pops}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sides = {name: [common.train(config, seed, args.steps, f"agents{name}", out)
                    for seed in range(args.seeds)] for name, config in configs.items()}
    arenas = {arena: meet(sides, arena, args) for arena in args.arenas}
    numbers = {"arenas": {str(a): sides for a, sides in arenas.items()},
               "training": {name: [run.record for run in runs] for name, runs in sides.items()}}
    common.finish(out, NAME, args, base, numbers, [plot(arenas, out)],
                  verdict(arenas, args.small, args.large), start)


if __name__ == "__main__":
    main()
