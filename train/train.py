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
metrics written after that checkpoint are dropped and written again; a last line cut
short by a kill is dropped with a warning). A folder that already holds files is never
written over unless `--resume` or `--overwrite` (which deletes the previous run's files)
is given. A chunk that produces NaN or inf in its losses or parameters stops the run
before anything of it is written, keeping the last good checkpoint.

Devices and hosts. The realms are split across all the devices JAX sees (`--devices N`
for the first N; --realms must divide evenly by the count): one process drives every
device of its machine. Several machines run one process each (or one per device), all
with the same flags, joined by JAX's distributed runtime: each drives its own devices'
realms, all hold the same parameters, and process 0 alone writes the metrics, plots,
GIF and checkpoints; `--resume` works the same (every process reads the checkpoint, so
--out must be on a file system every process sees). On the CPU as 4 devices
(`--cpu-devices 4`: the devices step their shares of the realms side by side), or two
processes on one machine (one CPU device each; the coordinator is process 0's address,
any free port):

    python train/train.py --cpu-devices 4 --devices 4 \
        --agents 16 --pops 4 --map-size 32 --lava-border 3 --entities 8 --realms 4 \
        --total-steps 2e4 --out runs/four
    for i in 0 1; do
      python train/train.py --coordinator 127.0.0.1:23456 --num-processes 2 --process-id $i \
          --agents 16 --pops 4 --map-size 32 --lava-border 3 --entities 8 --realms 4 \
          --total-steps 2e4 --out runs/two &
    done; wait

On a SLURM cluster, one process per GPU; `--distributed` takes the coordinator, the
process count and index, and the process's GPU from SLURM's variables:

    #!/bin/bash
    #SBATCH --nodes=2 --ntasks-per-node=8 --gpus-per-node=8
    srun python train/train.py --distributed --realms 1024 --total-steps 1e9 --out runs/big
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import inspect
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

if __package__ in (None, ""):  # run as a script: import the `train` package, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from nmmo_jax.config import PRESETS, REWARD_MODES
from nmmo_jax.progress import tqdm
from train import checkpoint
from train.networks import NETWORKS
from train.ppo import RunnerState, TrainConfig, Trainer, make_train

CHECKPOINT = "checkpoint.msgpack"
METRICS = "metrics.jsonl"
# What a run writes into --out (what --overwrite deletes).
RUN_FILES = (CHECKPOINT, METRICS, "config.json", "lifetime.png", "losses.png", "agents.gif")
T = TypeVar("T")
# The allowed values of the TrainConfig fields that name a choice.
CHOICES = {"preset": sorted(PRESETS), "reward_mode": sorted(REWARD_MODES),
           "algo": ["ppo", "pg"], "network": sorted(NETWORKS)}


class RunError(RuntimeError):
    """A run that cannot start or go on without losing data: its folder holds another
    run, its metrics are corrupt, or it produced NaN or inf."""


def _field_help() -> dict[str, str]:
    """The trailing comment of each `TrainConfig` field, as its flag's help."""
    pattern = re.compile(r"^\s+(\w+): [\w\s|]+ = [^#]+#\s*(.+)$")
    return {m.group(1): m.group(2).replace("%", "%%")
            for line in inspect.getsource(TrainConfig).splitlines()
            if (m := pattern.match(line))}


def build_parser() -> argparse.ArgumentParser:
    """An argparse parser with one flag per `TrainConfig` field, plus --resume,
    --overwrite, --no-progress and the flags of a run over several processes."""
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
            parser.add_argument(flag, type=kind, default=field.default,
                                choices=CHOICES.get(field.name), help=helps.get(field.name))
    parser.add_argument("--resume", action="store_true",
                        help="continue from the checkpoint in --out")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete the run already in --out and start afresh")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        default=argparse.SUPPRESS, help="hide the progress bar")
    add_cpu_devices(parser)
    processes = parser.add_argument_group(
        "several processes", "one run over several processes (hosts), each driving its "
        "local devices; launch commands in train/train.py's docstring")
    processes.add_argument("--coordinator", metavar="HOST:PORT",
                           help="address of process 0, where the processes meet")
    processes.add_argument("--num-processes", type=int, help="processes of the run")
    processes.add_argument("--process-id", type=int, help="this process's index, 0 ... P-1")
    processes.add_argument("--distributed", action="store_true",
                           help="join a run over several processes; what the three flags "
                                "above leave out comes from the cluster's environment "
                                "(SLURM, Open MPI, JAX_COORDINATOR_ADDRESS)")
    return parser


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    """The `TrainConfig` given by the command line, and the other options; applies
    --cpu-devices (so call it before any JAX computation). Exits with a usage error
    naming the flag for a value out of range."""
    parser = build_parser()
    args = _parse_options(parser, argv)
    return _parse_config(parser, args), args


def _parse_options(parser: argparse.ArgumentParser, argv: list[str] | None
                   ) -> argparse.Namespace:
    args = parser.parse_args(argv)
    args.progress = getattr(args, "progress", True)  # --no-progress was not given
    split_cpu(parser, args.cpu_devices)  # before the config's checks, which already run JAX
    if args.resume and args.overwrite:
        parser.error("--resume and --overwrite exclude each other: continue the run in "
                     "--out, or delete it and start afresh")
    return args


def _parse_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> TrainConfig:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    try:
        return TrainConfig(**{name: getattr(args, name) for name in names})
    except (TypeError, ValueError) as err:
        name = str(err).split(" ", 1)[0]
        flag = f"argument --{name.replace('_', '-')}: " if name in names else ""
        parser.error(f"{flag}{err}")


def add_cpu_devices(parser: argparse.ArgumentParser) -> None:
    """Adds --cpu-devices N to `parser`; `split_cpu` applies it."""
    parser.add_argument("--cpu-devices", type=int, default=0, metavar="N",
                        help="run JAX's CPU as N devices (e.g. one per core), the realms "
                             "split across them as across GPUs; 0 keeps one CPU device")


def split_cpu(parser: argparse.ArgumentParser, devices: int) -> None:
    """Makes JAX's CPU backend `devices` devices (`jax_num_cpu_devices`; 0: leave it).
    Must run before any JAX computation: after one, and for a negative count, it exits
    with a usage error of `parser` naming --cpu-devices. Where one device spreads each
    operation over the cores, several step their shares of the realms side by side
    (bench/bench_train.py and bench/bench_env.py compare the two)."""
    if devices < 0:
        parser.error(f"argument --cpu-devices: must be >= 0, got {devices}")
    if devices:
        try:
            jax.config.update("jax_num_cpu_devices", devices)
        except RuntimeError as err:
            parser.error(f"argument --cpu-devices: must be applied before any JAX "
                         f"computation in this process ({err})")


def join_processes(args: argparse.Namespace) -> None:
    """Starts JAX's distributed runtime when the command line asks for several processes
    (--coordinator, --num-processes, --process-id or --distributed); must run before any
    JAX computation. Exits with an error when the processes cannot meet."""
    given = (args.coordinator, args.num_processes, args.process_id)
    if not args.distributed and all(value is None for value in given):
        return
    try:
        jax.distributed.initialize(*given)
    except (RuntimeError, ValueError, TypeError) as err:
        raise SystemExit(f"error: cannot join the run over several processes: {err}") from None


def together(action: Callable[[], T], every_process: bool = False) -> T | None:
    """Runs `action` on process 0 only (or on every process) and returns its result there
    (None elsewhere). If it raises on any process, every process raises: that process its
    own error, the others a `RunError` naming it, so none is left waiting in a collective."""
    result, error = None, None
    if every_process or jax.process_index() == 0:
        try:
            result = action()
        except Exception as err:  # re-raised below, after every process knows
            error = err
    if jax.process_count() > 1:
        failed = multihost_utils.process_allgather(np.int32(error is not None))
        if failed.any() and error is None:
            raise RunError(f"process {int(np.argmax(failed))} stopped the run; see its error")
    if error is not None:
        raise error
    return result


def host_copy(runner: RunnerState, trainer: Trainer) -> RunnerState:
    """`runner` with every array whole on this process, for a checkpoint: a collective that
    every process must call when arrays span several processes."""
    if jax.process_count() == 1:
        return runner
    whole = NamedSharding(trainer.mesh, P())
    return jax.jit(lambda runner: runner, out_shardings=whole)(runner)


def metric_rows(metrics: dict[str, np.ndarray], first_update: int, seconds: float,
                elapsed: float, config: TrainConfig) -> list[dict[str, Any]]:
    """JSON rows of a chunk's metrics (leaves [K, L] per learning population, [K, P - L]
    for the scripted populations' entries), one per update."""
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
        for name, values in metrics.items():
            values = values[i].astype(np.float64)
            if name.endswith("lifetime"):  # over all agents that died, not a mean of means
                deaths = metrics[name.replace("lifetime", "deaths")][i]
                mean = float((values * deaths).sum() / max(deaths.sum(), 1))
            else:
                mean = float(values.mean())
            row[name] = round(mean, 5)
            row[name + "_pop"] = [round(float(v), 5) for v in values]
        rows.append(row)
    return rows


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of a metrics.jsonl. A last line cut short (a kill mid-write) is dropped
    with a warning; a broken line before the last raises `RunError` naming it."""
    lines = path.read_text().splitlines()
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if number < len(lines):
                raise RunError(f"{path}, line {number}: not a JSON row ({err})") from None
            warnings.warn(f"{path}: dropped its last line, cut short by an interrupted "
                          f"write: {line[:60]!r}", RuntimeWarning, stacklevel=2)
    return rows


def prepare_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Makes `out` ready for a run without losing one: deletes a stale checkpoint temp
    file; unless resuming, refuses a folder that holds files (`RunError`), or with
    `overwrite` deletes the previous run's `RUN_FILES`."""
    if resume and overwrite:
        raise ValueError("resume and overwrite exclude each other")
    out.mkdir(parents=True, exist_ok=True)
    if checkpoint.remove_stale(out / CHECKPOINT):
        tqdm.write(f"deleted {checkpoint.temp_path(out / CHECKPOINT)}, left by an "
                   "interrupted checkpoint write")
    held = sorted(path.name for path in out.iterdir())
    if resume or not held:
        return
    if not overwrite:
        raise RunError(f"{out} already holds {', '.join(held[:6])}"
                       f"{', ...' if len(held) > 6 else ''}: pass --resume to continue the "
                       f"run there or --overwrite to replace it")
    for name in RUN_FILES:
        (out / name).unlink(missing_ok=True)


@jax.jit
def _finite(tree: Any) -> Any:
    return jax.tree.map(lambda x: jnp.all(jnp.isfinite(x)), tree)


def nonfinite(runner: RunnerState, metrics: dict[str, Any]) -> list[str]:
    """The metrics, parameters and optimiser leaves that hold NaN or inf, by name
    ("metrics['value_loss']", "params['params']['Dense_0']['kernel']", ...)."""
    groups = {"metrics": metrics, "params": runner.params, "opt_state": runner.opt_state}
    flags = jax.device_get(_finite(groups))
    return [group + jax.tree_util.keystr(path) for group in groups
            for path, ok in jax.tree_util.tree_flatten_with_path(flags[group])[0] if not ok]


def _check_finite(runner: RunnerState, metrics: dict[str, Any], first: int,
                  config: TrainConfig, saved: int | None) -> None:
    """Raises `RunError` if the chunk after update `first` left NaN or inf in its metrics
    or state, naming the arrays and the checkpoint (of update `saved`) that stays."""
    bad = nonfinite(runner, metrics)
    if not bad:
        return
    kept = (f"the last good checkpoint (update {saved}) is kept in "
            f"{Path(config.out) / CHECKPOINT}" if saved is not None
            else "no checkpoint had been written yet")
    more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
    raise RunError(f"updates {first + 1}-{first + config.chunk} produced NaN or inf in "
                   f"{', '.join(bad[:3])}{more}; stopped without writing them, and {kept}. "
                   f"Lower --lr or --max-grad-norm, or check the other hyperparameters")


def _resumed_rows(out: Path, update: int) -> list[dict[str, Any]]:
    """The metric rows of a run resumed at `update` (those written after it dropped);
    warns where rows up to it are missing."""
    path = out / METRICS
    rows = [r for r in read_metrics(path) if r["update"] <= update] if path.exists() else []
    if [r["update"] for r in rows] != list(range(1, update + 1)):
        warnings.warn(f"{path} lacks rows of updates 1-{update}; its metrics and "
                      f"plots have gaps", RuntimeWarning, stacklevel=2)
    return rows


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

    panels = (("policy_loss", "clipped policy loss"), ("value_loss", "value loss"),
              ("entropy", "entropy (nats)"), ("approx_kl", "approximate KL (nats)"),
              ("explored", "tiles visited per population and realm"),
              ("alive", "live agents per population and realm"))
    fig, axes = plt.subplots(2, 3, figsize=(11, 6))
    for ax, (name, label) in zip(axes.flat, panels, strict=True):
        ax.plot(steps, [r[name] for r in rows])
        ax.set(title=name, ylabel=label, xlabel="slot-steps (millions)")
    fig.tight_layout()
    paths.append(out / "losses.png")
    fig.savefig(paths[1], dpi=110)
    plt.close(fig)
    return paths


def train(config: TrainConfig, resume: bool = False, progress: bool = True,
          trainer: Trainer | None = None, overwrite: bool = False
          ) -> tuple[RunnerState, list[dict[str, Any]]]:
    """Runs (or resumes) training into `config.out`; returns the final runner state and
    the metric rows of the whole run. `trainer` (default: `make_train(config)`) may be
    passed to reuse its compiled program; it must have been made from the same config up
    to `TrainConfig`'s output fields. Raises `RunError` when `config.out` holds files and
    neither `resume` nor `overwrite` is set, and when a chunk produces NaN or inf.

    Over several processes every process calls it: all compute, process 0 alone writes
    (metrics, config and checkpoints; it returns the rows, the others an empty list), and
    with `resume` every process reads the checkpoint in `config.out`."""
    out, lead = Path(config.out), jax.process_index() == 0
    together(lambda: prepare_out(out, resume, overwrite))
    trainer = trainer or make_train(config)
    runner = trainer.init(jax.random.key(config.seed))
    elapsed, saved = 0.0, None
    if resume:
        runner, meta = together(
            lambda: checkpoint.restore(out / CHECKPOINT, runner, config), every_process=True)
        elapsed, saved = meta["time_s"], int(runner.update)
    rows = together(lambda: _start_metrics(out, config, saved)) or []
    say = tqdm.write if lead else lambda message: None

    total = config.num_updates
    if total * config.steps_per_update != config.total_steps:
        say(f"total_steps {config.total_steps:,.0f} rounded up to {total} whole updates "
            f"in chunks of {config.chunk}: {total * config.steps_per_update:,} slot-steps")
    say(f"{total} updates of {config.steps_per_update:,} slot-steps, {config.chunk} per "
        f"compiled call (the first call includes compilation), realms split across "
        f"{trainer.mesh.size} device(s) in {jax.process_count()} process(es)")
    if int(runner.update) < total:
        say("compiling the training program and running its first chunk ...")
    bar = None  # made after the first chunk, so its rate and ETA leave compilation out
    with open(out / METRICS, "a") if lead else contextlib.nullcontext() as log:
        while int(runner.update) < total:
            first = int(runner.update)
            tic = time.perf_counter()
            runner, metrics = trainer.run(runner)
            metrics = jax.device_get(metrics)
            seconds = time.perf_counter() - tic
            _check_finite(runner, metrics, first, config, saved)
            elapsed += seconds
            chunk_rows = metric_rows(metrics, first, seconds, elapsed, config)
            if lead:
                log.writelines(json.dumps(r) + "\n" for r in chunk_rows)
                log.flush()
                rows += chunk_rows
            if bar is None:
                bar = tqdm(total=total, initial=int(runner.update), unit="update",
                           disable=not (progress and lead))
            else:
                bar.update(config.chunk)
            bar.set_postfix(lifetime=f"{chunk_rows[-1]['lifetime']:.1f}",
                            steps_per_s=f"{chunk_rows[-1]['steps_per_s']:,.0f}")
            done = int(runner.update)
            if done // config.checkpoint_every > first // config.checkpoint_every or done >= total:
                whole = host_copy(runner, trainer)
                if lead:
                    os.fsync(log.fileno())  # the metrics reach the disk before their checkpoint
                    checkpoint.save(out / CHECKPOINT, whole, config,
                                    {"time_s": elapsed, "update": done})
                saved = done
    if bar is not None:
        bar.close()
    return runner, rows


def _start_metrics(out: Path, config: TrainConfig, resumed: int | None
                   ) -> list[dict[str, Any]]:
    """Writes config.json and metrics.jsonl as they stand at the start of the run (the
    rows up to update `resumed`, or none); returns those rows."""
    rows = [] if resumed is None else _resumed_rows(out, resumed)
    (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    with open(out / METRICS, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = _parse_options(parser, argv)
    join_processes(args)  # before the config's checks, which already run JAX
    config = _parse_config(parser, args)
    try:
        trainer = make_train(config)
    except ValueError as err:  # the devices cannot share the realms or minibatches evenly
        parser.error(str(err))
    try:
        runner, rows = train(config, args.resume, args.progress, trainer, args.overwrite)
    except (RunError, checkpoint.CheckpointError) as err:
        raise SystemExit(f"error: {err}") from None
    if jax.process_index() != 0:
        return
    out = Path(config.out)
    print("drawing lifetime.png and losses.png ...")
    for path in plot(rows, out):
        print("wrote", path)
    if config.eval_ticks:
        print(f"recording and drawing agents.gif ({config.eval_ticks} ticks) ...")
        from train.evaluate import Competitor, save_gif, training_lineup
        params = jax.device_get(runner.params)  # host arrays: the GIF is process 0's alone
        me = Competitor("trained", trainer.network, params, config)
        print("wrote", save_gif(training_lineup(me), jax.random.key(config.seed + 1),
                                out / "agents.gif", config.eval_ticks))
    last = rows[-1]
    print(f"done: {last['update']} updates, {last['steps']:,} slot-steps in "
          f"{last['time_s']:.0f} s; mean lifetime {last['lifetime']:.1f} ticks")


if __name__ == "__main__":
    main()
