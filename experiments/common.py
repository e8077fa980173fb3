"""What the experiments share: the command line, training a setting to a budget of live
agent-steps, the measurement rollout, intervals over seeds, plots, the JSON of numbers
and the verdict line.

Budget. Settings are compared at equal experience: every training run takes `--steps`
live agent-steps (ticks of slots that hold an agent), one update at a time until the
budget is spent. A budget in slot-steps (`TrainConfig.total_steps`) would not be equal
experience: in Chaos a realm of 128 slots is about a fifth full early in training, a
realm of 8 nearly always full. Every run steps `--slots` agent slots at once (realms =
slots / agents), so that a small realm's run takes about as long as a large one's.

Measurement. `measure` places trained populations in fresh realms (train/evaluate.py's
arena: each competitor plays its own slots) and plays them for T ticks with
`nmmo_jax.rollout`. It keeps the final per-population visit counts (`State.visits`), the
deaths and lifetimes, and a `Track` of every slot over the T + 1 states of the run (the
reset's, then one after each tick): the same states `State.visits` counts, so the
tracks add up to the visit counts exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import nmmo_jax
from nmmo_jax.rollout import Tick
from train.evaluate import Competitor, arena, arena_realm, joint_actions, lifetime_interval
from train.ppo import TrainConfig, Trainer, make_train
from train.train import parse_args
from train.zoo import save_populations

# Training fields each experiment sets itself; a flag for one of them is a usage error.
OWNED = ("agents", "pops", "realms", "total_steps", "chunk", "seed", "same_init")
EPILOG = ("Every other flag of train/train.py (python train/train.py --help) sets the "
          "training config of every run, e.g. --map-size 32 --lava-border 3 --entities 8 "
          "--rollout 16 --lr 3e-3.")


# -- command line ------------------------------------------------------------------------

def parser(doc: str, name: str, steps: float) -> argparse.ArgumentParser:
    """The flags every experiment has; `doc` is the script's docstring, `name` its JSON
    name and default output folder (runs/NAME), `steps` its default training budget."""
    parser = argparse.ArgumentParser(
        prog=f"python experiments/{name}.py", description=doc.split("\n\n")[0],
        epilog=EPILOG, allow_abbrev=False,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--steps", type=float, default=steps,
                        help="live agent-steps of each training run")
    parser.add_argument("--seeds", type=int, default=3,
                        help="training seeds per setting (seeds 0 ... N-1)")
    parser.add_argument("--slots", type=int, default=2048,
                        help="agent slots a training run steps at once (realms x agents)")
    parser.add_argument("--pops", type=int, default=8,
                        help="populations of a trained realm (fewer where the agents do "
                             "not divide: gcd(pops, agents))")
    parser.add_argument("--ticks", type=int, default=500, help="ticks of a measurement run")
    parser.add_argument("--eval-realms", type=int, default=8,
                        help="realms of a measurement run (one run per seed and setting)")
    parser.add_argument("--out", default=f"runs/{name}",
                        help="folder of the figures, the JSON and the trained populations")
    return parser


def parse(parser: argparse.ArgumentParser, argv: list[str] | None = None
          ) -> tuple[argparse.Namespace, TrainConfig]:
    """The experiment's flags and the base training config (every other flag, as
    train/train.py reads it). Exits with a usage error for a count below 1 or a flag of
    a field the experiment sets itself (`OWNED`)."""
    args, rest = parser.parse_known_args(argv)
    for name, value in vars(args).items():  # every number of an experiment is a count
        for one in value if isinstance(value, list) else [value]:
            if isinstance(one, (int, float)) and one < 1:
                parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {one}")
    base, _ = parse_args(rest)
    default = TrainConfig()
    for name in OWNED:
        if getattr(base, name) != getattr(default, name):
            parser.error(f"argument --{name.replace('_', '-')}: set by the experiment")
    return args, dataclasses.replace(base, chunk=1)


def setting(base: TrainConfig, agents: int, pops: int, slots: int, same_init: bool = False
            ) -> TrainConfig:
    """The training config of realms with `agents` slots: gcd(pops, agents) populations
    (so that they divide the slots; one for a single agent), slots / agents realms."""
    return dataclasses.replace(base, agents=agents, pops=math.gcd(pops, agents),
                               realms=max(1, slots // agents), same_init=same_init)


# -- training ----------------------------------------------------------------------------

class Trained(NamedTuple):
    """One training run: the trained populations and how the run went."""

    competitor: Competitor
    record: dict[str, Any]  # seed, updates, live_steps, slot_steps, seconds, lifetime_*


@functools.lru_cache(maxsize=8)
def trainer(config: TrainConfig) -> Trainer:
    """One compiled trainer per config, shared by every seed (a seed is a key)."""
    return make_train(config)


def train(config: TrainConfig, seed: int, steps: float, name: str, out: Path) -> Trained:
    """Trains `config` from `jax.random.key(seed)` one update at a time until `steps`
    live agent-steps are spent; saves the populations to out/populations/NAME-sSEED.msgpack
    (`load_competitor` and `nmmo-eval` read it) and prints one line.

    The record's lifetime_start / lifetime_end are the mean lifetimes of the agents that
    died in the first / last (up to) 5 updates' rollouts; its seconds include compiling
    the trainer on a config's first run."""
    start = time.perf_counter()
    compiled = trainer(config)
    runner = compiled.init(jax.random.key(seed))
    live, lifetimes = 0, []
    while live < steps:
        runner, metrics = compiled.run(runner)
        metrics = jax.tree.map(np.asarray, metrics)  # leaves [chunk, P]
        live += int(metrics["live_steps"].sum())
        deaths = metrics["deaths"].sum(1)
        lifetimes += list((metrics["lifetime"] * metrics["deaths"]).sum(1)
                          / np.maximum(deaths, 1))
    updates = len(lifetimes)
    record = {"seed": seed, "updates": updates, "live_steps": live,
              "slot_steps": updates * config.steps_per_update,
              "seconds": time.perf_counter() - start,
              "lifetime_start": float(np.mean(lifetimes[:5])),
              "lifetime_end": float(np.mean(lifetimes[-5:]))}
    config = dataclasses.replace(config, seed=seed)
    save_populations(out / "populations" / f"{name}-s{seed}.msgpack", runner.params, config,
                     record)
    print(f"{name} seed {seed}: {live:,} live agent-steps in {updates} updates, "
          f"{record['seconds']:.0f} s; lifetime {record['lifetime_start']:.1f} -> "
          f"{record['lifetime_end']:.1f} ticks", flush=True)
    return Trained(Competitor(f"{name}-s{seed}", compiled.network, runner.params, config),
                   record)


