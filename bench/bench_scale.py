"""Training throughput against the number of devices: slot-steps and live agent-steps per
second of whole PPO updates with the realms split across 1, 2, 4, ... devices.

    python bench/bench_scale.py                       # 1, 2 and 4 devices, TrainConfig defaults
    python bench/bench_scale.py --device-counts 1 8 --realms 64   # any flag of train/train.py

Each device count runs in its own Python process (JAX fixes its devices when it starts),
the same global batch (--realms realms x --rollout ticks) every time. Where JAX finds
only CPUs, each process gets that many forced host devices
(XLA_FLAGS=--xla_force_host_platform_device_count=N): they share the machine's cores, so
the figures check that the data-parallel trainer runs correctly at every count, not that
it gets faster. On a machine with several GPUs the counts are real GPUs; counts above
the number JAX sees are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

import jax

from train.ppo import make_train
from train.train import parse_args


def measure(devices: int, chunks: int, flags: list[str]) -> dict[str, float]:
    """Compiles and times `chunks` chunks of updates on `devices` devices, in this process."""
    config, _ = parse_args(flags)
    config = dataclasses.replace(config, devices=devices)
    trainer = make_train(config)
    start = time.perf_counter()
    runner, metrics = trainer.run(trainer.init(jax.random.key(config.seed)))
    jax.block_until_ready(metrics)
    compile_s = time.perf_counter() - start
    live = seconds = 0.0
    for _ in range(chunks):
        start = time.perf_counter()
        runner, metrics = trainer.run(runner)
        live += float(metrics["live_steps"].sum())
        seconds += time.perf_counter() - start
    return {"devices": trainer.mesh.size, "compile_s": compile_s,
            "slot_steps_per_s": config.steps_per_update * config.chunk * chunks / seconds,
            "live_steps_per_s": live / seconds}


def run_count(devices: int, chunks: int, flags: list[str], cpu: bool) -> dict[str, float]:
    """`measure` in a fresh Python process (with `devices` forced host devices on CPU)."""
    env = dict(os.environ)
    if cpu:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "")
                            + f" --xla_force_host_platform_device_count={devices}")
    command = [sys.executable, __file__, "--one", str(devices), "--chunks", str(chunks), *flags]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{devices} device(s) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--device-counts", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--chunks", type=int, default=2, help="timed calls after warm-up")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process's count
    args, flags = parser.parse_known_args()
    if args.one is not None:
        print(json.dumps(measure(args.one, args.chunks, flags)))
        return

    config, _ = parse_args(flags)
    kind, cpu = jax.devices()[0].device_kind, jax.default_backend() == "cpu"
    counts = [n for n in args.device_counts if cpu or n <= jax.device_count()]
    print(f"jax {jax.__version__}; {config.preset}, {config.agents} slots, {config.pops} pops, "
          f"{config.realms} realms x {config.rollout} ticks = {config.steps_per_update:,} "
          f"slot-steps per update, {config.chunk} updates per call, {args.chunks} timed calls")
    if cpu:
        print(f"forced CPU devices on {os.cpu_count()} core(s) of "
              f"{platform.processor() or platform.machine()}: every count shares the same "
              f"cores, so this checks that scaling out works, not speed")
    else:
        print(f"devices: {kind}")
    print(f"{'devices':>8} {'compile s':>10} {'slot-steps/s':>13} {'live agent-steps/s':>19} "
          f"{f'vs {counts[0]}':>6}")
    base = None
    for devices in counts:
        result = run_count(devices, args.chunks, flags, cpu)
        base = base or result["live_steps_per_s"]
        print(f"{result['devices']:>8} {result['compile_s']:>10.1f} "
              f"{result['slot_steps_per_s']:>13,.0f} {result['live_steps_per_s']:>19,.0f} "
              f"{result['live_steps_per_s'] / base:>6.2f}")


if __name__ == "__main__":
    main()
