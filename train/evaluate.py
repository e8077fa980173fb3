"""Evaluation of trained populations: lifetimes, tournaments and GIFs.

An *entrant* of a tournament is either a `Competitor`, one checkpoint's populations (its
network and its [P_c, ...] parameters), or a `Scripted` policy of `nmmo_jax.policies`
(`fighter`, `forager`, `random`) playing as many populations as the first checkpoint.
`evaluate` places the entrants in the same realms: the realm has P = sum of P_c
populations, entrant c owns populations [offset_c, offset_c + P_c) and so the slots i with
i % P in that range (the slots are split evenly between entrants of the same size). Each
entrant plays only its own slots. R realms are played for T ticks from fresh resets; every
entrant's mean lifetime (over its agents that died) is reported with a 95% confidence
interval over realms, and the entrants are ranked by it.

    nmmo-eval runs/chaos/checkpoint.msgpack --realms 16 --ticks 500 --vs fighter
    nmmo-eval runs/a/checkpoint.msgpack runs/b/checkpoint.msgpack --gif t.gif
"""

from __future__ import annotations

import argparse
import functools
import operator
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

if __package__ in (None, ""):  # run as a file: import the `train` package, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats

import nmmo_jax
from nmmo_jax.cli import HelpFormatter
from nmmo_jax.policies import POLICIES, Policy
from nmmo_jax.rollout import Tick
from train import checkpoint, zoo
from train.networks import ActionDist, PolicyOutput, make_network
from train.populations import from_pops, init_populations, per_population, to_pops
from train.ppo import TrainConfig


class Competitor(NamedTuple):
    """One checkpoint's populations."""

    name: str
    network: Any  # Flax module of one population's network
    params: Any  # leaves [G, ...], one per distinct network (`config.n_networks`)
    config: TrainConfig

    @property
    def pops(self) -> int:
        """Its populations: those that learnt in its training run."""
        return self.config.learning_pops

    @property
    def population_params(self) -> Any:
        """Each population's parameters, leaves [P_c, ...]: population p plays network
        p % G, as in training."""
        return per_population(self.params, self.pops)


class Scripted(NamedTuple):
    """A scripted policy as an entrant: `pops` populations that all play `policy`."""

    name: str
    policy: Policy
    pops: int


def load_competitor(path: str | os.PathLike, name: str | None = None) -> Competitor:
    """The network and population parameters stored in a training checkpoint, or in the
    shipped populations `pretrained:NAME` (`train.zoo`)."""
    if str(path).startswith(zoo.PREFIX):
        name = name or str(path)
        path = zoo.path(str(path)[len(zoo.PREFIX):])
    stored = checkpoint.read(path)["config"]
    known = {f for f in TrainConfig.__dataclass_fields__}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    network = make_network(config.network, config.hidden or None, config.noop_bias)
    env = nmmo_jax.Env(config.env_config())

    def init() -> Any:
        obs, _ = env.reset(jax.random.key(0), env.default_params)
        return init_populations(network, jax.random.key(0), obs, config.n_networks)

    template = jax.eval_shape(init)
    params, _ = checkpoint.restore(path, template, prefix=".params")
    return Competitor(name or str(path), network, params, config)


def lineup(entrants: Sequence[Competitor | Scripted | str | Policy]
           ) -> list[Competitor | Scripted]:
    """The entrants of a tournament with every scripted one made a `Scripted`: a policy
    name of `nmmo_jax.policies.POLICIES` or a `policy(key, obs)` function plays as many
    populations as the first checkpoint. Raises `ValueError` without a checkpoint (its
    realm is where the entrants meet) or for an unknown policy name."""
    first = next((e for e in entrants if isinstance(e, Competitor)), None)
    if first is None:
        raise ValueError("a tournament needs a checkpoint entrant: the realm, its rules and "
                         "its entity slots are the first checkpoint's")
    resolved: list[Competitor | Scripted] = []
    for entrant in entrants:
        if isinstance(entrant, str):
            if entrant not in POLICIES:
                raise ValueError(f"unknown policy {entrant!r}; choose one of {sorted(POLICIES)}")
            entrant = Scripted(entrant, POLICIES[entrant], first.pops)
        elif not isinstance(entrant, (Competitor, Scripted)):
            entrant = Scripted(getattr(entrant, "__name__", "scripted"), entrant, first.pops)
        resolved.append(entrant)
    return resolved


