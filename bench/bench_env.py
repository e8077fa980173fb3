"""Environment throughput: agent-steps per second over a sweep of vmapped realms.

Chaos preset, random legal actions (uniform move, uniform style, target uniform among
the slots that style can hit), observations included. Random agents die fast, so
`spawn_per_tick` is set to n_agents: every free slot refills each tick and the realm
stays full. An agent-step is one live agent acting for one tick.

    python bench/bench_env.py                 # sweep 1 ... 1024 realms
    python bench/bench_env.py --realms 64 256 --ticks 100

Each realm count is timed over `--repeats` calls of `--ticks` ticks; the median is shown.
"""

from __future__ import annotations

import argparse
import platform
import resource
import statistics
import time

import jax
import jax.numpy as jnp

import nmmo_jax
from nmmo_jax.policies import random_policy


def make_rollout(env: nmmo_jax.Env, ticks: int):
    """A jitted rollout of `ticks` ticks over a batch of realms; returns live agent-steps."""

    def tick(carry, key):
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        n_realms = obs.alive.shape[0]
        actions = jax.vmap(random_policy)(jax.random.split(act_key, n_realms), obs)
        live = jnp.sum(obs.alive)
        obs, state, _, _, _ = jax.vmap(env.step, (0, 0, 0, None))(
            jax.random.split(step_key, n_realms), state, actions, params)
        return (obs, state), live

    params = env.default_params.replace(spawn_per_tick=jnp.int32(env.n_agents))

    @jax.jit
    def rollout(key, obs, state):
        (obs, state), live = jax.lax.scan(tick, (obs, state), jax.random.split(key, ticks))
        return obs, state, jnp.sum(live)

    def reset(key, n_realms):
        return jax.vmap(env.reset, (0, None))(jax.random.split(key, n_realms), params)

    return jax.jit(reset, static_argnums=1), rollout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realms", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--agents", type=int, default=128)
    parser.add_argument("--pops", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median is shown")
    args = parser.parse_args()

    env = nmmo_jax.Env(nmmo_jax.config("chaos", n_agents=args.agents, n_pops=args.pops))
    reset, rollout = make_rollout(env, args.ticks)
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}), "
          f"{jax.device_count()} device(s); chaos, {args.agents} agents, {args.ticks} ticks per call")
    print(f"{'realms':>7} {'compile s':>10} {'agent-steps/s':>14} {'realm-steps/s':>14} {'peak RSS MiB':>13}")
    best = 0.0
    for n_realms in args.realms:
        key = jax.random.key(n_realms)
        start = time.perf_counter()
        obs, state = reset(key, n_realms)
        compiled = rollout.lower(key, obs, state).compile()
        compile_s = time.perf_counter() - start
        obs, state, live = compiled(key, obs, state)  # warm-up
        jax.block_until_ready(live)
        rates, elapsed = [], []
        for repeat in range(args.repeats):
            start = time.perf_counter()
            obs, state, live = compiled(jax.random.fold_in(key, repeat + 1), obs, state)
            live = int(live)
            elapsed.append(time.perf_counter() - start)
            rates.append(live / elapsed[-1])
        rate, elapsed = statistics.median(rates), statistics.median(elapsed)
        best = max(best, rate)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{n_realms:>7} {compile_s:>10.1f} {rate:>14,.0f} "
              f"{n_realms * args.ticks / elapsed:>14,.0f} {rss:>13,.0f}")
    print(f"best: {best:,.0f} agent-steps/s")


if __name__ == "__main__":
    main()
