"""Environment throughput: agent-steps per second over a sweep of vmapped realms.

Chaos preset, random legal actions (uniform move, uniform style, target uniform among
the slots that style can hit), observations included. Random agents die fast, so
`spawn_per_tick` is set to n_agents: every free slot refills each tick and the realm
stays full. An agent-step is one live agent acting for one tick.

    python bench/bench_env.py                 # sweep 1 ... 1024 realms
    python bench/bench_env.py --realms 64 256 --ticks 100
    python bench/bench_env.py --phases        # where a tick's time and bytes go, by phase
    python bench/bench_env.py --count-visits  # with the exploration counter kept
    python bench/bench_env.py --cpu-devices 2 # the CPU as 2 devices, realms split over them

Each realm count is timed over `--repeats` calls of `--ticks` ticks; the median is shown.
`--phases` times each phase of the tick and of the observation on its own, jitted and
vmapped over `--phase-realms` full realms (each phase materialises its inputs and
outputs, so the phases add up to more than the fused step), beside XLA's cost analysis
of each (flops and bytes accessed per agent-step), then lists the step's largest
operations by bytes (operands plus result, as XLA counts them; a loop body once).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import statistics
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import nmmo_jax
from nmmo_jax import game, observe
from nmmo_jax.config import LAVA
from nmmo_jax.policies import random_policy
from nmmo_jax.rollout import Tick
from train.train import add_cpu_devices, split_cpu


def _live(tick: Tick) -> jax.Array:
    """What the sweep keeps of a tick: the live agents that acted in it, summed over realms."""
    return jnp.sum(tick.obs.alive)


def realm_sharding(n_realms: int) -> NamedSharding | None:
    """The realms split evenly over every device JAX sees (e.g. `--cpu-devices`), or None
    (one device) when there is one device or they do not split evenly."""
    devices = jax.devices()
    if len(devices) == 1 or n_realms % len(devices):
        return None
    return NamedSharding(Mesh(devices, ("realm",)), PartitionSpec("realm"))


def make_rollout(env: nmmo_jax.Env, ticks: int, sharding: NamedSharding | None = None):
    """A jitted reset of R realms and a jitted rollout of `ticks` ticks over a batch of
    realms (`nmmo_jax.rollout`); the rollout returns the final obs and state and the live
    agent-steps. With `sharding` (`realm_sharding`), the realms stay split over devices."""
    params = env.default_params.replace(spawn_per_tick=jnp.int32(env.n_agents))

    def reset(key, n_realms):
        return jax.vmap(env.reset, (0, None))(jax.random.split(key, n_realms), params)

    def rollout(key, obs, state):
        (obs, state), live = nmmo_jax.rollout(env, random_policy, key, ticks, params,
                                              start=(obs, state), realms=obs.alive.shape[0],
                                              observe=_live)
        return obs, state, jnp.sum(live)

    if sharding is None:
        return jax.jit(reset, static_argnums=1), jax.jit(rollout)
    return (jax.jit(reset, static_argnums=1, out_shardings=sharding),
            jax.jit(rollout, in_shardings=(None, sharding, sharding),
                    out_shardings=(sharding, sharding, None)))


def cost(compiled: Any, units: int) -> tuple[float, float]:
    """(flops, bytes accessed) per unit from XLA's cost analysis of a compiled program."""
    analysis = compiled.cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per program
        analysis = analysis[0]
    return analysis["flops"] / units, analysis["bytes accessed"] / units