def training_lineup(competitor: Competitor) -> list[Competitor | Scripted]:
    """The competitor beside the scripted populations it was trained with (its config's
    `scripted`, in the same order): the populations of its training realms."""
    return [competitor, *(Scripted(name, POLICIES[name], count)
                          for name, count in competitor.config.scripted_pops)]


def _sizes(players: Sequence[Any], params: Sequence[Any]) -> list[int]:
    """Each player's number of populations."""
    return [p.pops if isinstance(p, Scripted) else jax.tree.leaves(own)[0].shape[0]
            for p, own in zip(players, params, strict=True)]


def joint_policy(players: Sequence[Any], params: Sequence[Any], obs: nmmo_jax.Observation
                 ) -> PolicyOutput:
    """Every slot's policy output, each competitor's network on its own populations.

    `players[c]` and `params[c]` (leaves [P_c, ...]) are competitor c's network and
    parameters, or a `Scripted` and None; `obs` leaves are [R, N, ...] of a realm with
    P = sum of P_c populations (slot i is population i % P). A scripted player's
    populations get zero outputs (its actions come from its policy). Needs one network.
    """
    sizes = _sizes(players, params)
    split = jax.tree.map(lambda x: to_pops(x, sum(sizes), 1), obs)  # [P, R, N/P, ...]
    outputs, offset = [], 0
    for player, own, size in zip(players, params, sizes, strict=True):  # one per entrant
        part = jax.tree.map(operator.itemgetter(slice(offset, offset + size)), split)
        scripted = isinstance(player, Scripted)
        outputs.append(None if scripted else jax.vmap(player.apply)(own, part))
        offset += size
    shaped = next(out for out in outputs if out is not None)
    outputs = [jax.tree.map(lambda y, size=size: jnp.zeros((size,) + y.shape[1:], y.dtype),
                            shaped) if out is None else out
               for out, size in zip(outputs, sizes, strict=True)]
    joined = jax.tree.map(lambda *xs: jnp.concatenate(xs), *outputs)
    return jax.tree.map(lambda y: from_pops(y, 1), joined)


def joint_actions(players: Sequence[Any], params: Sequence[Any], key: jax.Array,
                  obs: nmmo_jax.Observation) -> nmmo_jax.Actions:
    """Every slot's actions, [R, N] each (players and params as in `joint_policy`): the
    networks' slots sample `joint_policy` with `key`; scripted player c plays its own
    slots with keys from `jax.random.fold_in(key, c)`, one per realm. A scripted policy
    runs on every slot, as it would alone (some use the slot's index), and keeps its own."""
    bounds = np.cumsum([0, *_sizes(players, params)])
    population = jnp.arange(obs.alive.shape[1]) % bounds[-1]  # [N]
    actions = ActionDist(joint_policy(players, params, obs)).sample(key)
    for c, player in enumerate(players):
        if isinstance(player, Scripted):
            keys = jax.random.split(jax.random.fold_in(key, c), obs.alive.shape[0])
            theirs = jax.vmap(player.policy)(keys, obs)
            owned = (population >= bounds[c]) & (population < bounds[c + 1])  # [N]
            actions = jax.tree.map(lambda a, b, owned=owned: jnp.where(owned, a, b),
                                   theirs, actions)
    return actions


def arena_realm(entrants: Sequence[Competitor | Scripted], agents: int | None = None
                ) -> tuple[nmmo_jax.Config, nmmo_jax.Params]:
    """The realm the entrants meet in, as (config, rule numbers): the first checkpoint's
    rules and map, every entrant's populations, `agents` slots (default: the first
    checkpoint's). Raises `ValueError` for entrants that cannot share a realm."""
    if agents is not None:
        _check_count("agents", agents)
    competitors = [e for e in entrants if isinstance(e, Competitor)]
    first = competitors[0].config
    for c in competitors[1:]:
        if (c.config.entities, c.config.preset) != (first.entities, first.preset):
            raise ValueError(f"{c.name} was trained with other entity slots or preset than "
                             f"{competitors[0].name}; they cannot share a realm")
    n_pops = sum(e.pops for e in entrants)
    agents = first.agents if agents is None else agents
    if agents % n_pops:
        raise ValueError(f"{agents} agent slots cannot be split among {n_pops} populations; "
                         f"choose --agents as a multiple of {n_pops}")
    cfg = nmmo_jax.config(first.preset, map_size=first.map_size, lava_border=first.lava_border,
                          n_agents=agents, n_pops=n_pops, n_entities=first.entities)
    params = first.env_params()
    arena(cfg).check_params(params)
    return cfg, params


