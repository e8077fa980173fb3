"""PPO for Neural MMO populations, compiled end to end (PureJaxRL style), data-parallel
over the realms on every device of one machine or of several.

`make_train(config)` returns a `Trainer`; `trainer(key)` runs the whole training as one
jitted program, and `trainer.init(key)` / `trainer.run(runner)` run it in chunks of
`config.chunk` updates per call (one compiled program, reused: the host loop between
chunks writes logs and checkpoints). One update:

1. Rollout: T ticks over B realms (env vmapped over realms, `lax.scan` over ticks); every
   slot acts with its population's network (`populations.act_live`). Each sample keeps
   the network's `Inputs` (`network.inputs(obs)`), not the observation: the window is
   prepared once per sample instead of once per epoch.
2. GAE over each slot's stream. A slot's episode ends on the tick its agent dies
   (`done`); a later spawn in the slot starts a new one. Rollouts cut lifetimes at T and
   bootstrap from the value of the last observation.
3. Epochs over the live samples in minibatches of `minibatch_size` per population. The
   loss (clipped policy loss, value loss, entropy bonus) is computed per network (one
   per population unless `networks` says otherwise), vmapped over the network axis, so
   each network's parameters get gradients from the agents that play it only; Adam with
   gradient clipping (`optax.chain(clip_by_global_norm, adamw)`) is vmapped the same
   way, so clipping is per network too.

Scripted populations. `scripted` ("forager:4", "evader:2,fighter:2") hands the last
populations to scripts of `nmmo_jax.policies`: they act in every realm as the script
plays (run on each scripted population's own slots), but have no parameters and no
samples. The first `learning_pops` populations learn as above; the rollout keeps only
their slots ([T, b, N * L / P, ...]), and every metric is theirs but `scripted_lifetime`
and `scripted_deaths`, so one run measures the learners beside the scripts in the same
realms.

Shared networks. By default each learning population has its own network, as in v1.0.
With `networks` = G (a divisor of the learning populations), population p plays network
p % G: the populations stay teams in the game (the same-population feature, and
population metrics), but G networks learn from all their samples. Each network's
minibatches take `minibatch_size` live samples for each population that plays it, and
its rollout calls `act_chunk` slots for each, so the work per sample stays as it is.

Realms persist from update to update, so a run of B realms on generated maps learns on
B maps. With `realm_ticks` > 0, after each update the oldest realm (the first of the
oldest, over every device) restarts on a new map once it has run that many ticks: one
realm per update, so the restarts spread over the updates and the realms' ages stay
mixed. Its agents' last steps were bootstrapped in the update, as at any rollout's end.

Slots that are empty during a tick (the agent is dead and the slot not yet respawned,
`obs.alive` False) carry no loss and cost no compute: the rollout runs the network on
live slots only (`populations.act_live`), and each epoch shuffles every population's
live samples and steps through them in minibatches, as many as the population with the
most live samples needs (a loop with a traced trip count; a population with fewer fills
its last minibatches with masked samples). Spawning refills one slot per tick, so in
Chaos with 128 slots only about as many slots are live as an agent lives ticks: the
work follows the live agents rather than the slots. Advantages are normalised per
network over its live samples.

Devices. The realms are split along the one axis (`REALM`) of a `jax.sharding.Mesh` of
`config.devices` devices (default: all, over every process); device d holds realms
d * B/D ... (d + 1) * B/D - 1. Environment states and observations are sharded on that
axis; parameters, optimiser state, key and update counter are replicated. The update is
written for one device's realms and run on all of them with `jax.shard_map`, every
cross-device reduction spelled out where it happens:
- the advantage statistics and every metric: `psum` of the devices' sums and counts;
- each minibatch step: every device takes `minibatch_size / D` of its own live samples
  per population; the loss terms are its masked sums divided by the live count of the
  whole minibatch (a `psum`), so the `psum` of the devices' gradients is the gradient of
  the masked mean over the whole minibatch, weighted by live samples; every device then
  applies the same optimiser step to the same parameters;
- the number of minibatch steps per epoch is the `pmax` of the devices' own counts, so
  every device runs the same steps (a device out of live samples runs masked ones).
`shard_map` rather than sharding annotations: the update is made of gathers of live
slots and loops whose trip counts follow the live counts. Left to the partitioner, an
argsort or gather over a population's samples, which span every device, would pull all
of them onto each device, and a loop's trip count would be global; per device, each
gathers and loops over its own slots, and the only traffic is the reductions above
(per minibatch step, one all-reduce of the gradients, the parameters' size). `check_vma`
is off: the environment's loops carry per-realm values started from constants, which the
replication checker would make every loop of the environment cast; every value returned
as replicated is computed from replicated inputs and reduced values only.

What the device count changes. The rollout does not depend on it: a realm's keys are
rows of `jax.random.split(key, B)` whatever device steps it, and actions are drawn by
Gumbel-max with per-slot noise (`populations.sample_actions`), so a slot's action does not
depend on which slots share its network call. With one minibatch per epoch (a
`minibatch_size` of at least rollout x realms x agents / pops, every live sample in one
step) or with `algo="pg"`, a run on D devices is the 1-device run up to the order of
float summation (tests/test_scale.py: 4 devices, and 2 processes, equal the 1-device run
in every count and within 1.6e-6 in the parameters after 4 updates). With several
minibatches per epoch each device draws its share of a minibatch from its own realms:
the same algorithm (every live sample once per epoch, the same loss), a different
partition of the samples into minibatches (stratified by device, and as many steps as
the device with the most live samples needs), so the run differs from the 1-device run
as a different shuffle would. A partition invariant to the device count would need
each device to process its varying share of every global minibatch in fixed-size
pieces, padded on every step to the largest device's share: more gradient work for the
same minibatch size, so it is not done. On one device the collectives
are the identity and a run is reproducible bit for bit, resumed or not; on D devices it
is reproducible bit for bit run to run.

Processes. Over several hosts the same program runs in every process (JAX's distributed
runtime, `jax.distributed.initialize`; see train/train.py), the mesh spans every
process's devices and each process feeds and steps its own devices' realms; the
collectives above run over the interconnect (NCCL on GPUs, gloo on CPUs).

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
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

import nmmo_jax
from nmmo_jax import terrain
from nmmo_jax.config import CAUSE_NAMES, REWARD_MODES, check_hits_fit
from nmmo_jax.policies import POLICIES
from nmmo_jax.rollout import Tick
from train.networks import NETWORKS, ActionDist, Inputs, PolicyOutput, make_network
from train.populations import (
    act_live,
    action_noise,
    apply_populations,
    from_pops,
    init_populations,
    per_population,
    take_chunk,
    to_pops,
)

REALM = "realm"  # the mesh axis the realms are split along


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
    map: str = "generated"  # "generated" (one per realm), "original:I" (v1.0 map I) or a .npy
    realm_ticks: int = 0  # a realm restarts (on a new map) after this many ticks; 0: never
    # rollout and schedule
    realms: int = 16  # B, realms stepped in parallel
    devices: int = 0  # devices the realms are split across (all processes); 0: all of them
    rollout: int = 32  # T, ticks per rollout
    total_steps: float = 5e6  # slot-steps (realms x agents x ticks) over the run
    chunk: int = 10  # updates per compiled call (logging / checkpoint granularity)
    # algorithm
    algo: str = "ppo"  # "ppo" or "pg" (v1.0-style vanilla policy gradient)
    epochs: int = 2  # passes over the live samples per update
    minibatch_size: int = 128  # live samples per population per gradient step, all devices
    gamma: float = 0.995  # discount (v1.0's trainer used 0.99)
    gae_lambda: float = 0.95  # GAE lambda (pg uses 1)
    clip: float = 0.2  # PPO ratio and value clipping
    vf_coef: float = 0.5  # weight of the value loss
    ent_coef: float = 0.001  # weight of the entropy bonus
    lr: float = 2e-3  # Adam learning rate
    weight_decay: float = 1e-5  # AdamW weight decay
    max_grad_norm: float = 5.0  # per-population gradient clipping
    # network and populations
    network: str = "foveal"  # "foveal" (SPEC §8's with a cheaper window layer), "reference"
    # (SPEC §8, H=32) or "large"
    hidden: int = 0  # 0: the network's default width
    noop_bias: float = 3.0  # initial target-head logit offset on the no-op (self) target
    act_chunk: int = 64  # live slots per population per rollout network call, per device
    networks: int = 0  # distinct networks, population p plays p % networks; 0: one per pop
    same_init: bool = False  # start every network from the same parameters
    scripted: str = ""  # last populations played by scripts (not learning), e.g. forager:4
    seed: int = 0  # PRNG seed of the whole run
    # outputs (used by train/train.py)
    out: str = "runs/default"  # output folder
    checkpoint_every: int = 50  # updates between checkpoints (rounded up to chunks)
    eval_ticks: int = 200  # ticks of the GIF recorded at the end; 0 for none

    def __post_init__(self) -> None:
        _check_train_config(self)

    def env_config(self) -> nmmo_jax.Config:
        """The environment's static config for this run; it counts visits, since the
        run logs the tiles each population explored."""
        return nmmo_jax.config(
            self.preset, map_size=self.map_size, lava_border=self.lava_border,
            n_agents=self.agents, n_pops=self.pops, n_entities=self.entities,
            count_visits=True)

    def env_params(self) -> nmmo_jax.Params:
        """The environment's rule numbers for this run: the preset's, with its reward."""
        return nmmo_jax.params(self.preset, reward_mode=self.reward_mode)

    @property
    def scripted_pops(self) -> tuple[tuple[str, int], ...]:
        """The scripted populations as (policy name, count) in population order, after the
        learning ones."""
        return parse_scripted(self.scripted)

    @property
    def learning_pops(self) -> int:
        """Populations that learn: populations 0 ... learning_pops - 1; the rest play
        `scripted`."""
        return self.pops - sum(count for _, count in self.scripted_pops)

    @property
    def n_networks(self) -> int:
        """Distinct networks (parameter sets) of the learning populations: `networks`, or
        one per learning population when it is 0."""
        return self.networks or self.learning_pops

    @property
    def steps_per_update(self) -> int:
        return self.realms * self.rollout * self.agents

    @property
    def num_updates(self) -> int:
        """Updates of the run: total_steps / steps_per_update, rounded up to whole chunks."""
        updates = max(1, math.ceil(self.total_steps / self.steps_per_update))
        return math.ceil(updates / self.chunk) * self.chunk


# Ranges of the numeric fields; the realm's own fields (map size, agents, ...) are checked
# by `nmmo_jax.config` when `env_config` builds the realm, and with the rule numbers by
# `check_hits_fit`.
_AT_LEAST_ONE = ("agents", "pops", "realms", "rollout", "chunk", "epochs", "minibatch_size",
                 "act_chunk", "checkpoint_every")
_AT_LEAST_ZERO = ("devices", "hidden", "seed", "eval_ticks", "vf_coef", "ent_coef",
                  "weight_decay", "realm_ticks", "networks")
_ABOVE_ZERO = ("reward_scale", "total_steps", "clip", "lr", "max_grad_norm")
_IN_ZERO_ONE = ("gamma", "gae_lambda")
_KIND_NAMES = {bool: "True or False", int: "an int", float: "a number", str: "a string"}
_CHOICES = {"algo": ("ppo", "pg"), "reward_mode": tuple(REWARD_MODES),
            "network": tuple(NETWORKS)}


def parse_scripted(spec: str) -> tuple[tuple[str, int], ...]:
    """(policy name, count) of each comma-separated NAME or NAME:COUNT of `spec` ("" for
    none). Raises `ValueError` for an unknown policy or a count that is not an int >= 1."""
    parsed = []
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition(":")
        if name not in POLICIES:
            raise ValueError(f"scripted names an unknown policy {name!r} in {spec!r}; choose "
                             f"among {sorted(POLICIES)}")
        if count and not (count.isdigit() and int(count) >= 1):
            raise ValueError(f"scripted gives {name!r} the count {count!r}; a count must be an "
                             f"int >= 1")
        parsed.append((name, int(count or 1)))
    return tuple(parsed)


def _check_train_config(config: TrainConfig) -> None:
    """Raises `TypeError` or `ValueError` naming the first field of `config` of the wrong
    type, not finite, or outside its range, before any work is done."""
    for field in dataclasses.fields(config):
        value, kind = getattr(config, field.name), type(field.default)
        kinds = (int, float) if kind is float else (kind,)
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kinds):
            raise TypeError(f"{field.name} must be {_KIND_NAMES[kind]}, got {value!r}")
        if kind is float and not math.isfinite(value):
            raise ValueError(f"{field.name} must be a finite number, got {value}")
    for name, choices in _CHOICES.items():
        if getattr(config, name) not in choices:
            raise ValueError(f"{name} must be one of {list(choices)}, "
                             f"got {getattr(config, name)!r}")
    for names, test, expected in ((_AT_LEAST_ONE, lambda v: v >= 1, ">= 1"),
                                  (_AT_LEAST_ZERO, lambda v: v >= 0, ">= 0"),
                                  (_ABOVE_ZERO, lambda v: v > 0, "> 0"),
                                  (_IN_ZERO_ONE, lambda v: 0 <= v <= 1, "in [0, 1]")):
        for name in names:
            if not test(getattr(config, name)):
                raise ValueError(f"{name} must be {expected}, got {getattr(config, name)}")
    if config.seed >= 2**32:  # a PRNG key holds 32 bits of seed; larger ones repeat seeds
        raise ValueError(f"seed must be < 2**32, got {config.seed}")
    if not config.out:
        raise ValueError("out must name an output folder, got ''")
    if config.learning_pops < 1:
        raise ValueError(f"scripted must leave at least one of the {config.pops} populations "
                         f"to learn, got {config.scripted!r}")
    if config.learning_pops % config.n_networks:
        raise ValueError(f"networks must divide the {config.learning_pops} learning populations "
                         f"evenly, got {config.networks}")
    try:
        env_cfg = config.env_config()
        check_hits_fit(env_cfg, config.env_params())
    except (TypeError, ValueError) as err:
        raise ValueError(f"preset, agents, pops, map_size, lava_border and entities do not "
                         f"make a valid realm: {err}") from None
    terrain.load_map(config.map, env_cfg)  # raises ValueError naming the map


class Transition(NamedTuple):
    """One tick of every slot of every realm; leaves [B, N, ...] (stacked: [T, B, N, ...])."""

    inputs: Inputs  # what the network reads of the observation (`network.inputs(obs)`)
    actions: nmmo_jax.Actions
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array  # scaled
    done: jax.Array
    valid: jax.Array  # the slot held a live agent when it acted (obs.alive)


class Batch(NamedTuple):
    """What the minibatch steps learn from: every network's samples, leaves [G, S, ...]."""

    transition: Transition
    advantage: jax.Array  # normalised over the network's live samples
    target: jax.Array  # the value target (advantage before normalisation + value)