def tick_phases(env: nmmo_jax.Env, params: Any) -> dict[str, tuple[Callable, tuple[str, ...]]]:
    """Each phase of a tick and of the observation as a function of one realm's inputs
    (key, state, actions, and the grid index and counts window the observation builds
    first), with the names of its inputs."""
    cfg = env.cfg

    def attacks(state, actions):
        chosen = game.choose_attacks(state.agents, state.entity_ids, actions, params, cfg)
        return game.attack(state.agents, chosen, params, cfg)

    def upkeep(key, state):
        living = state.agents.alive
        agents = game.thaw(state.agents, living)
        return game.upkeep(game.draw(key, cfg).forage, state, agents, living, params, cfg)

    def spawn(key, state):  # a third of the slots free, as after a deadly tick
        free = jnp.arange(cfg.n_agents) % 3 == 0
        agents = state.agents.replace(alive=state.agents.alive & ~free)
        return game.spawn(game.draw(key, cfg), agents, params, cfg)

    def regrowth(key, state):
        return game.regrow(game.draw(key, cfg).regrow, state.terrain, state.capacity,
                           state.capacity, params)

    def windows(state, index):
        shown = jnp.minimum(index.count, 127).astype(jnp.int8).reshape(cfg.map_size, -1)
        return (observe.windows(observe.padded(state.tiles, LAVA, cfg), state.agents, cfg),
                observe.windows(observe.padded(shown, 0, cfg), state.agents, cfg))

    def neighbours(state, index, counts):
        return observe.nearest_entities(state.agents, index, counts, cfg)

    def offsets(state):
        pos = state.agents.pos
        return pos[jnp.maximum(state.entity_ids, 0)] - pos[:, None, :]

    def features(state):
        table = observe._agent_table(state.agents, params, cfg)
        return observe.entity_features(table, state.agents, state.entity_ids,
                                       offsets(state), cfg)

    def masks(state):
        ids = state.entity_ids
        return observe.target_mask(ids, offsets(state), params), ids >= 0

    counting = {"visits": (lambda state: game.count_visits(state.visits, state.agents),
                           ("state",))} if cfg.count_visits else {}
    return {
        "move": (lambda state, actions: game.move(state.agents, state.tiles, actions, cfg),
                 ("state", "actions")),
        "attacks": (attacks, ("state", "actions")),
        "upkeep": (upkeep, ("key", "state")),
        "spawn": (spawn, ("key", "state")),
        "regrowth": (regrowth, ("key", "state")),
        **counting,
        "grid index": (lambda state: observe.build_index(state.agents, cfg), ("state",)),
        "window crop": (windows, ("state", "index")),
        "neighbour search": (neighbours, ("state", "index", "counts")),
        "entity features": (features, ("state",)),
        "masks": (masks, ("state",)),
        "observe (all)": (lambda state: observe.observe(state, params, cfg), ("state",)),
        "step (all)": (lambda key, state, actions: env.step(key, state, actions, params),
                       ("key", "state", "actions")),
    }


