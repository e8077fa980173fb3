"""Command line: train populations with PPO; write metrics, plots, checkpoints and a GIF.

    python train/train.py --preset chaos --total-steps 5e6 --realms 64 --out runs/chaos
    python train/train.py --agents 16 --pops 4 --map-size 32 --lava-border 3 --entities 8 \\
        --realms 4 --rollout 32 --total-steps 2e5 --out runs/tiny
    python train/train.py --out runs/chaos --total-steps 1e7 --resume

Every field of `train.ppo.TrainConfig` is a flag (`--field-name`). Into --out go
`config.json`, `metrics.jsonl` (one line per update: the mean over populations of every
metric and, under `<name>_pop`, its value per population), `checkpoint.msgpack` (every
--checkpoint-every updates and at the end), `lifetime.png`, `losses.png` and
`agents.gif` (--eval-ticks ticks of one realm played by the trained populations).
`--resume` continues from the checkpoint in --out exactly as if never interrupted (the
metrics written after that checkpoint are dropped and written again).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: import the `train` package, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import numpy as np
from tqdm.auto import tqdm

from train import checkpoint
from train.ppo import RunnerState, TrainConfig, Trainer, make_train

CHECKPOINT = "checkpoint.msgpack"
METRICS = "metrics.jsonl"


def _field_help() -> dict[str, str]:
    """The trailing comment of each `TrainConfig` field, as its flag's help."""
    pattern = re.compile(r"^\s+(\w+): [\w\s|]+ = [^#]+#\s*(.+)$")
    return {m.group(1): m.group(2).replace("%", "%%")
            for line in inspect.getsource(TrainConfig).splitlines()
            if (m := pattern.match(line))}


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per `TrainConfig` field, plus --resume."""
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    helps = _field_help()
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        kind = type(field.default)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction,
                                default=field.default, help=helps.get(field.name))
        else:
            parser.add_argument(flag, type=kind, default=field.default, help=helps.get(field.name))
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The `TrainConfig` given by the command line, and the other options."""
    args = build_parser().parse_args(argv)
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return TrainConfig(**{name: getattr(args, name) for name in names}), args


def metric_rows(metrics: dict[str, np.ndarray], first_update: int, seconds: float,
                elapsed: float, config: TrainConfig) -> list[dict[str, Any]]:
    """JSON rows of a chunk's metrics (leaves [K, P]), one per update."""
    chunk = metrics["lifetime"].shape[0]
    rows = []
    for i in range(chunk):
        update = first_update + i + 1
        row: dict[str, Any] = {
            "update": update, "steps": update * config.steps_per_update,
            "time_s": round(elapsed - seconds * (chunk - i - 1) / chunk, 3),
            "steps_per_s": round(config.steps_per_update * chunk / seconds, 1),
            "live_steps_per_s": round(float(metrics["live_steps"].sum()) / seconds, 1),
        }
        deaths = metrics["deaths"][i]
        for name, values in metrics.items():
            values = values[i].astype(np.float64)
            if name == "lifetime":  # over all agents that died, not a mean of means
                mean = float((values * deaths).sum() / max(deaths.sum(), 1))
            else:
                mean = float(values.mean())
            row[name] = round(mean, 5)
            row[name + "_pop"] = [round(float(v), 5) for v in values]
        rows.append(row)
    return rows


def read_metrics(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot(rows: list[dict[str, Any]], out: Path) -> list[Path]:
    """Writes lifetime.png (per population and overall) and losses.png; returns the paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.array([r["steps"] for r in rows]) / 1e6
    fig, ax = plt.subplots(figsize=(7, 4.5))
    per_pop = np.array([r["lifetime_pop"] for r in rows])
    for p in range(per_pop.shape[1]):
        ax.plot(steps, per_pop[:, p], lw=0.8, alpha=0.6, label=f"pop {p}")
    ax.plot(steps, [r["lifetime"] for r in rows], color="black", lw=2, label="all")
    ax.set(xlabel="slot-steps (millions)", ylabel="mean lifetime of agents that died (ticks)",
           title="Lifetime per population")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    paths = [out / "lifetime.png"]
    fig.savefig(paths[0], dpi=110)
    plt.close(fig)

    names = ("policy_loss", "value_loss", "entropy", "approx_kl", "explored", "alive")
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, name in zip(axes.flat, names):
        ax.plot(steps, [r[name] for r in rows])
        ax.set(title=name, xlabel="slot-steps (millions)")
    fig.tight_layout()
    paths.append(out / "losses.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          trainer: Trainer | None = None) -> tuple[RunnerState, list[dict[str, Any]]]:
    """Runs (or resumes) training into `config.out`; returns the final runner state and
    the metric rows of the whole run. `trainer` (default: `make_train(config)`) may be
    passed to reuse its compiled program; it must have been made from the same config up
    to `TrainConfig`'s output fields."""
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    trainer = trainer or make_train(config)
    runner = trainer.init(jax.random.key(config.seed))
    elapsed = 0.0
    if resume:
        runner, meta = checkpoint.restore(out / CHECKPOINT, runner, config)
        elapsed = meta["time_s"]
        rows = [r for r in read_metrics(out / METRICS) if r["update"] <= int(runner.update)]
    else:
        rows = []
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    with open(out / METRICS, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)

    total = config.num_updates
    tqdm.write(f"{total} updates of {config.steps_per_update:,} slot-steps, "
               f"{config.chunk} per compiled call (the first call includes compilation)")
    bar = tqdm(total=total, initial=int(runner.update), unit="update", disable=not progress)
    with open(out / METRICS, "a") as log:
        while int(runner.update) < total:
            first = int(runner.update)
            tic = time.perf_counter()
            runner, metrics = trainer.run(runner)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - tic
            elapsed += seconds
            chunk_rows = metric_rows(metrics, first, seconds, elapsed, config)
            log.writelines(json.dumps(r) + "\n" for r in chunk_rows)
            log.flush()
            rows += chunk_rows
            bar.update(config.chunk)
            bar.set_postfix(lifetime=f"{chunk_rows[-1]['lifetime']:.1f}",
                            steps_per_s=f"{chunk_rows[-1]['steps_per_s']:,.0f}")
            done = int(runner.update)
            if done // config.checkpoint_every > first // config.checkpoint_every or done >= total:
                checkpoint.save(out / CHECKPOINT, runner, config,
                                {"time_s": elapsed, "update": done})
    bar.close()
    return runner, rows


def main(argv: list[str] | None = None) -> None:
    config, args = parse_args(argv)
    runner, rows = train(config, args.resume, args.progress)
    out = Path(config.out)
    for path in plot(rows, out):
        print("wrote", path)
    if config.eval_ticks:
        from train.evaluate import Competitor, save_gif
        me = Competitor("trained", make_train(config).network, runner.params, config)
        print("wrote", save_gif([me], jax.random.key(config.seed + 1), out / "agents.gif",
                                config.eval_ticks))
    last = rows[-1]
    print(f"done: {last['update']} updates, {last['steps']:,} slot-steps in {last['time_s']:.0f} s; "
          f"mean lifetime {last['lifetime']:.1f} ticks")


if __name__ == "__main__":
    main()