class RunnerState(struct.PyTreeNode):
    """Everything that determines the rest of a run (what a checkpoint holds)."""

    params: Any  # network parameters, leaves [G, ...] (G = config.n_networks)
    opt_state: Any  # optimiser state per network, leaves [G, ...]
    env_state: nmmo_jax.State  # leaves [B, ...]
    obs: nmmo_jax.Observation  # leaves [B, N, ...]
    key: jax.Array
    update: jax.Array  # [] int32, updates done


def global_mean(x: jax.Array, mask: jax.Array, axis: Any) -> jax.Array:
    """Mean of x over the entries where mask is True on every device (0 where there are
    none); called on one device's share inside the trainer's `shard_map`."""
    total = jax.lax.psum(jnp.sum(jnp.where(mask, x, 0.0), axis=axis), REALM)
    return total / jnp.maximum(jax.lax.psum(jnp.sum(mask, axis=axis), REALM), 1)


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
             advantage: jax.Array, target: jax.Array, count: jax.Array | None = None
             ) -> tuple[jax.Array, LossAux]:
    """The loss of one population on a minibatch of its samples (leaves [S, ...]).

    Only valid samples (live slots) count, in every term. Each term is a sum over the
    valid samples divided by `count` (default: their number); with the number of valid
    samples of the whole minibatch on every device, the sum of the devices' losses (and
    of their gradients) is the loss (gradient) of the whole minibatch.
    """
    out: PolicyOutput = network.apply(params, batch.inputs)
    dist = ActionDist(out)
    log_prob = dist.log_prob(batch.actions)
    valid = batch.valid
    count = jnp.maximum(jnp.sum(valid) if count is None else count, 1)

    def mean(x: jax.Array) -> jax.Array:
        return jnp.sum(jnp.where(valid, x, 0.0)) / count

    ratio = jnp.exp(log_prob - batch.log_prob)
    if config.algo == "pg":
        policy_loss = -mean(ratio * advantage)
        value_loss = 0.5 * mean((out.value - target) ** 2)
    else:
        clipped = jnp.clip(ratio, 1.0 - config.clip, 1.0 + config.clip)
        policy_loss = -mean(jnp.minimum(ratio * advantage, clipped * advantage))
        value_clipped = batch.value + jnp.clip(out.value - batch.value, -config.clip, config.clip)
        value_loss = 0.5 * mean(
            jnp.maximum((out.value - target) ** 2, (value_clipped - target) ** 2))
    entropy = mean(dist.entropy(batch.actions.style))
    loss = policy_loss + config.vf_coef * value_loss - config.ent_coef * entropy
    aux = LossAux(policy_loss, value_loss, entropy,
                  mean((ratio - 1.0) - (log_prob - batch.log_prob)),
                  mean((jnp.abs(ratio - 1.0) > config.clip).astype(jnp.float32)))
    return loss, aux


