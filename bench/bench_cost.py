"""A device-independent cost figure: flops and bytes accessed per agent-step of the
environment and per live sample of the training update, from XLA's own cost analysis of
the compiled programs (`jax.jit(f).lower(...).compile().cost_analysis()`), and the rate
they would allow on a GPU whose memory bandwidth is the only limit.

    python bench/bench_cost.py                    # Chaos, 128 slots, TrainConfig defaults
    python bench/bench_cost.py --realms 256 --network large   # any flag of train/train.py

Environment: one tick of 64 realms (`--env-realms`), every slot holding an agent (as in
bench/bench_env.py, which refills every free slot each tick): the compiled step costs
the same whatever the slots hold, and in a full realm every slot-step is an agent-step.
It is shown as `nmmo_jax.make` builds it, and again counting visits (`count_visits`, the
exploration counter), as the trainer runs it; the training figures use the second.

Training, per live sample (a slot-step that held an agent): the rollout's network call
on a chunk of live slots (`act_chunk` per population: forward, Gumbel-max sampling,
log-probability), plus `epochs` times one minibatch step (forward and backward of the
loss, Adam), each divided by the live samples it processes. The gathers that pick those
live samples out of all the slots are added as reading and writing the gathered rows
(twice their bytes, no flops): XLA's analysis counts a gather as reading its whole
operand, here every sample of the update, which no gather does.

The whole update is not analysed in one piece: XLA counts a loop's body once, whatever
its trip count, and the update's loops run a data-dependent number of times. For the
same reason the environment's figure counts once the body of the one loop inside a
tick (the placing of the nearest entities in the observation, at most K rounds, which
exits early).

The figures come from the compiler of the machine that runs this (its fusion decides the
bytes accessed); a GPU compiler fuses differently, so they are estimates of the GPU's
traffic, not measurements. The bandwidth assumed is an NVIDIA H100 SXM's 3.35 TB/s.
"""

from __future__ import annotations

import argparse
import platform
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax import ShapeDtypeStruct

import nmmo_jax
from train.networks import ActionDist
from train.populations import action_noise, init_populations, sample_actions
from train.ppo import Trainer, Transition, make_train, ppo_loss
from train.train import parse_args

H100_BYTES_PER_S = 3.35e12  # NVIDIA H100 SXM HBM3 bandwidth


def cost(fn: Any, *args: Any) -> tuple[float, float]:
    """(flops, bytes accessed) of `fn` compiled for `args` (arrays or ShapeDtypeStructs)."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    if isinstance(analysis, list):  # older jax: one dict per program
        analysis = analysis[0]
    return float(analysis["flops"]), float(analysis["bytes accessed"])


def rows_of(tree: Any, rows: tuple[int, ...], lead: int = 2) -> Any:
    """ShapeDtypeStructs of `tree`'s leaves with their `lead` leading axes replaced by `rows`."""
    return jax.tree.map(lambda x: ShapeDtypeStruct(rows + x.shape[lead:], x.dtype), tree)


def env_step_cost(env: nmmo_jax.Env, realms: int) -> tuple[float, float, int]:
    """(flops, bytes, agent-steps) of one tick of `realms` full realms."""
    params = env.default_params.replace(spawn_per_tick=jnp.int32(env.n_agents))
    keys = jax.random.split(jax.random.key(0), realms)
    _, state = jax.eval_shape(jax.vmap(env.reset, (0, None)), keys, params)
    actions = nmmo_jax.Actions(*[ShapeDtypeStruct((realms, env.n_agents), jnp.int32)] * 3)
    step = jax.vmap(env.step, (0, 0, 0, None))
    return (*cost(step, keys, state, actions, params), realms * env.n_agents)


def gathered_bytes(tree: Any) -> float:
    """Bytes a gather of `tree`'s rows moves: it reads them and writes them once each."""
    return 2.0 * sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(tree))


def act_cost(trainer: Trainer, obs: Any, params: Any) -> tuple[float, float, int]:
    """(flops, bytes, live samples) of one network call of the rollout on the trainer's
    act chunk of live slots for every network, and the gather of those slots."""
    cfg = trainer.config
    slots = cfg.realms * cfg.agents * trainer.learners // (cfg.pops * trainer.nets)
    chunk = min(trainer.act_chunk, slots)  # as `act_live` caps it
    part = rows_of(jax.eval_shape(trainer.network.inputs, obs), (trainer.nets, chunk))
    noise = rows_of(action_noise(jax.random.key(0), (1, 1), cfg.entities),
                    (trainer.nets, chunk))

    def act(params, part, noise):
        out = jax.vmap(trainer.network.apply)(params, part)
        actions = sample_actions(out, noise)
        return actions, ActionDist(out).log_prob(actions), out.value

    flops, bytes_ = cost(act, params, part, noise)
    return flops, bytes_ + gathered_bytes((part, noise)), trainer.nets * chunk


