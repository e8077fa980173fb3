"""Evaluation of trained populations: lifetimes, tournaments and GIFs.

A *competitor* is one checkpoint's populations (its network and its [P_c, ...]
parameters). `evaluate` places one or more competitors in the same realms: the realm
has P = sum of P_c populations, competitor c owns populations [offset_c, offset_c + P_c)
and so the slots i with i % P in that range (the slots are split evenly). Each
competitor's networks run only on their own slots. R realms are played for T ticks
from fresh resets and every population's mean lifetime (over the agents that died) is
reported; a tournament ranks competitors by it.

    python train/evaluate.py runs/chaos/checkpoint.msgpack --realms 16 --ticks 500
    python train/evaluate.py runs/a/checkpoint.msgpack runs/b/checkpoint.msgpack --gif t.gif
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

if __package__ in (None, ""):  # run as a script: import the `train` package, not this folder
    sys.path[0] = str(Path(__file__).resolve().parents[1])

import jax
import jax.numpy as jnp
import numpy as np

import nmmo_jax
from train import checkpoint
from train.networks import ActionDist, PolicyOutput, make_network
from train.populations import from_pops, init_populations, to_pops
from train.ppo import TrainConfig


class Competitor(NamedTuple):
    """One checkpoint's populations."""

    name: str
    network: Any  # Flax module of one population
    params: Any  # leaves [P_c, ...]
    config: TrainConfig

    @property
    def pops(self) -> int:
        return jax.tree.leaves(self.params)[0].shape[0]


def load_competitor(path: str | os.PathLike, name: str | None = None) -> Competitor:
    """The network and population parameters stored in a training checkpoint."""
    stored = checkpoint.read(path)["config"]
    known = {f for f in TrainConfig.__dataclass_fields__}
    config = TrainConfig(**{k: v for k, v in stored.items() if k in known})
    network = make_network(config.network, config.hidden or None, config.noop_bias)
    env = nmmo_jax.Env(config.env_config())

    def init() -> Any:
        obs, _ = env.reset(jax.random.key(0), env.default_params)
        return init_populations(network, jax.random.key(0), obs, config.pops)

    template = jax.eval_shape(init)
    params, _ = checkpoint.restore(path, template, prefix=".params")
    return Competitor(name or str(path), network, params, config)


def joint_policy(networks: Sequence[Any], params: Sequence[Any], obs: nmmo_jax.Observation
                 ) -> PolicyOutput:
    """Every slot's policy output, each competitor's network on its own populations.

    `networks[c]` and `params[c]` (leaves [P_c, ...]) are competitor c's; `obs` leaves are
    [R, N, ...] of a realm with P = sum of P_c populations (slot i is population i % P).
    """
    sizes = [jax.tree.leaves(p)[0].shape[0] for p in params]
    split = jax.tree.map(lambda x: to_pops(x, sum(sizes), 1), obs)  # [P, R, N/P, ...]
    outputs, offset = [], 0
    for network, own, size in zip(networks, params, sizes, strict=True):  # one per checkpoint
        part = jax.tree.map(operator.itemgetter(slice(offset, offset + size)), split)
        outputs.append(jax.vmap(network.apply)(own, part))
        offset += size
    joined = jax.tree.map(lambda *xs: jnp.concatenate(xs), *outputs)
    return jax.tree.map(lambda y: from_pops(y, 1), joined)


def arena_config(competitors: Sequence[Competitor], agents: int | None = None
                 ) -> nmmo_jax.Config:
    """The realm the competitors meet in: the first one's rules and map, every competitor's
    populations, `agents` slots (default: the first one's)."""
    if agents is not None:
        _check_count("agents", agents)
    first = competitors[0].config
    for c in competitors[1:]:
        if (c.config.entities, c.config.preset) != (first.entities, first.preset):
            raise ValueError(f"{c.name} was trained with other entity slots or preset than "
                             f"{competitors[0].name}; they cannot share a realm")
    n_pops = sum(c.pops for c in competitors)
    agents = first.agents if agents is None else agents
    if agents % n_pops:
        raise ValueError(f"{agents} agent slots cannot be split among {n_pops} populations; "
                         f"choose --agents as a multiple of {n_pops}")
    return nmmo_jax.config(first.preset, map_size=first.map_size, lava_border=first.lava_border,
                           n_agents=agents, n_pops=n_pops, n_entities=first.entities,
                           reward_mode=first.reward_mode)


def _check_count(name: str, value: Any) -> None:
    """Raises `ValueError` naming `name` unless `value` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


@functools.lru_cache(maxsize=8)
def arena(cfg: nmmo_jax.Config) -> nmmo_jax.Env:
    """One `Env` per arena shape, so that evaluations of the same shape share programs.

    Configs compare by their static fields only; callers pass the rule numbers
    explicitly, so a cached `Env`'s default params are never used."""
    return nmmo_jax.Env(cfg)


