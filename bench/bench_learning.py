"""Learning speed: mean lifetime against wall-clock time and against live agent-steps for
a fixed budget (default 10 minutes, compilation included), Chaos, 128 agent slots in 8
populations, TrainConfig's defaults unless flags of train/train.py say otherwise; then a
head-to-head in shared realms against a scripted policy. Prints the curve and the match,
and saves the curve to docs/learning_curve.png.

The lifetime of an update is that of the agents that died during its rollout (all
learning populations together); random play lives about 10 ticks. With `--scripted`,
the scripted populations' lifetime in the same realms is printed beside it. The
head-to-head places the trained populations and as many populations of the scripted
`--vs` policy (default: `fighter` in Chaos, `forager` in Law and base) in the same fresh
realms, slots split evenly (train/evaluate.py's tournament), for 500 ticks in Chaos and
1,500 in Law and base (where agents live about 100 ticks, a shorter match cuts off the
longest lives, more of them on the longer-lived side), and prints each side's mean
lifetime with a 95% confidence interval over realms. `--save` keeps the trained
populations as a checkpoint that `nmmo-eval` and `train.pretrained` read.

    python bench/bench_learning.py                    # 600 s
    python bench/bench_learning.py --seconds 120 --out /tmp/curve.png
    python bench/bench_learning.py --preset law --out docs/learning_curve_law.png
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

from nmmo_jax.policies import POLICIES
from train.evaluate import Competitor, evaluate
from train.ppo import make_train
from train.train import metric_rows, parse_args
from train.zoo import save_populations

TARGET = 60  # ticks: the original's sample run after 5 M agent-steps (SPEC §8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--seconds", type=float, default=600.0, help="training budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the run")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1]
                                              / "docs" / "learning_curve.png"),
                        help="where the curve's PNG goes")
    parser.add_argument("--vs", choices=sorted(POLICIES), default=None,
                        help="scripted side of the head-to-head (default: fighter in Chaos, "
                             "forager otherwise)")
    parser.add_argument("--match-realms", type=int, default=32, help="realms of the match")
    parser.add_argument("--match-ticks", type=int, default=None,
                        help="ticks of the match (default: 500 in Chaos, 1500 otherwise)")
    parser.add_argument("--save", default=None,
                        help="write the trained populations here (default: not kept)")
    args, rest = parser.parse_known_args()
    config, _ = parse_args(rest)  # TrainConfig's flags, as train/train.py reads them
    config = dataclasses.replace(config, seed=args.seed, total_steps=1e12)
    chaos = config.preset == "chaos"
    vs = args.vs or ("fighter" if chaos else "forager")
    match_ticks = args.match_ticks or (500 if chaos else 1500)
    trainer = make_train(config)
    pops = f"{config.pops} pops" + (f" ({config.scripted} scripted)" if config.scripted else "")
    if config.networks:
        pops += f" sharing {config.n_networks} network(s)"
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({platform.processor() or platform.machine()}); {config.preset}, {config.agents} "
          f"slots, {pops}, {config.network} network; {config.realms} realms x "
          f"{config.rollout} ticks, {config.epochs} epochs, minibatches of "
          f"{config.minibatch_size}; budget {args.seconds:.0f} s"
          + (f"; flags: {' '.join(rest)}" if rest else ""))
    start = time.perf_counter()
    runner = trainer.init(jax.random.key(config.seed))
    rows, live, report_at = [], 0.0, 0.0
    print(f"{'time s':>7} {'updates':>8} {'live agent-steps':>17} {'lifetime':>9} {'last 10':>8}")
    while time.perf_counter() - start < args.seconds:
        first, tic = int(runner.update), time.perf_counter()
        runner, metrics = trainer.run(runner)
        metrics = jax.device_get(metrics)
        now = time.perf_counter()
        for row in metric_rows(metrics, first, now - tic, now - start, config):
            live += sum(row["live_steps_pop"])
            rows.append({**row, "live_total": live})
        if now - start >= report_at:
            recent = np.mean([r["lifetime"] for r in rows[-10:]])
            print(f"{now - start:>7.0f} {rows[-1]['update']:>8} {live:>17,.0f} "
                  f"{rows[-1]['lifetime']:>9.1f} {recent:>8.1f}")
            report_at += 30.0
    curve = summarise(rows, config)
    plot(curve, config, args.out)
    if args.save:
        save_populations(args.save, runner.params, config, {
            "seconds": round(curve["seconds"][-1], 1), "live_steps": int(live),
            "lifetime": round(float(curve["smooth"][-1]), 2)})
        print("wrote", args.save)
    match(Competitor("trained", trainer.network, runner.params, config), vs,
          jax.random.key(config.seed + 1), args.match_realms, match_ticks)


def summarise(rows: list[dict], config) -> dict[str, np.ndarray]:
    """Prints the run's end: the 10-update mean lifetime, throughput, causes of death and
    when the 10-update mean first reached `TARGET`; returns the curve's arrays."""
    seconds = np.array([r["time_s"] for r in rows])
    live = np.array([r["live_total"] for r in rows])
    lifetime = np.array([r["lifetime"] for r in rows])
    smooth = np.convolve(lifetime, np.ones(10) / 10, mode="valid")
    print(f"final: mean lifetime over the last 10 updates {smooth[-1]:.1f} ticks after "
          f"{seconds[-1]:.0f} s, {rows[-1]['steps']:,} slot-steps and {live[-1]:,.0f} live "
          f"agent-steps ({rows[-1]['steps'] / seconds[-1]:,.0f} slot-steps/s, "
          f"{live[-1] / seconds[-1]:,.0f} live agent-steps/s, compilation included)")
    deaths = {name[5:]: sum(sum(r[name + "_pop"]) for r in rows[-10:])
              for name in rows[-1] if name.startswith("died_") and not name.endswith("_pop")}
    total = max(sum(deaths.values()), 1)
    print("deaths over the last 10 updates: "
          + ", ".join(f"{name} {count / total:.0%}" for name, count in deaths.items()))
    if config.scripted:
        died = sum(sum(r["scripted_deaths_pop"]) for r in rows[-10:])
        lived = sum(r["scripted_lifetime"] * sum(r["scripted_deaths_pop"]) for r in rows[-10:])
        print(f"scripted populations ({config.scripted}) in the same realms, mean lifetime "
              f"of their agents that died over the last 10 updates: {lived / max(died, 1):.1f} "
              f"ticks")
    at_5m = np.searchsorted(live[9:], 5e6)
    if at_5m < smooth.size:
        print(f"10-update mean at 5 M live agent-steps: {smooth[at_5m]:.1f} ticks")
    reached = np.flatnonzero(smooth >= TARGET)
    print(f"10-update mean first reached {TARGET} ticks "
          + (f"at {seconds[reached[0] + 9]:.0f} s, {live[reached[0] + 9]:,.0f} live agent-steps"
             if reached.size else "never"))
    return {"seconds": seconds, "live": live, "lifetime": lifetime, "smooth": smooth,
            "per_pop": np.array([r["lifetime_pop"] for r in rows])}


