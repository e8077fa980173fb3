"""PPO for Neural MMO populations, compiled end to end (PureJaxRL style).

`make_train(config)` returns a `Trainer`; `trainer(key)` runs the whole training as one
jitted program, and `trainer.init(key)` / `trainer.run(runner)` run it in chunks of
`config.chunk` updates per call (one compiled program, reused: the host loop between
chunks writes logs and checkpoints). One update:

1. Rollout: T ticks over B realms (env vmapped over realms, `lax.scan` over ticks); every
   slot acts with its population's network (`populations.apply_populations`).
2. GAE over each slot's stream. A slot's episode ends on the tick its agent dies
   (`done`); a later spawn in the slot starts a new one. Rollouts cut lifetimes at T and
   bootstrap from the value of the last observation.
3. Epochs over the live samples in minibatches of `minibatch_size` per population. The
   loss (clipped policy loss, value loss, entropy bonus) is computed per population,
   vmapped over the population axis, so each population's parameters get gradients from
   its own agents only; Adam with gradient clipping (`optax.chain(clip_by_global_norm,
   adamw)`) is vmapped the same way, so clipping is per population too.

Slots that are empty during a tick (the agent is dead and the slot not yet respawned,
`obs.alive` False) carry no loss and cost no compute: the rollout runs the network on
live slots only (`populations.act_live`), and each epoch shuffles every population's
live samples and steps through them in minibatches of `minibatch_size`, as many as the
population with the most live samples needs (a loop with a traced trip count; a
population with fewer fills its last minibatches with masked samples). Spawning refills
one slot per tick, so in Chaos with 128 slots only about as many slots are live as an
agent lives ticks: the work follows the live agents rather than the slots. Advantages
are normalised per population over its live samples.

Reward: the environment's `reward_mode` "alive" (+1 per tick survived, 0 on the tick of
death) times `reward_scale` by default. With discounting, "alive" and "death" (-1 at
death) differ only by an affine map of the return, but "alive" gives a dense,
well-scaled value target (1 - gamma^remaining_life, times reward_scale / (1 - gamma))
that is easy to fit; either can be chosen. The metric is mean lifetime.

`algo="pg"` is the v1.0-style vanilla policy gradient: discounted returns over each
lifetime (GAE with lambda = 1, bootstrapped by the value only where a life crosses the
end of a rollout), normalised advantages, one epoch, one gradient step on all the live
samples, no clipping.

Step counts (`total_steps`) are slot-steps: realms x agent slots x ticks, empty slots
included; metrics also report live agent-steps, the steps of slots that held an agent.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

import nmmo_jax
from nmmo_jax.config import CAUSE_NAMES, REWARD_MODES
from train.networks import ActionDist, PolicyOutput, make_network
from train.populations import (act_live, apply_populations, init_populations, take_chunk,
                               to_pops)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every setting of a training run; each field is a CLI flag of train/train.py."""

    # environment
    preset: str = "chaos"  # "base", "law" or "chaos"
    agents: int = 128  # agent slots per realm
    pops: int = 8  # populations; slot i plays for population i % pops
    map_size: int = 80  # side of the square map in tiles
    lava_border: int = 9  # width of the lava ring
    entities: int = 16  # K, entity slots per observation
    reward_mode: str = "alive"  # "alive" (+1 per tick alive) or "death" (-1 at death)
    reward_scale: float = 0.25  # multiplies the env reward (scales the value targets)
    # rollout and schedule
    realms: int = 16  # B, realms stepped in parallel
    rollout: int = 32  # T, ticks per rollout
    total_steps: float = 5e6  # slot-steps (realms x agents x ticks) over the run
    chunk: int = 10  # updates per compiled call (logging / checkpoint granularity)
    # algorithm
    algo: str = "ppo"  # "ppo" or "pg" (v1.0-style vanilla policy gradient)
    epochs: int = 2  # passes over the live samples per update
    minibatch_size: int = 128  # live samples per population per gradient step
    gamma: float = 0.99  # discount
    gae_lambda: float = 0.95  # GAE lambda (pg uses 1)
    clip: float = 0.2  # PPO ratio and value clipping
    vf_coef: float = 0.5  # weight of the value loss
    ent_coef: float = 0.001  # weight of the entropy bonus
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 1e-5  # AdamW weight decay
    max_grad_norm: float = 5.0  # per-population gradient clipping
    # network and populations
    network: str = "reference"  # "reference" (SPEC §8, H=32) or "large"
    hidden: int = 0  # 0: the network's default width
    noop_bias: float = 3.0  # initial target-head logit offset on the no-op (self) target
    act_chunk: int = 64  # live slots per population per network call in the rollout
    same_init: bool = False  # start every population from the same parameters
    seed: int = 0  # PRNG seed of the whole run
    # outputs (used by train/train.py)
    out: str = "runs/default"  # output folder
    checkpoint_every: int = 50  # updates between checkpoints (rounded up to chunks)
    eval_ticks: int = 200  # ticks of the GIF recorded at the end; 0 for none

    def __post_init__(self) -> None:
        if self.algo not in ("ppo", "pg"):
            raise ValueError(f"algo must be 'ppo' or 'pg', got {self.algo!r}")
        if self.reward_mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {list(REWARD_MODES)}, "
                             f"got {self.reward_mode!r}")
        for name in ("realms", "rollout", "chunk", "epochs", "minibatch_size", "act_chunk",
                     "agents", "pops"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.reward_scale <= 0:
            raise ValueError(f"reward_scale must be > 0, got {self.reward_scale}")

    def env_config(self) -> nmmo_jax.Config:
        """The environment's static config and rule numbers for this run."""
        return nmmo_jax.config(
            self.preset, map_size=self.map_size, lava_border=self.lava_border,
            n_agents=self.agents, n_pops=self.pops, n_entities=self.entities,
            reward_mode=self.reward_mode)

    @property
    def steps_per_update(self) -> int:
        return self.realms * self.rollout * self.agents

    @property
    def num_updates(self) -> int:
        """Updates of the run: total_steps / steps_per_update, rounded up to whole chunks."""
        updates = max(1, math.ceil(self.total_steps / self.steps_per_update))
        return math.ceil(updates / self.chunk) * self.chunk


class Transition(NamedTuple):
    """One tick of every slot of every realm; leaves [B, N, ...] (stacked: [T, B, N, ...])."""

    obs: nmmo_jax.Observation
    actions: nmmo_jax.Actions
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # scaled
    done: jax.Array
    valid: jax.Array  # the slot held a live agent when it acted (obs.alive)


class RunnerState(struct.PyTreeNode):
    """Everything that determines the rest of a run (what a checkpoint holds)."""

    params: Any  # population parameters, leaves [P, ...]
    opt_state: Any  # optimiser state per population, leaves [P, ...]
    env_state: nmmo_jax.State  # leaves [B, ...]
    obs: nmmo_jax.Observation  # leaves [B, N, ...]
    key: jax.Array
    update: jax.Array  # [] int32, updates done


def masked_mean(x: jax.Array, mask: jax.Array, axis: Any = None) -> jax.Array:
    """Mean of x over the entries where mask is True (0 where there are none)."""
    total = jnp.sum(jnp.where(mask, x, 0.0), axis=axis)
    return total / jnp.maximum(jnp.sum(mask, axis=axis), 1)


def gae(value: jax.Array, reward: jax.Array, done: jax.Array, last_value: jax.Array,
        gamma: float, lam: float) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets, [T, ...] each.

    A `done` step ends the episode: nothing is bootstrapped across it. Steps of empty
    slots produce numbers that are masked later; a live step never reads them (a live
    agent that does not die is still live on the next tick).
    """

    def backward(carry, step):
        next_adv, next_value = carry
        value, reward, done = step
        keep = 1.0 - done
        delta = reward + gamma * next_value * keep - value
        adv = delta + gamma * lam * keep * next_adv
        return (adv, value), adv

    _, adv = jax.lax.scan(backward, (jnp.zeros_like(last_value), last_value),
                          (value, reward, done.astype(jnp.float32)), reverse=True)
    return adv, adv + value


class LossAux(NamedTuple):
    policy_loss: jax.Array
    value_loss: jax.Array
    entropy: jax.Array
    approx_kl: jax.Array
    clip_frac: jax.Array


def ppo_loss(network: Any, config: TrainConfig, params: Any, batch: Transition,
             advantage: jax.Array, target: jax.Array) -> tuple[jax.Array, LossAux]:
    """The loss of one population on a minibatch of its samples (leaves [S, ...]).

    Only valid samples (live slots) count, in every term.
    """
    out: PolicyOutput = network.apply(params, batch.obs)
    dist = ActionDist(out)
    log_prob = dist.log_prob(batch.actions)
    valid = batch.valid
    ratio = jnp.exp(log_prob - batch.log_prob)
    if config.algo == "pg":
        policy_loss = -masked_mean(ratio * advantage, valid)
        value_loss = 0.5 * masked_mean((out.value - target) ** 2, valid)
    else:
        clipped = jnp.clip(ratio, 1.0 - config.clip, 1.0 + config.clip)
        policy_loss = -masked_mean(jnp.minimum(ratio * advantage, clipped * advantage), valid)
        value_clipped = batch.value + jnp.clip(out.value - batch.value, -config.clip, config.clip)
        value_loss = 0.5 * masked_mean(
            jnp.maximum((out.value - target) ** 2, (value_clipped - target) ** 2), valid)
    entropy = masked_mean(dist.entropy(batch.actions.style), valid)
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    aux = LossAux(policy_loss, value_loss, entropy,
                  masked_mean((ratio - 1.0) - (log_prob - batch.log_prob), valid),
                  masked_mean((jnp.abs(ratio - 1.0) > config.clip).astype(jnp.float32), valid))
    return loss, aux


class Trainer:
    """A compiled training run; see the module docstring.

    Attributes:
      config: the `TrainConfig`.
      env: the `nmmo_jax.Env`; env_params its rule numbers.
      network: the Flax module of one population.
      optimizer: the optax transformation applied per population.
      traces: how many times the chunk program was traced (1 after any number of
        `run` calls with same-shaped inputs: no retrace).
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.env = nmmo_jax.Env(config.env_config())
        self.env_params = self.env.default_params
        self.network = make_network(config.network, config.hidden or None, config.noop_bias)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm),
            optax.adamw(config.lr, eps=1e-5, weight_decay=config.weight_decay))
        self.traces = 0
        samples = config.rollout * config.realms * config.agents // config.pops
        # Live samples per population per gradient step; pg takes all of them at once.
        self.minibatch_size = samples if config.algo == "pg" else min(config.minibatch_size,
                                                                        samples)
        self.init = jax.jit(self._init)
        self.run = jax.jit(self._run_chunk)
        self._train = jax.jit(self._train_all)

    def __call__(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole run in one program: (final runner state, metrics [updates, ...])."""
        return self._train(key)

    # -- setup ---------------------------------------------------------------------------

    def _init(self, key: jax.Array) -> RunnerState:
        cfg = self.config
        param_key, env_key, run_key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset, (0, None))(
            jax.random.split(env_key, cfg.realms), self.env_params)
        params = init_populations(self.network, param_key, obs, cfg.pops, cfg.same_init)
        opt_state = jax.vmap(self.optimizer.init)(params)
        return RunnerState(params, opt_state, env_state, obs, run_key, jnp.zeros((), jnp.int32))

    # -- one update ----------------------------------------------------------------------

    def _rollout(self, runner: RunnerState, key: jax.Array
                 ) -> tuple[RunnerState, Transition, dict[str, jax.Array]]:
        cfg, env = self.config, self.env

        def tick(carry, key):
            env_state, obs = carry
            act_key, step_key = jax.random.split(key)
            acted = act_live(self.network, runner.params, obs, act_key, cfg.act_chunk)
            next_obs, env_state, reward, done, info = jax.vmap(env.step, (0, 0, 0, None))(
                jax.random.split(step_key, cfg.realms), env_state, acted.actions, self.env_params)
            step = Transition(obs, acted.actions, acted.log_prob, acted.value,
                              reward * cfg.reward_scale, done, obs.alive)
            causes = jax.nn.one_hot(info.cause, len(CAUSE_NAMES), dtype=jnp.int32)[..., 1:]
            stats = {"deaths": info.pop_deaths.sum(0), "lifetime_sum": info.pop_lifetime.sum(0),
                     "live": info.pop_alive.sum(0),  # [P] each
                     "causes": to_pops(causes, cfg.pops, 1).sum((1, 2))}  # [P, 3]
            return (env_state, next_obs), (step, stats)

        (env_state, obs), (traj, stats) = jax.lax.scan(
            tick, (runner.env_state, runner.obs), jax.random.split(key, cfg.rollout))
        runner = runner.replace(env_state=env_state, obs=obs)
        return runner, traj, jax.tree.map(lambda x: x.sum(0), stats)

    def _update(self, runner: RunnerState, _: Any = None
                ) -> tuple[RunnerState, dict[str, jax.Array]]:
        cfg = self.config
        key, rollout_key, epoch_key = jax.random.split(runner.key, 3)
        runner, traj, stats = self._rollout(runner, rollout_key)  # traj leaves [T, B, N, ...]
        last_value = apply_populations(self.network, runner.params, runner.obs).value
        lam = 1.0 if cfg.algo == "pg" else cfg.gae_lambda
        advantage, target = gae(traj.value, traj.reward, traj.done, last_value, cfg.gamma, lam)

        # Per population: [T, B, N, ...] -> [P, S, ...] with S = T * B * N / P samples.
        def by_pop(x: jax.Array) -> jax.Array:
            x = to_pops(x, cfg.pops, axis=2)
            return x.reshape((cfg.pops, -1) + x.shape[4:])

        data = jax.tree.map(by_pop, (traj, advantage, target))
        valid = data[0].valid
        mean = masked_mean(data[1], valid, axis=1)[:, None]
        std = jnp.sqrt(masked_mean((data[1] - mean) ** 2, valid, axis=1))[:, None]
        data = (data[0], (data[1] - mean) / (std + 1e-8), data[2])

        epochs = 1 if cfg.algo == "pg" else cfg.epochs
        batch_size = self.minibatch_size
        live = jnp.sum(valid, axis=1)  # [P]
        steps = (jnp.max(live) + batch_size - 1) // batch_size  # gradient steps per epoch
        grad_fn = jax.vmap(jax.value_and_grad(
            lambda p, b, a, t: ppo_loss(self.network, cfg, p, b, a, t), has_aux=True))

        def epoch(carry, key):
            # Each population's live samples in a random order, then the empty ones.
            order = jnp.argsort(jax.random.uniform(key, valid.shape) + ~valid, axis=1)  # [P, S]

            def minibatch_step(i, carry):
                params, opt_state, aux_sum = carry
                (traj, adv, target), _, keep = take_chunk(data, order, live, i, batch_size)
                traj = traj._replace(valid=traj.valid & keep)  # empty or repeated: masked
                (_, aux), grads = grad_fn(params, traj, adv, target)
                updates, opt_state = jax.vmap(self.optimizer.update)(grads, opt_state, params)
                weight = jnp.sum(traj.valid, axis=1)  # [P], the step's live samples
                aux_sum = jax.tree.map(lambda total, x: total + x * weight, aux_sum, aux)
                return optax.apply_updates(params, updates), opt_state, aux_sum

            return jax.lax.fori_loop(0, steps, minibatch_step, carry), None

        no_aux = LossAux(*[jnp.zeros((cfg.pops,))] * len(LossAux._fields))
        (params, opt_state, aux_sum), _ = jax.lax.scan(
            epoch, (runner.params, runner.opt_state, no_aux),
            jax.random.split(epoch_key, epochs))
        aux = jax.tree.map(lambda x: x / jnp.maximum(live * epochs, 1), aux_sum)  # [P] each
        runner = runner.replace(params=params, opt_state=opt_state, key=key,
                                update=runner.update + 1)

        live = to_pops(traj.valid, cfg.pops, 2)  # [P, T, B, N/P]

        def per_pop(x: jax.Array) -> jax.Array:  # mean over each population's live samples
            return masked_mean(to_pops(x, cfg.pops, 2), live, axis=(1, 2, 3))

        explored = jnp.mean(jnp.sum(runner.env_state.visits > 0, axis=(2, 3)), axis=0)
        metrics = {
            "lifetime": stats["lifetime_sum"] / jnp.maximum(stats["deaths"], 1),
            "deaths": stats["deaths"],
            **{f"died_{name}": stats["causes"][:, i] for i, name in enumerate(CAUSE_NAMES[1:])},
            "alive": stats["live"] / (cfg.rollout * cfg.realms),
            "live_steps": jnp.sum(live, axis=(1, 2, 3)),
            "reward": per_pop(traj.reward / cfg.reward_scale),
            "value": per_pop(traj.value),
            "explored": explored.astype(jnp.float32),
            "grad_steps": jnp.broadcast_to(steps * epochs, (cfg.pops,)),
            **aux._asdict(),
        }  # every entry [P]
        return runner, metrics

    # -- programs ------------------------------------------------------------------------

    def _run_chunk(self, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        self.traces += 1
        return jax.lax.scan(self._update, runner, None, self.config.chunk)

    def _train_all(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        return jax.lax.scan(self._update, self._init(key), None, self.config.num_updates)


def make_train(config: TrainConfig) -> Trainer:
    """The compiled training program for `config` (call it with a key, or run chunks)."""
    return Trainer(config)