def _check_count(name: str, value: Any) -> None:
    """Raises `ValueError` naming `name` unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@functools.lru_cache(maxsize=8)
def arena(cfg: nmmo_jax.Config) -> nmmo_jax.Env:
    """One `Env` per arena shape, so that evaluations of the same shape share programs.

    A config holds only static fields; callers pass the rule numbers explicitly."""
    return nmmo_jax.Env(cfg)


def _players(entrants: Sequence[Competitor | Scripted]) -> tuple[tuple, tuple]:
    """The static part of each entrant (its network, or the `Scripted` itself) and its
    arrays (its population parameters, or None)."""
    players = tuple(e if isinstance(e, Scripted) else e.network for e in entrants)
    params = tuple(None if isinstance(e, Scripted) else e.population_params for e in entrants)
    return players, params


def _deaths(tick: Tick) -> tuple[jax.Array, jax.Array]:
    """Deaths and summed lifetimes of the agents that died this tick, [R, P] each."""
    return tick.info.pop_deaths, tick.info.pop_lifetime


@functools.partial(jax.jit, static_argnames=("env", "players", "realms", "ticks"))
def _play(env: nmmo_jax.Env, players: tuple[Any, ...], params: tuple[Any, ...],
          env_params: nmmo_jax.Params, key: jax.Array, realms: int, ticks: int
          ) -> tuple[jax.Array, jax.Array]:
    """Deaths and summed lifetimes per realm and population ([R, P] each) over R fresh
    realms x T ticks."""

    def policy(key: jax.Array, obs: nmmo_jax.Observation) -> nmmo_jax.Actions:
        return joint_actions(players, params, key, obs)

    _, (deaths, lifetime) = nmmo_jax.rollout(env, policy, key, ticks, env_params,
                                             realms=realms, observe=_deaths,
                                             vmap_policy=False)
    return deaths.sum(0), lifetime.sum(0)


def lifetime_interval(lifetime: Any, deaths: Any, level: float = 0.95
                      ) -> tuple[float, float, float]:
    """The mean lifetime of one side and its confidence interval over realms.

    `lifetime` and `deaths` are [R]: per realm, the summed lifetimes of the side's agents
    that died and their number. The mean is sum(lifetime) / sum(deaths), every agent that
    died weighing the same; realms are the independent samples, so the interval is the
    ratio estimator's t interval: mean -+ t(R - 1) * sqrt(sum_r (lifetime_r - mean *
    deaths_r)^2 / (R (R - 1))) / mean(deaths). With equal deaths in every realm this is
    the t interval of the realms' mean lifetimes. Returns (mean, low, high); the bounds
    are NaN with fewer than 2 realms or no deaths, and the mean is 0 without deaths.
    """
    lifetime, deaths = np.asarray(lifetime, np.float64), np.asarray(deaths, np.float64)
    realms, total = lifetime.size, deaths.sum()
    mean = lifetime.sum() / max(total, 1)
    if realms < 2 or total == 0:
        return float(mean), float("nan"), float("nan")
    spread = np.sqrt(np.sum((lifetime - mean * deaths) ** 2) / (realms * (realms - 1)))
    half = stats.t.ppf(0.5 + level / 2, realms - 1) * spread / deaths.mean()
    return float(mean), float(mean - half), float(mean + half)


def evaluate(entrants: Sequence[Competitor | Scripted | str | Policy], key: jax.Array,
             realms: int = 16, ticks: int = 500, agents: int | None = None) -> dict[str, Any]:
    """Plays R fresh realms for T ticks with the entrants (checkpoints, and scripted
    policies by name, function or `Scripted`; see `lineup`) sharing every realm.

    Returns {"realms": R, "ticks": T, "population_lifetime": [P], "deaths": [P],
    "competitors": rows}, one row per entrant, ranked by mean lifetime, best first:
    {"name", "scripted" (bool), "pops" (its populations), "lifetime" (mean over its agents
    that died), "ci95" ([low, high], `lifetime_interval` over realms), "deaths"}.
    """
    _check_count("realms", realms)
    _check_count("ticks", ticks)
    entrants = lineup(entrants)
    cfg, rules = arena_realm(entrants, agents)
    players, params = _players(entrants)
    deaths, lifetime = (np.asarray(x, np.float64) for x in _play(
        arena(cfg), players, params, rules, key, realms, ticks))  # [R, P] each
    table, offset = [], 0
    for e in entrants:
        own = slice(offset, offset + e.pops)
        mean, low, high = lifetime_interval(lifetime[:, own].sum(1), deaths[:, own].sum(1))
        table.append({"name": e.name, "scripted": isinstance(e, Scripted),
                      "pops": list(range(offset, offset + e.pops)), "lifetime": mean,
                      "ci95": [low, high], "deaths": int(deaths[:, own].sum())})
        offset += e.pops
    deaths, lifetime = deaths.sum(0), lifetime.sum(0)
    return {"realms": realms, "ticks": ticks,
            "population_lifetime": (lifetime / np.maximum(deaths, 1)).tolist(),
            "deaths": deaths.astype(int).tolist(),
            "competitors": sorted(table, key=lambda row: -row["lifetime"])}


def save_gif(entrants: Sequence[Competitor | Scripted | str | Policy], key: jax.Array,
             path: str | os.PathLike, ticks: int = 200, agents: int | None = None) -> str:
    """Records one realm of the entrants for `ticks` ticks and writes a GIF with the
    environment's renderer (`nmmo_jax.render`, imported only here)."""
    from nmmo_jax import render

    _check_count("ticks", ticks)
    entrants = lineup(entrants)
    cfg, rules = arena_realm(entrants, agents)
    players, params = _players(entrants)

    def policy(key: jax.Array, obs: nmmo_jax.Observation) -> nmmo_jax.Actions:
        batched = jax.tree.map(lambda x: x[None], obs)
        return jax.tree.map(lambda x: x[0], joint_actions(players, params, key, batched))

    trajectory = render.record(arena(cfg), policy, key, rules, ticks=ticks)
    return render.save_gif(trajectory, path, progress=False)