def untrained(config: TrainConfig, seed: int, name: str) -> Competitor:
    """The populations `train(config, seed, ...)` starts from."""
    compiled = trainer(config)
    return Competitor(f"{name}-s{seed}", compiled.network,
                      compiled.init(jax.random.key(seed)).params,
                      dataclasses.replace(config, seed=seed))


# -- measurement -------------------------------------------------------------------------

class Track(NamedTuple):
    """Every slot over a measurement run's T + 1 states (tick t: the state before it)."""

    tile: Any  # [T+1, R, N] int32, row * W + column of the slot's tile
    alive: Any  # [T+1, R, N] bool, the slot holds an agent
    newborn: Any  # [T+1, R, N] bool, the slot's agent was born in this state
    died: Any  # [T, R, N] bool, the slot's agent died during tick t


class Measurement(NamedTuple):
    """What `measure` keeps of a run of R realms (P populations, H x W maps)."""

    visits: np.ndarray  # [R, P, H, W] int32, `State.visits` after the last tick
    terrain: np.ndarray  # [R, H, W] int8, the original tile types
    deaths: np.ndarray  # [R, P] int32, agents that died
    lifetime: np.ndarray  # [R, P] int32, their summed lifetimes
    track: Track


def _where(state: nmmo_jax.State, side: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Each slot's tile, whether it is live and whether its agent is newborn, [R, N]."""
    agents = state.agents
    tile = agents.pos[..., 0] * side + agents.pos[..., 1]
    return tile, agents.alive, agents.alive & (agents.time_alive == 0)


@functools.partial(jax.jit, static_argnames=("env", "players", "realms", "ticks"))
def _play(env: nmmo_jax.Env, players: tuple[Any, ...], params: tuple[Any, ...],
          rules: nmmo_jax.Params, key: jax.Array, realms: int, ticks: int) -> tuple:
    """`Measurement`'s fields on device (see `measure`)."""
    side = env.cfg.map_size

    def policy(key: jax.Array, obs: nmmo_jax.Observation) -> nmmo_jax.Actions:
        return joint_actions(players, params, key, obs)

    def observe(tick: Tick) -> tuple:
        info = tick.info
        return _where(tick.state, side), info.cause > 0, info.pop_deaths, info.pop_lifetime

    (_, state), (where, died, deaths, lifetime) = nmmo_jax.rollout(
        env, policy, key, ticks, rules, realms=realms, observe=observe, vmap_policy=False)
    where = jax.tree.map(lambda xs, x: jnp.concatenate([xs, x[None]]), where,
                         _where(state, side))  # the state after the last tick too
    return state.visits, state.terrain, deaths.sum(0), lifetime.sum(0), Track(*where, died)


def measure(competitors: Sequence[Competitor], key: jax.Array, realms: int, ticks: int,
            agents: int | None = None) -> Measurement:
    """Plays the competitors together (each its own populations; `agents` slots, default
    the first one's) in R fresh realms from `key` for T ticks, counting visits."""
    cfg, rules = arena_realm(competitors, agents)
    out = _play(arena(cfg.replace(count_visits=True)), tuple(c.network for c in competitors),
                tuple(c.population_params for c in competitors), rules, key, realms, ticks)
    return Measurement(*jax.tree.map(np.asarray, out))


def measure_key(seed: int) -> jax.Array:
    """The key of a seed's measurement runs: the same maps for every setting."""
    return jax.random.fold_in(jax.random.key(seed), 1)


# -- numbers -----------------------------------------------------------------------------

def interval(values: Sequence[float]) -> dict[str, Any]:
    """{"mean", "ci95": [low, high], "seeds": values}: the mean of per-seed values and its
    95% t interval over seeds (NaN bounds with one seed)."""
    values = [float(v) for v in values]
    # With one "death" per seed, lifetime_interval is the t interval of the values.
    mean, low, high = lifetime_interval(values, np.ones(len(values)))
    return {"mean": mean, "ci95": [low, high], "seeds": values}


def summarise(runs: Sequence[dict[str, float]]) -> dict[str, dict[str, Any]]:
    """Every number of per-seed runs (dicts with the same keys) as an `interval`."""
    return {key: interval([run[key] for run in runs]) for key in runs[0]}


def clearly_above(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether interval `a` lies above `b`: a higher mean, and a's lower bound above b's
    upper bound where both are known."""
    low, high = a["ci95"][0], b["ci95"][1]
    return a["mean"] > b["mean"] and (math.isnan(low) or math.isnan(high) or low > high)


def show(summary: dict[str, Any], scale: float = 1.0, digits: int = 1) -> str:
    """A summary as "mean [low, high]" (times `scale`); just the mean without bounds."""
    mean, (low, high) = summary["mean"] * scale, summary["ci95"]
    if math.isnan(low):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


# -- figures and outputs -----------------------------------------------------------------

def figure(columns: int, width: float = 4.5, height: float = 4.0) -> tuple[Figure, list]:
    """A figure with one row of `columns` axes (no pyplot, no display)."""
    fig = Figure(figsize=(columns * width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, list(fig.subplots(1, columns, squeeze=False)[0])


def plot_intervals(ax: Any, x: Sequence[float], summaries: Sequence[dict[str, Any]],
                   label: str, scale: float = 1.0, **style: Any) -> None:
    """Means with 95% error bars (none where a bound is NaN) at positions `x`."""
    mean = np.array([s["mean"] for s in summaries]) * scale
    bounds = np.array([s["ci95"] for s in summaries], np.float64).reshape(-1, 2) * scale
    error = np.nan_to_num(np.abs(bounds - mean[:, None]).T)  # [2, S]
    ax.errorbar(x, mean, yerr=error, capsize=4, marker="o", label=label, **style)


def save(fig: Figure, out: Path, name: str) -> str:
    """Writes `fig` to out/NAME and returns the path."""
    path = out / name
    fig.savefig(path)
    return str(path)


def _plain(value: Any) -> Any:
    """`value` with numpy numbers and arrays as Python ones and NaN as None (strict JSON)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def finish(out: Path, name: str, args: argparse.Namespace, base: TrainConfig,
           numbers: dict[str, Any], figures: list[str], verdict: str, start: float) -> None:
    """Writes out/NAME.json (the verdict, the numbers, the figures, every setting and the
    machine) and prints the verdict line."""
    document = {
        "experiment": name, "verdict": verdict, **numbers, "figures": figures,
        "settings": vars(args), "train_config": dataclasses.asdict(base),
        "seconds": time.perf_counter() - start,
        "machine": {"jax": jax.__version__, "device": jax.devices()[0].device_kind,
                    "platform": platform.platform()}}
    (out / f"{name}.json").write_text(json.dumps(_plain(document), indent=1) + "\n")
    print(verdict)
