"""Mean lifetime of the baseline policies: the yardstick for trained agents.

Runs each policy of `nmmo_jax.policies.POLICIES` in R realms for T ticks (Chaos, 128
agents, one spawn per tick as in the original) and prints the mean lifetime of the
agents that died, with the deaths by cause.

    python bench/bench_baselines.py --realms 8 --ticks 500
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp

import nmmo_jax
from nmmo_jax.config import CAUSE_NAMES
from nmmo_jax.policies import POLICIES
from nmmo_jax.rollout import Tick


def lifetimes(env: nmmo_jax.Env, policy, key: jax.Array, n_realms: int, ticks: int):
    """Summed lifetimes and deaths by cause over a batch of realms, [] and [causes]."""
    params = env.default_params

    def deaths(tick: Tick) -> tuple[jax.Array, jax.Array]:
        causes = jnp.stack([jnp.sum(tick.info.cause == c) for c in range(len(CAUSE_NAMES))])
        return jnp.sum(tick.info.lifetime), causes

    @jax.jit
    def run(key):
        start = jax.vmap(env.reset, (0, None))(jax.random.split(key, n_realms), params)
        _, (life, causes) = nmmo_jax.rollout(env, policy, key, ticks, params, start,
                                             realms=n_realms, observe=deaths)
        return life.sum(), causes.sum(0)

    return run(key)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realms", type=int, default=8)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--preset", default="chaos")
    args = parser.parse_args()
    env = nmmo_jax.Env(nmmo_jax.config(args.preset))
    print(f"{args.preset}, {env.n_agents} agents, {args.realms} realms x {args.ticks} ticks")
    for name, policy in POLICIES.items():
        total, causes = lifetimes(env, policy, jax.random.key(0), args.realms, args.ticks)
        deaths = int(causes[1:].sum())
        by_cause = ", ".join(f"{CAUSE_NAMES[c]} {int(causes[c])}"
                             for c in range(1, len(CAUSE_NAMES)))
        mean = int(total) / max(deaths, 1)
        print(f"{name:>8}: mean lifetime {mean:6.1f} ticks over {deaths} deaths ({by_cause})")


if __name__ == "__main__":
    main()