def gradient_step_cost(trainer: Trainer, obs: Any, params: Any) -> tuple[float, float, int]:
    """(flops, bytes, live samples) of one minibatch step on the trainer's minibatch of
    live samples for every network (loss gradient, Adam), and the gather of those samples."""
    cfg = trainer.config
    rows = (trainer.nets, trainer.minibatch_size)
    per_sample = ShapeDtypeStruct(rows, jnp.float32)
    actions = nmmo_jax.Actions(*[ShapeDtypeStruct(rows, jnp.int32)] * 3)
    flags = ShapeDtypeStruct(rows, jnp.bool_)
    inputs = rows_of(jax.eval_shape(trainer.network.inputs, obs), rows)
    batch = (Transition(inputs, actions, per_sample, per_sample, per_sample, flags, flags),
             per_sample, per_sample)  # samples, advantages, targets
    opt_state = jax.eval_shape(jax.vmap(trainer.optimizer.init), params)
    grad_fn = jax.vmap(jax.value_and_grad(
        lambda p, b, a, t: ppo_loss(trainer.network, cfg, p, b, a, t), has_aux=True))

    def step(params, opt_state, batch):
        (_, aux), grads = grad_fn(params, *batch)
        updates, opt_state = jax.vmap(trainer.optimizer.update)(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, aux

    flops, bytes_ = cost(step, params, opt_state, batch)
    return flops, bytes_ + gathered_bytes(batch), rows[0] * rows[1]


def report(name: str, flops: float, bytes_: float, units: int, unit: str) -> float:
    """Prints the per-unit figures of a program; returns its bytes per unit."""
    per_flops, per_bytes = flops / units, bytes_ / units
    print(f"{name:<34} {per_flops:>12,.0f} {per_bytes:>14,.0f} {per_flops / per_bytes:>9.2f} "
          f"{H100_BYTES_PER_S / per_bytes / 1e6:>14,.1f}  per {unit}")
    return per_bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--env-realms", type=int, default=64, help="realms of the env step")
    args, rest = parser.parse_known_args()
    config, _ = parse_args(rest)  # TrainConfig's flags, as train/train.py reads them
    trainer = make_train(config)
    env = trainer.env
    print(f"jax {jax.__version__}, XLA cost analysis of programs compiled for "
          f"{jax.devices()[0].device_kind} ({platform.processor() or platform.machine()}); "
          f"{config.preset}, {config.agents} slots, {config.pops} pops, {config.map_size} x "
          f"{config.map_size} map, {config.network} network")
    print(f"bandwidth-bound rate assumes an NVIDIA H100 SXM's {H100_BYTES_PER_S / 1e12:.2f} "
          f"TB/s; the bytes are those this machine's compiler would move, an estimate for "
          f"a GPU")
    print(f"{'program':<34} {'flops':>12} {'bytes':>14} {'flops/B':>9} {'M units/s cap':>14}")

    report(f"env step, {args.env_realms} full realms", *env_step_cost(
        nmmo_jax.Env(env.cfg.replace(count_visits=False)), args.env_realms), "agent-step")
    env_bytes = report("  the same, counting visits (trainer)", *env_step_cost(
        env, args.env_realms), "agent-step")
    keys = jax.random.split(jax.random.key(0), config.realms)
    obs, _ = jax.eval_shape(jax.vmap(env.reset, (0, None)), keys, env.default_params)
    params = jax.eval_shape(
        lambda key, obs: init_populations(trainer.network, key, obs, trainer.nets),
        jax.random.key(0), obs)
    act = act_cost(trainer, obs, params)
    step = gradient_step_cost(trainer, obs, params)
    act_bytes = report(f"rollout network call ({act[2] // trainer.nets}/network)", *act,
                       "live sample")
    step_bytes = report(f"gradient step ({step[2] // trainer.nets}/network)", *step,
                        "live sample")
    epochs = 1 if config.algo == "pg" else config.epochs
    update_bytes = act_bytes + epochs * step_bytes
    update_flops = act[0] / act[2] + epochs * step[0] / step[2]
    print(f"training update per live sample ({epochs} epoch(s)): {update_flops:,.0f} flops, "
          f"{update_bytes:,.0f} bytes: at most {H100_BYTES_PER_S / update_bytes / 1e6:,.1f} M "
          f"live samples/s on the bandwidth alone")
    total = env_bytes + update_bytes
    print(f"a full realm's agent-step and its training: {total:,.0f} bytes, at most "
          f"{H100_BYTES_PER_S / total / 1e6:,.1f} M trained agent-steps/s; with a fraction f "
          f"of the slots live, the environment's share per live agent-step is "
          f"{env_bytes:,.0f} / f bytes")


if __name__ == "__main__":
    main()
