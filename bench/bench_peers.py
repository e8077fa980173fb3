"""nmmo-jax beside PufferLib 3.0's Ocean NMMO3, a C Neural MMO (the fastest CPU peer), in
one sitting: random actions, agent-steps per second, runs interleaved, medians and ratio.

    python bench/bench_peers.py --peer ../peer          # or NMMO3_PEER=../peer
    python bench/bench_peers.py --peer ../peer --peer-processes 2   # the peer on 2 cores
    python bench/bench_peers.py --peer ../peer --cpu-devices 2      # ours as 2 CPU devices

Ours: `bench/bench_env.py`'s rollout (Chaos, 128 agents, every free slot refilled each
tick) over `--realms` vmapped realms, using every core XLA takes (one CPU device, or
the realms split over `--cpu-devices N`, one per core). The peer: its own
benchmark (`../shared/peers/bench_puffer_nmmo3.py`: 128 players on a 128 x 128 map,
one process per core), built by `../shared/peers/puffer_nmmo3.sh DIR`. The peer is a
different, richer game: players fight NPCs, not each other, and have items,
professions and a market, but no food or water; the ratio compares throughput only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jax
from bench_env import make_rollout, realm_sharding

import nmmo_jax
from train.train import add_cpu_devices, split_cpu

ROOT = Path(__file__).resolve().parent.parent
PEER_BENCH = ROOT.parent / "shared" / "peers" / "bench_puffer_nmmo3.py"
BUILD = ROOT.parent / "shared" / "peers" / "puffer_nmmo3.sh"
CAVEAT = ("NMMO3 is a different, richer game (no player combat, no food or water; NPCs, "
          "items, professions, a market): the ratio compares throughput only")


def peer_command(peer: Path, bench: Path, steps: int) -> list[str]:
    """The command that times the built peer; exits naming the build script when the
    peer folder does not hold a build."""
    python = peer / "venv" / "bin" / "python"
    binding = list((peer / "src" / "pufferlib" / "ocean" / "nmmo3").glob("binding*.so"))
    if not python.exists() or not binding:
        sys.exit(f"no NMMO3 build in {peer} (wanted venv/bin/python and src/pufferlib/ocean/"
                 f"nmmo3/binding*.so); build it with:\n  {BUILD} {peer}")
    if not bench.exists():
        sys.exit(f"the peer's benchmark {bench} is missing (pass --peer-bench)")
    return [str(python), str(bench), "--size", "128", "--players", "128", "--enemies", "-1",
            "--auto-items", "--steps", str(steps)]


def run_peer(command: list[str], peer: Path, processes: int) -> float:
    """Agent-steps per second of `processes` peer processes run at once, summed."""
    env = {**os.environ, "PYTHONPATH": str(peer / "src")}
    # Run from the build's folder: the peer links a `resources` folder into its cwd.
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True,
                             cwd=peer / "src")
            for _ in range(processes)]
    rates = []
    for run in runs:
        out, _ = run.communicate()
        if run.returncode:
            sys.exit(f"the peer's benchmark failed (exit {run.returncode}): {' '.join(command)}")
        rates.append(json.loads(out.strip().splitlines()[-1])["agent_steps_per_s"])
    return sum(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--peer", type=Path, default=os.environ.get("NMMO3_PEER"),
                        help="folder built by puffer_nmmo3.sh (default: $NMMO3_PEER)")
    parser.add_argument("--peer-bench", type=Path, default=PEER_BENCH)
    parser.add_argument("--peer-steps", type=int, default=50_000)
    parser.add_argument("--peer-processes", type=int, default=1)
    parser.add_argument("--realms", type=int, default=64)
    parser.add_argument("--ticks", type=int, default=50, help="ticks per timed call of ours")
    parser.add_argument("--calls", type=int, default=5, help="timed calls of ours per run")
    parser.add_argument("--repeats", type=int, default=3)
    add_cpu_devices(parser)
    args = parser.parse_args()
    split_cpu(parser, args.cpu_devices)
    if args.peer is None:
        sys.exit(f"pass --peer DIR or set NMMO3_PEER to a folder built with:\n  {BUILD} DIR")
    command = peer_command(args.peer.resolve(), args.peer_bench.resolve(), args.peer_steps)

    env = nmmo_jax.Env(nmmo_jax.config("chaos"))
    reset, rollout = make_rollout(env, args.ticks, realm_sharding(args.realms))
    key = jax.random.key(0)
    obs, state = reset(key, args.realms)
    compiled = rollout.lower(key, obs, state).compile()
    obs, state, _ = compiled(key, obs, state)  # warm-up

    ours, peers = [], []
    for repeat in range(args.repeats):
        live, start = 0, time.perf_counter()
        for call in range(args.calls):
            obs, state, count = compiled(jax.random.fold_in(key, repeat * args.calls + call),
                                         obs, state)
            live += int(count)
        ours.append(live / (time.perf_counter() - start))
        peers.append(run_peer(command, args.peer.resolve(), args.peer_processes))
        print(f"run {repeat + 1}: nmmo-jax {ours[-1]:,.0f}, NMMO3 {peers[-1]:,.0f} "
              f"agent-steps/s (load {os.getloadavg()[0]:.1f})", flush=True)
    mine, theirs = statistics.median(ours), statistics.median(peers)
    cores = f"{args.peer_processes} process{'es' if args.peer_processes > 1 else ''}"
    split = f", {jax.device_count()} CPU devices" if args.cpu_devices else ""
    print(f"nmmo-jax, {args.realms} realms x 128 agents, all cores{split}: {mine:,.0f} "
          f"agent-steps/s (median of {args.repeats})")
    print(f"NMMO3, 128 players on 128 x 128, {cores}: {theirs:,.0f} agent-steps/s")
    print(f"ratio nmmo-jax / NMMO3: {mine / theirs:.2f} ({CAVEAT})")


if __name__ == "__main__":
    main()