def plot(curve: dict[str, np.ndarray], config, out: str) -> None:
    """The curve against seconds (left) and live agent-steps (right), one PNG."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    for ax, x, label in ((axes[0], curve["seconds"], f"wall-clock seconds ({platform.machine()}"
                          " CPU, compilation included)"),
                         (axes[1], curve["live"] / 1e6, "live agent-steps (millions)")):
        for p in range(curve["per_pop"].shape[1]):
            ax.plot(x, curve["per_pop"][:, p], lw=0.6, alpha=0.4)
        ax.plot(x, curve["lifetime"], color="black", lw=1, alpha=0.5, label="all populations")
        ax.plot(x[9:], curve["smooth"], color="black", lw=2.5, label="10-update mean")
        ax.axhline(TARGET, color="red", ls="--", lw=1, label=f"{TARGET} ticks")
        ax.set(xlabel=label)
    axes[0].set(ylabel="mean lifetime of agents that died (ticks)")
    axes[0].legend()
    fig.suptitle(f"PPO, {config.preset}, {config.agents} agents in {config.pops} populations, "
                 f"{config.network} network")
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print("wrote", out)


def match(trained: Competitor, vs: str, key: jax.Array, realms: int, ticks: int) -> None:
    """The trained populations against as many of the scripted `vs` in shared realms."""
    result = evaluate([trained, vs], key, realms, ticks)
    print(f"head to head, {realms} shared realms x {ticks} ticks, slots split evenly; mean "
          f"lifetime [95% confidence interval over realms]:")
    for row in result["competitors"]:
        low, high = row["ci95"]
        print(f"  {row['name']:>8}: {row['lifetime']:6.1f} ticks [{low:.1f}, {high:.1f}] "
              f"({row['deaths']} deaths)")


if __name__ == "__main__":
    main()