def main(argv: list[str] | None = None, prog: str = "nmmo-eval") -> None:
    """Runs a tournament of checkpoints and scripted policies and prints the ranking."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("checkpoints", nargs="+",
                        help="training checkpoint files, or pretrained:NAME for shipped "
                             "populations (pretrained:chaos, pretrained:law)")
    parser.add_argument("--vs", action="append", choices=sorted(POLICIES), default=None,
                        help="a scripted policy as one more entrant, with as many populations "
                             "as the first checkpoint (repeatable): %(choices)s "
                             "(default: checkpoints only)")
    parser.add_argument("--realms", type=int, default=16, help="realms played at once")
    parser.add_argument("--ticks", type=int, default=500, help="ticks per realm")
    parser.add_argument("--agents", type=int, default=None,
                        help="agent slots per realm (default: the first checkpoint's)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the maps and the play")
    parser.add_argument("--gif", default=None,
                        help="write a GIF of one realm here (default: no GIF)")
    parser.add_argument("--gif-ticks", type=int, default=200, help="ticks in the GIF")
    args = parser.parse_args(argv)
    for name in ("realms", "ticks", "gif_ticks", "agents"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {value}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"argument --seed: must be in [0, 2**32), got {args.seed}")

    try:  # unreadable checkpoints, or entrants that cannot share a realm
        entrants = lineup([load_competitor(p) for p in args.checkpoints] + (args.vs or []))
        arena_realm(entrants, args.agents)
    except ValueError as err:
        parser.error(str(err))
    key = jax.random.key(args.seed)
    result = evaluate(entrants, key, args.realms, args.ticks, args.agents)
    print(f"{args.realms} realms x {args.ticks} ticks; mean lifetime of agents that died "
          f"[95% confidence interval over realms]")
    for rank, row in enumerate(result["competitors"], 1):
        low, high = row["ci95"]
        print(f"{rank:>3}. {row['lifetime']:7.1f} ticks [{low:.1f}, {high:.1f}]  "
              f"({row['deaths']} deaths)  {row['name']}")
    print("per population:", " ".join(f"{x:.1f}" for x in result["population_lifetime"]))
    if args.gif:
        print("wrote", save_gif(entrants, jax.random.fold_in(key, 1), args.gif,
                                args.gif_ticks, args.agents))


if __name__ == "__main__":
    main(prog="python -m train.evaluate")