def realm_mesh(realms: int, devices: int = 0) -> Mesh:
    """A one-axis mesh (`REALM`) of `devices` devices (0: every device of every process),
    the same number from each process. Raises `ValueError` when there are not that many,
    when the processes cannot share them evenly, or when `realms` does not divide evenly
    by the device count."""
    every, processes = jax.devices(), jax.process_count()
    count = devices or len(every)
    if count > len(every):
        raise ValueError(f"devices ({count}) is more than the {len(every)} device(s) JAX sees "
                         f"({every[0].platform})")
    if count % processes:
        raise ValueError(f"devices ({count}) must divide evenly by the number of processes "
                         f"({processes}): each process drives the same number of devices")
    if realms % count:
        fits = [d for d in range(1, count + 1) if realms % d == 0 and d % processes == 0]
        raise ValueError(f"realms ({realms}) must divide evenly by the device count ({count}): "
                         f"each device steps realms / devices realms; use --realms "
                         f"{math.ceil(realms / count) * count}"
                         + (f" or --devices {fits[-1]}" if fits else ""))
    if count > 1 and not jax.config.jax_threefry_partitionable:
        raise ValueError("training on several devices needs random numbers that do not depend "
                         "on how arrays are split: set JAX_THREEFRY_PARTITIONABLE=1 or "
                         "jax.config.update('jax_threefry_partitionable', True) (the default "
                         "from JAX 0.5)")
    per_process = count // processes
    chosen = [device for process in range(processes)
              for device in [d for d in every if d.process_index == process][:per_process]]
    return Mesh(np.array(chosen), (REALM,))


