"""Populations form niches: the populations of one realm visit different parts of it.

Eight populations share a Chaos realm of 128 agent slots. Three kinds are compared,
--seeds seeds each: trained (each population from its own initial parameters),
same_init (trained from one shared initial parameters, `TrainConfig.same_init`) and
untrained (the parameters the trained runs start from). Each plays --eval-realms fresh
realms for --ticks ticks (the same maps for every kind), and the overlap of the
populations' visit maps (`State.visits`, [P, H, W]) is measured in every realm:

- JSD: the Jensen-Shannon divergence (base 2: 0 for the same distribution, 1 for
  disjoint ones) between two populations' visit distributions over the tiles, averaged
  over every pair of populations;
- majority share: the share of the visited tiles where one population made more than
  half of the visits.

Both are biased by sampling: populations that visit few tiles look apart by chance. So
each is measured again with the slots dealt to populations at random (--shuffles
draws) over the same agent tracks; the excess of the real value over the shuffled one
is what the populations' own behaviour adds. Intervals are 95% t intervals over seeds.
Writes niches_maps.png (one realm per kind, each tile in the colour of the population
that visited it most), niches_overlap.png, niches.json, and prints a verdict line.

    python experiments/niches.py            # about 10 minutes on the 2-core CPU
    python experiments/niches.py --steps 2e7 --slots 8192 --eval-realms 32       # a GPU
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: import the `experiments` package
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import numpy as np

from experiments import common
from nmmo_jax.render import plot_exploration

NAME = "niches"
KINDS = ("trained", "same_init", "untrained")


def _kl(p: np.ndarray, m: np.ndarray) -> np.ndarray:
    """KL divergence in bits of rows p from rows m (m > 0 wherever p > 0), [pairs]."""
    ratio = np.where(p > 0, p, 1.0) / np.where(p > 0, m, 1.0)
    return np.sum(p * np.log2(ratio), axis=-1)


def mean_jsd(visits: np.ndarray) -> float:
    """Mean Jensen-Shannon divergence over pairs of the populations that visited
    anything; `visits` is [P, H, W] or [P, H * W]. NaN with fewer than two such."""
    counts = visits.reshape(len(visits), -1).astype(np.float64)
    counts = counts[counts.sum(1) > 0]
    if len(counts) < 2:
        return float("nan")
    dist = counts / counts.sum(1, keepdims=True)
    i, j = np.triu_indices(len(dist), 1)
    m = (dist[i] + dist[j]) / 2
    return float(np.mean((_kl(dist[i], m) + _kl(dist[j], m)) / 2))


def majority_share(visits: np.ndarray) -> float:
    """The share of visited tiles where one population made more than half the visits."""
    counts = visits.reshape(len(visits), -1)
    total = counts.sum(0)
    seen = total > 0
    return float(np.mean(2 * counts.max(0)[seen] > total[seen]))


def shuffled(track: common.Track, realm: int, pops: int, cells: int,
             rng: np.random.Generator) -> np.ndarray:
    """One realm's visits with the slots dealt to populations at random, [P, cells]
    (the real deal is slot % P: `State.visits`)."""
    tile, alive = track.tile[:, realm], track.alive[:, realm]  # [T+1, N]
    deal = rng.permutation(tile.shape[1]) % pops  # [N]
    index = deal[None, :] * cells + tile  # [T+1, N]
    return np.bincount(index[alive], minlength=pops * cells).reshape(pops, cells)


def overlap(measured: common.Measurement, shuffles: int, rng: np.random.Generator
            ) -> dict[str, float]:
    """JSD and majority share, real and shuffled (mean over draws), of one run, each the
    mean over its realms; and the mean lifetime of the agents that died."""
    realms, pops = measured.visits.shape[:2]
    cells = measured.visits[0, 0].size
    real = {"jsd": [], "majority": [], "jsd_shuffled": [], "majority_shuffled": []}
    for r in range(realms):
        real["jsd"].append(mean_jsd(measured.visits[r]))
        real["majority"].append(majority_share(measured.visits[r]))
        draws = [shuffled(measured.track, r, pops, cells, rng) for _ in range(shuffles)]
        real["jsd_shuffled"].append(np.mean([mean_jsd(d) for d in draws]))
        real["majority_shuffled"].append(np.mean([majority_share(d) for d in draws]))
    numbers = {key: float(np.nanmean(values)) for key, values in real.items()}
    numbers["jsd_excess"] = numbers["jsd"] - numbers["jsd_shuffled"]
    numbers["majority_excess"] = numbers["majority"] - numbers["majority_shuffled"]
    numbers["lifetime"] = float(measured.lifetime.sum() / max(measured.deaths.sum(), 1))
    return numbers


def plot_maps(shown: dict[str, tuple[np.ndarray, np.ndarray]], ticks: int, out: Path) -> str:
    """Each kind's first realm of seed 0, coloured by the population that visited most."""
    fig, axes = common.figure(len(shown), width=6.2, height=4.6)
    for ax, (kind, (visits, terrain)) in zip(axes, shown.items(), strict=True):
        plot_exploration(visits, terrain, ax=ax, title=f"{kind}: {ticks} ticks, seed 0")
    return common.save(fig, out, "niches_maps.png")


