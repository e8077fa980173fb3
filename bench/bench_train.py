"""Training throughput: slot-steps per second of whole PPO updates (rollout with the
policy network, GAE, minibatch epochs and optimiser steps), Chaos, 128 agent slots.

A slot-step is one agent slot of one realm for one tick, whether or not the slot holds a
live agent (the environment steps every slot); a live agent-step is a slot-step of a slot
that holds an agent (the network and the update only run on those). Both are printed.
The rollout alone (environment plus network forward and sampling) is timed separately.

    python bench/bench_train.py                         # defaults of TrainConfig
    python bench/bench_train.py --realms 32 --epochs 1 --chunks 3   # any flag of train/train.py

The realms are split across every device JAX sees, as train/train.py does (`--devices N`
for fewer); bench/bench_scale.py compares device counts.
"""

from __future__ import annotations

import argparse
import platform
import time

import jax

from train.ppo import make_train
from train.train import parse_args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--chunks", type=int, default=3, help="timed calls after warm-up")
    args, rest = parser.parse_known_args()
    config, _ = parse_args(rest)  # TrainConfig's flags, as train/train.py reads them
    trainer = make_train(config)
    print(f"jax {jax.__version__} on {trainer.mesh.size} x {jax.devices()[0].device_kind} "
          f"({platform.processor() or platform.machine()}); {config.preset}, {config.agents} "
          f"slots, {config.pops} pops playing {trainer.nets} {config.network} network(s); "
          f"{config.realms} realms x {config.rollout} ticks = {config.steps_per_update:,} "
          f"slot-steps per update, {config.epochs} epochs in minibatches of "
          f"{trainer.minibatch_size} live samples per network")

    runner = trainer.init(jax.random.key(0))
    start = time.perf_counter()
    runner, metrics = trainer.run(runner)
    jax.block_until_ready(metrics)
    print(f"first call (compile + {config.chunk} updates): {time.perf_counter() - start:.1f} s")

    slot_steps = live_steps = seconds = 0.0
    for _ in range(args.chunks):
        start = time.perf_counter()
        runner, metrics = trainer.run(runner)
        live = float(metrics["live_steps"].sum())
        elapsed = time.perf_counter() - start
        slot_steps += config.steps_per_update * config.chunk
        live_steps += live
        seconds += elapsed
        print(f"  {config.chunk} updates in {elapsed:.2f} s: "
              f"{config.steps_per_update * config.chunk / elapsed:,.0f} slot-steps/s, "
              f"{live / elapsed:,.0f} live agent-steps/s, "
              f"lifetime {float(metrics['lifetime'][-1].mean()):.1f}")

    jax.block_until_ready(trainer.rollout(runner))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        jax.block_until_ready(trainer.rollout(runner))
        times.append(time.perf_counter() - start)
    rollout_s = sorted(times)[len(times) // 2]
    print(f"rollout only (median of 5): {config.steps_per_update / rollout_s:,.0f} slot-steps/s")
    print(f"training: {slot_steps / seconds:,.0f} slot-steps/s, "
          f"{live_steps / seconds:,.0f} live agent-steps/s")


if __name__ == "__main__":
    main()