def largest_ops(hlo: str, units: int, count: int) -> list[tuple[float, str, str]]:
    """The `count` largest top-level operations of an optimised HLO module by bytes per
    unit (operands plus result; a loop's body once), with their result shape and the
    jax operation they came from."""
    shape = re.compile(r"\b(pred|[su](?:8|16|32|64)|bf16|f16|f32|f64)\[([\d,]*)\]")
    width = {"pred": 1, "bf16": 2, "f16": 2}

    def size(text: str) -> int:
        return sum(int(np.prod([int(d) for d in dims.split(",") if d] or [1]))
                   * (width[kind] if kind in width else int(kind[1:]) // 8)
                   for kind, dims in shape.findall(text))

    bodies, entry, name = {}, None, None
    for line in hlo.splitlines():
        head = re.match(r"^(ENTRY )?%(\S+) .*\{$", line)
        if head:
            name = head.group(2)
            bodies[name] = []
            entry = name if head.group(1) else entry
        elif line.startswith("  %") and name:
            bodies[name].append(line)
    rows = []

    def visit(computation: str) -> None:
        results = {m.group(1): m.group(2) for line in bodies[computation]
                   if (m := re.match(r"\s*%(\S+) = (\(.*?\)|\S+) ", line))}
        for line in bodies[computation]:
            m = re.match(r"\s*%(\S+) = (\(.*?\)|\S+) ([a-z][\w-]*)\((.*?)\)(,|$)", line)
            if not m or m.group(3) in ("parameter", "constant", "tuple", "get-tuple-element",
                                       "bitcast"):
                continue
            if m.group(3) == "while":
                visit(re.search(r"body=%([\w.-]+)", line).group(1))
                continue
            operands = re.findall(r"%([\w.-]+)", m.group(4))
            total = size(m.group(2)) + sum(size(results.get(o, "")) for o in operands)
            origin = re.search(r'op_name="([^"]*)"', line)
            rows.append((total / units, m.group(2)[:28],
                         origin.group(1).split("/")[-1] if origin else m.group(3)))

    visit(entry)
    return sorted(rows, reverse=True)[:count]


def profile(env: nmmo_jax.Env, n_realms: int, repeats: int, top: int) -> None:
    """Prints each phase's time and cost at `n_realms` full realms, then the step's
    largest operations by bytes."""
    _, rollout = make_rollout(env, 20)
    reset, _ = make_rollout(env, 1)
    key = jax.random.key(0)
    obs, state = reset(key, n_realms)
    obs, state, _ = rollout(key, obs, state)  # a lived-in state: deaths, stacks, foraging
    params = env.default_params.replace(spawn_per_tick=jnp.int32(env.n_agents))
    inputs = {"key": jax.random.split(key, n_realms), "state": state,
              "actions": jax.vmap(random_policy)(jax.random.split(key, n_realms), obs)}
    phases = tick_phases(env, params)
    inputs["index"] = jax.jit(jax.vmap(phases["grid index"][0]))(state)
    inputs["counts"] = jax.jit(jax.vmap(lambda *a: phases["window crop"][0](*a)[1]))(
        state, inputs["index"])
    units = n_realms * env.n_agents
    print(f"{'phase':<36} {'compile s':>9} {'us/tick':>9} {'ns/agent-step':>14} "
          f"{'flops/agent-step':>17} {'bytes/agent-step':>17}")
    step = None
    for name, (fn, names) in phases.items():
        args = [inputs[n] for n in names]
        start = time.perf_counter()
        compiled = jax.jit(jax.vmap(fn)).lower(*args).compile()
        compile_s = time.perf_counter() - start
        jax.block_until_ready(compiled(*args))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            times.append(time.perf_counter() - start)
        seconds = statistics.median(times)
        flops, bytes_ = cost(compiled, units)
        print(f"{name:<36} {compile_s:>9.1f} {seconds * 1e6:>9,.0f} {seconds / units * 1e9:>14.1f} "
              f"{flops:>17,.0f} {bytes_:>17,.0f}")
        step = compiled
    print(f"\nlargest operations of the step by bytes (of {cost(step, units)[1]:,.0f} per "
          f"agent-step): bytes/agent-step, result, origin")
    for bytes_, result, origin in largest_ops(step.as_text(), units, top):
        print(f"{bytes_:>9,.0f}  {result:<28}  {origin}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realms", type=int, nargs="+", default=[1, 4, 16, 64, 256, 1024])
    parser.add_argument("--ticks", type=int, default=50)
    parser.add_argument("--agents", type=int, default=128)
    parser.add_argument("--pops", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls; the median is shown")
    parser.add_argument("--phases", action="store_true",
                        help="profile the phases of a tick instead of the sweep")
    parser.add_argument("--phase-realms", type=int, default=64)
    parser.add_argument("--top", type=int, default=25, help="operations listed by --phases")
    parser.add_argument("--count-visits", action="store_true",
                        help="keep the exploration counter State.visits (off by default)")
    add_cpu_devices(parser)
    args = parser.parse_args()
    split_cpu(parser, args.cpu_devices)

    env = nmmo_jax.Env(nmmo_jax.config("chaos", n_agents=args.agents, n_pops=args.pops,
                                       count_visits=args.count_visits))
    print(f"jax {jax.__version__} on {jax.devices()[0].device_kind} "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}), {jax.device_count()} device(s); chaos, {args.agents} "
          f"agents, {args.ticks} ticks per call, visits "
          f"{'counted' if args.count_visits else 'not counted'}")
    if args.phases:
        profile(env, args.phase_realms, max(args.repeats, 20), args.top)
        return
    print(f"{'realms':>7} {'compile s':>10} {'agent-steps/s':>14} {'realm-steps/s':>14} "
          f"{'peak RSS MiB':>13}")
    best = 0.0
    for n_realms in args.realms:
        key = jax.random.key(n_realms)
        reset, rollout = make_rollout(env, args.ticks, realm_sharding(n_realms))
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
    print(f"best: {best:,.0f} agent-steps/s (load {os.getloadavg()[0]:.1f} after the sweep)")


if __name__ == "__main__":
    main()
