"""Learning speed: mean lifetime against wall-clock time for a fixed budget (default 10
minutes, compilation included), Chaos, 128 agent slots in 8 populations, TrainConfig's
defaults unless flags of train/train.py say otherwise. Prints the curve and saves it to
docs/learning_curve.png.

The lifetime of an update is that of the agents that died during its rollout (all
populations together); random play lives about 10 ticks.

    python bench/bench_learning.py                    # 600 s
    python bench/bench_learning.py --seconds 120 --out /tmp/curve.png
    python bench/bench_learning.py --epochs 3 --lr 3e-3      # any flag of train/train.py
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import time
from pathlib import Path

import jax
import numpy as np

from train.ppo import make_train
from train.train import metric_rows, parse_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1]
                                              / "docs" / "learning_curve.png"))
    args, rest = parser.parse_known_args()
    config, _ = parse_args(rest)  # TrainConfig's flags, as train/train.py reads them
    config = dataclasses.replace(config, seed=args.seed, total_steps=1e12)
    trainer = make_train(config)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({platform.processor() or platform.machine()}); {config.preset}, {config.agents} "
          f"slots, {config.pops} pops; {config.realms} realms x {config.rollout} ticks, "
          f"{config.epochs} epochs, minibatches of {config.minibatch_size}; budget "
          f"{args.seconds:.0f} s" + (f"; flags: {' '.join(rest)}" if rest else ""))
    start = time.perf_counter()
    runner = trainer.init(jax.random.key(config.seed))
    rows, report_at = [], 0.0
    print(f"{'time s':>7} {'updates':>8} {'slot-steps':>12} {'lifetime':>9} {'last 10':>8}")
    while time.perf_counter() - start < args.seconds:
        first, tic = int(runner.update), time.perf_counter()
        runner, metrics = trainer.run(runner)
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        rows += metric_rows(metrics, first, now - tic, now - start, config)
        if now - start >= report_at:
            recent = np.mean([r["lifetime"] for r in rows[-10:]])
            print(f"{now - start:>7.0f} {rows[-1]['update']:>8} {rows[-1]['steps']:>12,} "
                  f"{rows[-1]['lifetime']:>9.1f} {recent:>8.1f}")
            report_at += 30.0
    seconds = np.array([r["time_s"] for r in rows])
    lifetime = np.array([r["lifetime"] for r in rows])
    smooth = np.convolve(lifetime, np.ones(10) / 10, mode="valid")
    reached = np.flatnonzero(smooth >= 60)
    live = sum(sum(r["live_steps_pop"]) for r in rows)
    print(f"final: mean lifetime over the last 10 updates {smooth[-1]:.1f} ticks after "
          f"{seconds[-1]:.0f} s, {rows[-1]['steps']:,} slot-steps and {live:,.0f} live "
          f"agent-steps ({rows[-1]['steps'] / seconds[-1]:,.0f} slot-steps/s, "
          f"{live / seconds[-1]:,.0f} live agent-steps/s, compilation included)")
    deaths = {name[5:]: sum(sum(r[name + "_pop"]) for r in rows[-10:])
              for name in rows[-1] if name.startswith("died_") and not name.endswith("_pop")}
    total = max(sum(deaths.values()), 1)
    print("deaths over the last 10 updates: "
          + ", ".join(f"{name} {count / total:.0%}" for name, count in deaths.items()))
    print("10-update mean first reached 60 ticks at "
          + (f"{seconds[reached[0] + 9]:.0f} s" if reached.size else "never"))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    per_pop = np.array([r["lifetime_pop"] for r in rows])
    for p in range(per_pop.shape[1]):
        ax.plot(seconds, per_pop[:, p], lw=0.6, alpha=0.4)
    ax.plot(seconds, lifetime, color="black", lw=1, alpha=0.5, label="all populations")
    ax.plot(seconds[9:], smooth, color="black", lw=2.5, label="10-update mean")
    ax.axhline(60, color="red", ls="--", lw=1, label="60 ticks")
    ax.set(xlabel=f"wall-clock seconds ({platform.machine()} CPU, compilation included)",
           ylabel="mean lifetime of agents that died (ticks)",
           title=f"PPO, {config.preset}, {config.agents} agents in {config.pops} populations")
    ax.legend()
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