def plot_overlap(kinds: dict[str, dict[str, Any]], out: Path) -> str:
    """JSD and majority share of every kind, real and shuffled."""
    fig, axes = common.figure(2, width=5.5)
    x = np.arange(len(kinds))
    for ax, key, name, unit, scale in ((axes[0], "jsd", "mean pairwise JSD", "bits", 1),
                                       (axes[1], "majority", "majority share", "%", 100)):
        common.plot_intervals(ax, x, [k[key] for k in kinds.values()], "real", scale,
                              linestyle="none")
        common.plot_intervals(ax, x + 0.1, [k[f"{key}_shuffled"] for k in kinds.values()],
                              "populations shuffled", scale, linestyle="none")
        ax.set_xticks(x, list(kinds))
        ax.set_ylabel(f"{name} ({unit})")
        ax.set_title(f"{name} (95% interval over seeds)")
        ax.legend()
    return common.save(fig, out, "niches_overlap.png")


def verdict(kinds: dict[str, dict[str, Any]]) -> str:
    """"populations form niches: ..." when the trained populations' JSD excess lies
    above the untrained ones'."""
    forms = common.clearly_above(kinds["trained"]["jsd_excess"], kinds["untrained"]["jsd_excess"])
    excess = ", ".join(f"{kind} {common.show(k['jsd_excess'], digits=3)}"
                       for kind, k in kinds.items())
    majority = ", ".join(f"{kind} {100 * k['majority']['mean']:.1f} % (shuffled "
                         f"{100 * k['majority_shuffled']['mean']:.1f} %)"
                         for kind, k in kinds.items())
    claim = ("populations form niches" if forms
             else "no niches beyond the untrained populations'")
    return (f"{claim}: JSD above shuffled populations {excess} bits; tiles with a "
            f"majority population {majority}")


def main(argv: list[str] | None = None) -> None:
    """Runs the experiment and writes its outputs."""
    start = time.perf_counter()
    parser = common.parser(__doc__, NAME, steps=1.5e6)
    parser.add_argument("--agents", type=int, default=128, help="agent slots of the realm")
    parser.add_argument("--shuffles", type=int, default=10,
                        help="random deals of the slots to populations per realm")
    args, base = common.parse(parser, argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    configs = {kind: common.setting(base, args.agents, args.pops, args.slots,
                                    same_init=kind == "same_init") for kind in KINDS}
    runs = {kind: [] for kind in KINDS}
    training = {kind: [] for kind in KINDS[:2]}
    shown = {}
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        for kind, config in configs.items():
            if kind == "untrained":
                competitor = common.untrained(config, seed, kind)
            else:
                run = common.train(config, seed, args.steps, kind, out)
                training[kind].append(run.record)
                competitor = run.competitor
            measured = common.measure([competitor], common.measure_key(seed),
                                      args.eval_realms, args.ticks)
            runs[kind].append(overlap(measured, args.shuffles, rng))
            shown.setdefault(kind, (measured.visits[0], measured.terrain[0]))
    kinds = {kind: common.summarise(runs[kind]) for kind in KINDS}
    figures = [plot_maps(shown, args.ticks, out), plot_overlap(kinds, out)]
    numbers = {"agents": args.agents, "pops": configs["trained"].pops,
               "realms": configs["trained"].realms, "kinds": kinds, "training": training}
    common.finish(out, NAME, args, base, numbers, figures, verdict(kinds), start)


if __name__ == "__main__":
    main()