@functools.partial(jax.jit, static_argnames=("env", "networks", "realms", "ticks"))
def _play(env: nmmo_jax.Env, networks: tuple[Any, ...], params: tuple[Any, ...],
          env_params: nmmo_jax.Params, key: jax.Array, realms: int, ticks: int
          ) -> tuple[jax.Array, jax.Array]:
    """Deaths and summed lifetimes per population ([P] each) over R fresh realms x T ticks."""
    reset_key, run_key = jax.random.split(key)
    obs, state = jax.vmap(env.reset, (0, None))(jax.random.split(reset_key, realms), env_params)

    def tick(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        actions = ActionDist(joint_policy(networks, params, obs)).sample(act_key)
        obs, state, _, _, info = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(step_key, realms), state, actions, env_params)
        return (obs, state), (info.pop_deaths.sum(0), info.pop_lifetime.sum(0))

    _, (deaths, lifetime) = jax.lax.scan(tick, (obs, state), jax.random.split(run_key, ticks))
    return deaths.sum(0), lifetime.sum(0)


def evaluate(competitors: Sequence[Competitor], key: jax.Array, realms: int = 16,
             ticks: int = 500, agents: int | None = None) -> dict[str, Any]:
    """Plays R fresh realms for T ticks; returns per-population and per-competitor
    lifetimes ({"population_lifetime": [P], "deaths": [P], "competitors": [...]},
    the competitors ranked by mean lifetime, best first)."""
    _check_count("realms", realms)
    _check_count("ticks", ticks)
    cfg = arena_config(competitors, agents)
    deaths, lifetime = (np.asarray(x, np.float64) for x in _play(
        arena(cfg), tuple(c.network for c in competitors), tuple(c.params for c in competitors),
        cfg.params, key, realms, ticks))
    table, offset = [], 0
    for c in competitors:
        own = slice(offset, offset + c.pops)
        table.append({"name": c.name, "pops": list(range(offset, offset + c.pops)),
                      "lifetime": float(lifetime[own].sum() / max(deaths[own].sum(), 1)),
                      "deaths": int(deaths[own].sum())})
        offset += c.pops
    return {"population_lifetime": (lifetime / np.maximum(deaths, 1)).tolist(),
            "deaths": deaths.astype(int).tolist(),
            "competitors": sorted(table, key=lambda row: -row["lifetime"])}


def save_gif(competitors: Sequence[Competitor], key: jax.Array, path: str | os.PathLike,
             ticks: int = 200, agents: int | None = None) -> str:
    """Records one realm of the competitors for `ticks` ticks and writes a GIF with the
    environment's renderer (`nmmo_jax.render`, imported only here)."""
    from nmmo_jax import render

    _check_count("ticks", ticks)
    cfg = arena_config(competitors, agents)
    networks, params = [c.network for c in competitors], [c.params for c in competitors]

    def policy(key: jax.Array, obs: nmmo_jax.Observation) -> nmmo_jax.Actions:
        batched = jax.tree.map(lambda x: x[None], obs)
        actions = ActionDist(joint_policy(networks, params, batched)).sample(key)
        return jax.tree.map(lambda x: x[0], actions)

    trajectory = render.record(arena(cfg), policy, key, cfg.params, ticks=ticks)
    return render.save_gif(trajectory, path, progress=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", help="training checkpoint files")
    parser.add_argument("--realms", type=int, default=16)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--agents", type=int, default=None,
                        help="agent slots per realm (default: the first checkpoint's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gif", default=None, help="write a GIF of one realm here")
    parser.add_argument("--gif-ticks", type=int, default=200)
    args = parser.parse_args(argv)
    for name in ("realms", "ticks", "gif_ticks", "agents"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"argument --{name.replace('_', '-')}: must be >= 1, got {value}")
    if not 0 <= args.seed < 2**32:
        parser.error(f"argument --seed: must be in [0, 2**32), got {args.seed}")

    try:  # unreadable checkpoints, or competitors that cannot share a realm
        competitors = [load_competitor(p) for p in args.checkpoints]
        arena_config(competitors, args.agents)
    except ValueError as err:
        parser.error(str(err))
    key = jax.random.key(args.seed)
    result = evaluate(competitors, key, args.realms, args.ticks, args.agents)
    print(f"{args.realms} realms x {args.ticks} ticks; mean lifetime of agents that died")
    for rank, row in enumerate(result["competitors"], 1):
        print(f"{rank:>3}. {row['lifetime']:7.1f} ticks  ({row['deaths']} deaths)  {row['name']}")
    print("per population:", " ".join(f"{x:.1f}" for x in result["population_lifetime"]))
    if args.gif:
        print("wrote", save_gif(competitors, jax.random.fold_in(key, 1), args.gif,
                                args.gif_ticks, args.agents))


if __name__ == "__main__":
    main()