class Trainer:
    """A compiled training run, data-parallel over the realms; see the module docstring.

    Attributes:
      config: the `TrainConfig`.
      env: the `nmmo_jax.Env`; env_params its rule numbers; tiles the fixed map every
        realm starts on ([H, W] int8), or None for generated maps.
      network: the Flax module of one population's network.
      learners: the learning populations; nets: their distinct networks (parameter sets,
        `config.n_networks`); network g is played by populations g, g + nets, ...
      optimizer: the optax transformation applied per network.
      mesh: the devices, one `REALM` axis; each holds `local_realms` consecutive realms.
      minibatch_size: live samples per network per gradient step, over all devices
        (`config.minibatch_size` for each population that plays it).
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        env_cfg = config.env_config()
        self.env = nmmo_jax.Env(env_cfg)
        self.env_params = config.env_params()
        self.tiles = terrain.load_map(config.map, env_cfg)
        self.network = make_network(config.network, config.hidden or None, config.noop_bias)
        self.learners = config.learning_pops
        self.nets = config.n_networks
        share = self.learners // self.nets  # populations per network
        self.scripts = tuple((POLICIES[name], count) for name, count in config.scripted_pops)
        self.optimizer = optax.chain(
            optax.clip_by_global_norm(config.max_grad_norm),
            optax.adamw(config.lr, eps=1e-5, weight_decay=config.weight_decay))
        self.mesh = realm_mesh(config.realms, config.devices)
        devices = self.mesh.size
        self.local_realms = config.realms // devices
        samples = config.rollout * config.realms * config.agents // config.pops
        # Live samples per population per gradient step; pg takes all of them at once.
        self.minibatch_size = samples if config.algo == "pg" else min(config.minibatch_size,
                                                                        samples)
        if self.minibatch_size % devices:
            raise ValueError(f"minibatch_size ({self.minibatch_size}) must divide evenly by the "
                             f"device count ({devices}): each device takes minibatch_size / "
                             f"devices of its own live samples per gradient step")
        self.minibatch_size *= share
        self.act_chunk = config.act_chunk * share
        self.local_minibatch = self.minibatch_size // devices
        self.specs = RunnerState(params=P(), opt_state=P(), env_state=P(REALM), obs=P(REALM),
                                 key=P(), update=P())
        self.init = jax.jit(self._sharded(self._init, P(), self.specs))
        self.run = jax.jit(self._run_chunk)
        self.rollout = jax.jit(self._sharded(self._rollout_stats, (self.specs,), P()))
        self._train = jax.jit(self._sharded(self._train_all, P(), (self.specs, P())))

    def __call__(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        """The whole run in one program: (final runner state, metrics [updates, ...])."""
        return self._train(key)

    def _sharded(self, fn: Any, in_specs: Any, out_specs: Any) -> Any:
        """`fn`, written for one device's realms, run on every device of the mesh."""
        if hasattr(jax, "shard_map"):
            return jax.shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                                 check_vma=False)
        from jax.experimental.shard_map import shard_map  # JAX before 0.6

        return shard_map(fn, mesh=self.mesh, in_specs=in_specs, out_specs=out_specs,
                         check_rep=False)

    def _learning(self, tree: Any, axis: int) -> Any:
        """The learning populations' slots of every leaf of `tree`, whose agent axis [N]
        is `axis`: [..., N, ...] -> [..., N * L / P, ...], population p of L in column p
        (`to_pops` with L populations), as the learners' parameters are laid out."""
        if not self.scripts:
            return tree
        pops = self.config.pops
        return jax.tree.map(lambda x: from_pops(to_pops(x, pops, axis)[:self.learners], axis),
                            tree)

    def _with_scripts(self, keys: jax.Array, obs: nmmo_jax.Observation,
                      learned: nmmo_jax.Actions) -> nmmo_jax.Actions:
        """Every slot's actions, [b, N]: `learned` ([b, N * L / P]) for the learning
        populations' slots, and each scripted population's script on its own slots: the
        script sees them, in slot order, as its realm's rows, and the c-th script of realm
        r gets the key `fold_in(keys[r], c)`."""
        if not self.scripts:
            return learned
        split = jax.tree.map(lambda x: to_pops(x, self.config.pops, 1), obs)  # [P, b, N/P, ...]
        parts = [jax.tree.map(lambda x: to_pops(x, self.learners, 1), learned)]
        offset = self.learners
        for c, (script, count) in enumerate(self.scripts):
            own = jax.tree.map(lambda x, o=offset, n=count: from_pops(x[o:o + n], 1), split)
            actions = jax.vmap(lambda k, o, c=c, script=script: script(
                jax.random.fold_in(k, c), o))(keys, own)
            parts.append(jax.tree.map(lambda x, n=count: to_pops(x, n, 1), actions))
            offset += count
        joined = jax.tree.map(lambda *xs: jnp.concatenate(xs), *parts)  # [P, b, N/P]
        return jax.tree.map(lambda x: from_pops(x, 1), joined)

    def _realm_keys(self, key: jax.Array) -> jax.Array:
        """This device's rows of `jax.random.split(key, realms)`, [local_realms]: a realm's
        key does not depend on how the realms are split across devices."""
        keys = jax.random.split(key, self.config.realms)
        start = jax.lax.axis_index(REALM) * self.local_realms
        return jax.lax.dynamic_slice_in_dim(keys, start, self.local_realms)

    # -- setup (per device) --------------------------------------------------------------

    def _init(self, key: jax.Array) -> RunnerState:
        cfg = self.config
        param_key, env_key, run_key = jax.random.split(key, 3)
        obs, env_state = jax.vmap(self.env.reset, (0, None, None))(
            self._realm_keys(env_key), self.env_params, self.tiles)
        params = init_populations(self.network, param_key, obs, self.nets, cfg.same_init)
        opt_state = jax.vmap(self.optimizer.init)(params)
        return RunnerState(params, opt_state, env_state, obs, run_key, jnp.zeros((), jnp.int32))

    # -- one update (per device) ---------------------------------------------------------

    def _rollout(self, runner: RunnerState, key: jax.Array
                 ) -> tuple[RunnerState, Transition, dict[str, jax.Array]]:
        """T ticks of this device's realms (`nmmo_jax.rollout`); the transitions are the
        learning populations' slots, [T, b, N * L / P, ...]; the stats are this device's
        sums over every population, [P] each ([P, 3] for the causes of death)."""
        cfg = self.config

        def policy(key: jax.Array, obs: nmmo_jax.Observation) -> tuple[Any, Any]:
            mine = self._learning(obs, 1)  # the learners' slots, leaves [b, N * L / P, ...]
            noise = jax.vmap(lambda k: action_noise(k, mine.alive.shape[1:], cfg.entities))(
                self._realm_keys(key))  # leaves [b, N * L / P, ...]
            inputs = self.network.inputs(mine)
            acted = act_live(self.network, runner.params, inputs, mine.alive, noise,
                             self.act_chunk)
            actions = self._with_scripts(self._realm_keys(jax.random.fold_in(key, 1)), obs,
                                         acted.actions)
            return actions, (acted, inputs)

        def observe(tick: Tick) -> tuple[Transition, dict[str, jax.Array]]:
            (acted, inputs), info = tick.act[1], tick.info
            reward, done, alive = self._learning((tick.reward, tick.done, tick.obs.alive), 1)
            step = Transition(inputs, acted.actions, acted.log_prob, acted.value,
                              reward * cfg.reward_scale, done, alive)
            causes = jax.nn.one_hot(info.cause, len(CAUSE_NAMES), dtype=jnp.int32)[..., 1:]
            stats = {"deaths": info.pop_deaths.sum(0), "lifetime_sum": info.pop_lifetime.sum(0),
                     "live": info.pop_alive.sum(0),
                     "causes": to_pops(causes, cfg.pops, 1).sum((1, 2))}
            return step, stats

        (obs, env_state), (traj, stats) = nmmo_jax.rollout(
            self.env, policy, key, cfg.rollout, self.env_params,
            start=(runner.obs, runner.env_state), realms=self.local_realms, observe=observe,
            vmap_policy=False, realm_keys=lambda key, _: self._realm_keys(key))
        runner = runner.replace(env_state=env_state, obs=obs)
        return runner, traj, jax.tree.map(lambda x: x.sum(0), stats)

    def _restart_oldest(self, runner: RunnerState, key: jax.Array) -> RunnerState:
        """Restarts the oldest realm of all devices (the first of the oldest) once it has
        run `realm_ticks` ticks: a new realm from `fold_in(key, its index)`, on a new map
        unless the run has a fixed one. The agents it held leave their episodes cut, as
        at a rollout's end (their last step was bootstrapped before the restart)."""
        ticks = jax.lax.all_gather(runner.env_state.tick, REALM, tiled=True)  # [B]
        oldest = jnp.argmax(ticks)
        local = oldest - jax.lax.axis_index(REALM) * self.local_realms

        def restart(runner: RunnerState) -> RunnerState:
            obs, state = self.env.reset(jax.random.fold_in(key, oldest), self.env_params,
                                        self.tiles)

            def put(old: jax.Array, new: jax.Array) -> jax.Array:
                return jax.lax.dynamic_update_index_in_dim(old, new, local, 0)

            return runner.replace(obs=jax.tree.map(put, runner.obs, obs),
                                  env_state=jax.tree.map(put, runner.env_state, state))

        mine = (local >= 0) & (local < self.local_realms)
        due = ticks[oldest] >= self.config.realm_ticks
        return jax.lax.cond(due & mine, restart, lambda runner: runner, runner)

    def _rollout_stats(self, runner: RunnerState) -> dict[str, jax.Array]:
        """The summed stats of one rollout from `runner` (its key), without learning."""
        return jax.lax.psum(self._rollout(runner, runner.key)[2], REALM)

    def _batch(self, runner: RunnerState, traj: Transition) -> Batch:
        """The rollout as every network's samples, leaves [G, S, ...] (S = T * b * N * L /
        (P * G)), with GAE advantages normalised over each network's live samples (on
        every device) and value targets."""
        cfg = self.config
        last_value = apply_populations(self.network, runner.params,
                                       self._learning(runner.obs, 1)).value
        lam = 1.0 if cfg.algo == "pg" else cfg.gae_lambda
        advantage, target = gae(traj.value, traj.reward, traj.done, last_value, cfg.gamma, lam)

        def by_pop(x: jax.Array) -> jax.Array:  # [T, b, N * L / P, ...] -> [G, S, ...]
            x = to_pops(x, self.nets, axis=2)
            return x.reshape((self.nets, -1) + x.shape[4:])

        batch = Batch(*jax.tree.map(by_pop, (traj, advantage, target)))
        valid = batch.transition.valid
        mean = global_mean(batch.advantage, valid, axis=1)[:, None]
        std = jnp.sqrt(global_mean((batch.advantage - mean) ** 2, valid, axis=1))[:, None]
        return batch._replace(advantage=(batch.advantage - mean) / (std + 1e-8))

    def _learn(self, runner: RunnerState, batch: Batch, key: jax.Array
               ) -> tuple[RunnerState, LossAux, jax.Array]:
        """Epochs of minibatch steps over the live samples of `batch`; returns the runner
        with new parameters and optimiser state, the loss terms averaged over the steps
        ([G] each) and the gradient steps per epoch."""
        cfg = self.config
        epochs = 1 if cfg.algo == "pg" else cfg.epochs
        size = self.local_minibatch
        valid = batch.transition.valid  # [G, S]
        live = jnp.sum(valid, axis=1)  # [G], this device's
        # Gradient steps per epoch: as many as the device and network with the most
        # live samples needs, the same on every device (each step reduces across them).
        steps = jax.lax.pmax((jnp.max(live) + size - 1) // size, REALM)
        grad_fn = jax.vmap(jax.value_and_grad(
            lambda p, b, n: ppo_loss(self.network, cfg, p, b.transition, b.advantage, b.target,
                                     n), has_aux=True))

        def epoch(carry: tuple[Any, Any, LossAux], key: jax.Array) -> tuple[Any, None]:
            # Each network's live samples in a random order, then the empty ones.
            key = jax.random.fold_in(key, jax.lax.axis_index(REALM))
            order = jnp.argsort(jax.random.uniform(key, valid.shape) + ~valid, axis=1)  # [G, S]

            def minibatch_step(i: jax.Array, carry: tuple[Any, Any, LossAux]
                               ) -> tuple[Any, Any, LossAux]:
                params, opt_state, aux_sum = carry
                minibatch, _, keep = take_chunk(batch, order, live, i, size)
                minibatch = minibatch._replace(transition=minibatch.transition._replace(
                    valid=minibatch.transition.valid & keep))  # empty or repeated: masked
                count = jax.lax.psum(jnp.sum(minibatch.transition.valid, axis=1), REALM)  # [G]
                (_, aux), grads = grad_fn(params, minibatch, count)
                grads, aux = jax.lax.psum((grads, aux), REALM)  # of the whole minibatch
                updates, opt_state = jax.vmap(self.optimizer.update)(grads, opt_state, params)
                aux_sum = jax.tree.map(lambda total, x: total + x * count, aux_sum, aux)
                return optax.apply_updates(params, updates), opt_state, aux_sum

            return jax.lax.fori_loop(0, steps, minibatch_step, carry), None

        no_aux = LossAux(*[jnp.zeros((self.nets,))] * len(LossAux._fields))
        (params, opt_state, aux_sum), _ = jax.lax.scan(
            epoch, (runner.params, runner.opt_state, no_aux), jax.random.split(key, epochs))
        samples = jax.lax.psum(live, REALM) * epochs
        aux = jax.tree.map(lambda x: x / jnp.maximum(samples, 1), aux_sum)
        return runner.replace(params=params, opt_state=opt_state), aux, steps * epochs

    def _metrics(self, runner: RunnerState, traj: Transition, stats: dict[str, jax.Array],
                 aux: LossAux, grad_steps: jax.Array) -> dict[str, jax.Array]:
        """The update's metrics, the same on every device: every entry is [L], one value
        per learning population, but `scripted_lifetime` and `scripted_deaths`, [P - L],
        which are there only with scripted populations."""
        cfg, n = self.config, self.learners
        alive = to_pops(traj.valid, n, 2)  # [L, T, b, N/P]

        def per_pop(x: jax.Array) -> jax.Array:  # mean over each population's live samples
            return global_mean(to_pops(x, n, 2), alive, axis=(1, 2, 3))

        explored = jax.lax.psum(jnp.sum(runner.env_state.visits > 0, axis=(0, 2, 3)), REALM)
        lifetime = stats["lifetime_sum"] / jnp.maximum(stats["deaths"], 1)  # [P]
        scripted = {"scripted_lifetime": lifetime[n:], "scripted_deaths": stats["deaths"][n:]}
        return {
            "lifetime": lifetime[:n],
            "deaths": stats["deaths"][:n],
            **{f"died_{name}": stats["causes"][:n, i]
               for i, name in enumerate(CAUSE_NAMES[1:])},
            "alive": stats["live"][:n] / (cfg.rollout * cfg.realms),
            "live_steps": jax.lax.psum(jnp.sum(alive, axis=(1, 2, 3)), REALM),
            "reward": per_pop(traj.reward / cfg.reward_scale),
            "value": per_pop(traj.value),
            "explored": explored[:n] / cfg.realms,
            "grad_steps": jnp.broadcast_to(grad_steps, (n,)),
            **per_population(aux._asdict(), n),  # each population: its network's terms
            **(scripted if self.scripts else {}),
        }

    def _update(self, runner: RunnerState, _: Any = None
                ) -> tuple[RunnerState, dict[str, jax.Array]]:
        """One update: rollout, advantages, epochs of minibatch steps, metrics."""
        key, rollout_key, epoch_key = jax.random.split(runner.key, 3)
        runner, traj, stats = self._rollout(runner, rollout_key)  # traj [T, b, N * L / P, ...]
        stats = jax.lax.psum(stats, REALM)
        runner, aux, grad_steps = self._learn(runner, self._batch(runner, traj), epoch_key)
        if self.config.realm_ticks:
            runner = self._restart_oldest(runner, jax.random.fold_in(rollout_key, 1))
        runner = runner.replace(key=key, update=runner.update + 1)
        return runner, self._metrics(runner, traj, stats, aux, grad_steps)

    # -- programs ------------------------------------------------------------------------

    def _run_chunk(self, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        return self._sharded(self._chunk, (self.specs,), (self.specs, P()))(runner)

    def _chunk(self, runner: RunnerState) -> tuple[RunnerState, dict[str, jax.Array]]:
        return jax.lax.scan(self._update, runner, None, self.config.chunk)

    def _train_all(self, key: jax.Array) -> tuple[RunnerState, dict[str, jax.Array]]:
        return jax.lax.scan(self._update, self._init(key), None, self.config.num_updates)


def make_train(config: TrainConfig) -> Trainer:
    """The compiled training program for `config` (call it with a key, or run chunks)."""
    return Trainer(config)
