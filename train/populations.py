"""P independent parameter sets stacked in one pytree, applied in one vmapped forward.

Every leaf of a population pytree has a leading axis of size P. Agent slot i belongs to
population i % P (the environment's rule), so an agent axis [N] reshapes to [N/P, P]
with population p in column p; `to_pops` moves that column axis to the front, and the
network is vmapped over it with each population's own parameters. There is no Python
loop over populations anywhere.

`act_live` samples actions the way a rollout needs them: it runs the network on live
slots only. Spawning refills at most one slot per tick, so in Chaos with 128 slots only
about as many slots hold an agent as an agent lives ticks; the empty ones cost nothing.
Sampling is Gumbel-max with noise drawn per slot up front (`action_noise`,
`sample_actions`): a slot's action depends on its own logits and noise only, not on which
other slots share its network call, so the actions are the same however the live slots
are chunked or the realms split across devices.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

import nmmo_jax
from nmmo_jax.config import N_MOVES, N_STYLES
from train.networks import ActionDist, PolicyOutput

Params = Any  # a pytree of arrays


def to_pops(x: jax.Array, n_pops: int, axis: int) -> jax.Array:
    """[..., N, ...] with the agent axis at `axis` (>= 0) -> [P, ..., N/P, ...]; slot i
    goes to population i % P."""
    n = x.shape[axis]
    x = x.reshape(x.shape[:axis] + (n // n_pops, n_pops) + x.shape[axis + 1:])
    return jnp.moveaxis(x, axis + 1, 0)


def from_pops(x: jax.Array, axis: int) -> jax.Array:
    """Inverse of `to_pops`: [P, ..., N/P, ...] -> [..., N, ...]; `axis` (>= 0) is the
    agent axis of the result."""
    x = jnp.moveaxis(x, 0, axis + 1)
    return x.reshape(x.shape[:axis] + (-1,) + x.shape[axis + 2:])


def init_populations(network: nn.Module, key: jax.Array, obs: nmmo_jax.Observation,
                     n_pops: int, same_init: bool = False) -> Params:
    """Initial parameters of `n_pops` populations, every leaf [P, ...].

    `obs` is any observation (used for shapes only). With `same_init` every population
    starts from the same draw; otherwise each has its own key.
    """
    batch_ndim = obs.alive.ndim
    one = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[batch_ndim:])[:1], obs)
    keys = jax.random.split(key, n_pops)
    if same_init:
        keys = jnp.broadcast_to(keys[:1], keys.shape)
    return jax.vmap(lambda k: network.init(k, one))(keys)


def per_population(params: Params, n_pops: int) -> Params:
    """Parameters of `n_pops` populations from G networks (leaves [G, ...] -> [n_pops,
    ...]): population p plays network p % G."""
    return jax.tree.map(lambda x: x[jnp.arange(n_pops) % x.shape[0]], params)


def apply_populations(network: nn.Module, params: Params, obs: nmmo_jax.Observation,
                      agent_axis: int = -1) -> Any:
    """Runs each population's network on its own slots; returns outputs shaped like obs.

    `obs` leaves have the agent axis [N] at `agent_axis` of their batch shape (default:
    the last batch axis, e.g. obs [B, N, ...]); `params` leaves are [P, ...]. The output
    leaves (a `PolicyOutput`) have the same batch shape as `obs`.
    """
    n_pops = jax.tree.leaves(params)[0].shape[0]
    batch_ndim = obs.alive.ndim
    axis = agent_axis % batch_ndim
    split = jax.tree.map(lambda x: to_pops(x, n_pops, axis), obs)
    out = jax.vmap(network.apply)(params, split)
    return jax.tree.map(lambda y: from_pops(y, axis), out)


class Acted(NamedTuple):
    """Sampled actions with their log-probabilities and values, shaped like `obs.alive`."""

    actions: nmmo_jax.Actions
    log_prob: jax.Array
    value: jax.Array


class ActionNoise(NamedTuple):
    """Standard Gumbel noise for every slot's three action heads; leaves [..., choices]."""

    move: jax.Array  # [..., 5]
    style: jax.Array  # [..., 3]
    target: jax.Array  # [..., K], used on the row of the sampled style


def action_noise(key: jax.Array, shape: tuple[int, ...], n_entities: int) -> ActionNoise:
    """Gumbel noise for slots of batch shape `shape` (e.g. (N,) for one realm's slots)."""
    move_key, style_key, target_key = jax.random.split(key, 3)
    return ActionNoise(jax.random.gumbel(move_key, shape + (N_MOVES,)),
                       jax.random.gumbel(style_key, shape + (N_STYLES,)),
                       jax.random.gumbel(target_key, shape + (n_entities,)))


def sample_actions(out: PolicyOutput, noise: ActionNoise) -> nmmo_jax.Actions:
    """Gumbel-max sampling: each head's argmax of logits + noise is an exact draw from its
    categorical distribution (the target from the sampled style's row, as `ActionDist`).
    Masked logits (-1e9) stay below any legal one whatever the noise."""
    move = jnp.argmax(out.move_logits + noise.move, axis=-1)
    style = jnp.argmax(out.style_logits + noise.style, axis=-1)
    target_logits = jnp.take_along_axis(out.target_logits, style[..., None, None], axis=-2)
    target = jnp.argmax(target_logits[..., 0, :] + noise.target, axis=-1)
    return nmmo_jax.Actions(move.astype(jnp.int32), style.astype(jnp.int32),
                            target.astype(jnp.int32))


def live_first(alive: jax.Array) -> jax.Array:
    """Per row of a [P, S] mask, the indices of the True entries in order, then the rest."""
    return jnp.argsort(~alive, axis=1, stable=True)


def take_chunk(tree: Any, order: jax.Array, live: jax.Array, i: jax.Array, chunk: int
               ) -> tuple[Any, jax.Array, jax.Array]:
    """Chunk i of every population's samples in `order`, [P, S] with the live ones first.

    Returns the rows of `tree` (leaves [P, S, ...]) at positions i * chunk ... + chunk - 1,
    leaves [P, C, ...]; their indices, [P, C]; and which of them are live, [P, C]: a
    position past its population's live count `live` [P] holds an empty or repeated one.
    """
    position = i * chunk + jnp.arange(chunk)  # [C]
    index = order[:, jnp.minimum(position, order.shape[1] - 1)]  # [P, C]
    rows = jax.tree.map(lambda x: jax.vmap(lambda x, j: x[j])(x, index), tree)
    return rows, index, position < live[:, None]


def act_live(network: nn.Module, params: Params, inputs: Any, alive: jax.Array,
             noise: ActionNoise, chunk: int) -> Acted:
    """Samples every live slot's action from its population's network, skipping empty slots.

    `inputs` is what the network reads (an observation, or `network.inputs` of one) and
    `alive` which slots hold an agent, both with the agent axis [N] last in their batch
    shape (e.g. [B, N, ...]); `noise` (`action_noise` of that batch shape) gives each
    slot's draw. Each population's
    live slots are gathered in slot order and the network runs on `chunk` of them per
    population at a time, as many times as the population with the most live slots needs
    (a loop with a traced trip count: the work follows the live agents, the shapes stay
    fixed). The actions do not depend on `chunk` (`sample_actions`). Empty slots get
    action 0 (stay; style melee; target slot 0, the no-op), log-probability 0 and value 0.
    """
    n_pops = jax.tree.leaves(params)[0].shape[0]
    batch_ndim = alive.ndim
    split = jax.tree.map(lambda x: to_pops(x, n_pops, batch_ndim - 1), (inputs, noise, alive))
    flat = jax.tree.map(lambda x: x.reshape((n_pops, -1) + x.shape[batch_ndim + 1:]), split)
    alive = flat[2]
    size = alive.shape[1]  # S, slots per population
    chunk = min(chunk, size)
    order = live_first(alive)  # [P, S]
    live = jnp.sum(alive, axis=1)  # [P]
    rows = jnp.arange(n_pops)[:, None]

    def call(i, acted: Acted) -> Acted:
        (part, part_noise, _), index, keep = take_chunk(flat, order, live, i, chunk)
        dist = ActionDist(jax.vmap(network.apply)(params, part))
        actions = sample_actions(dist.out, part_noise)
        target = jnp.where(keep, index, size)  # empty or repeated slots are dropped

        def put(into: jax.Array, value: jax.Array) -> jax.Array:
            return into.at[rows, target].set(value, mode="drop")

        return jax.tree.map(put, acted, Acted(actions, dist.log_prob(actions), dist.out.value))

    zeros = jnp.zeros((n_pops, size), jnp.int32)
    empty = Acted(nmmo_jax.Actions(zeros, zeros, zeros), jnp.zeros((n_pops, size)),
                  jnp.zeros((n_pops, size)))
    calls = (jnp.max(live) + chunk - 1) // chunk
    acted = jax.lax.fori_loop(0, calls, call, empty)
    shape = split[2].shape  # [P, ..., N/P]
    return jax.tree.map(lambda x: from_pops(x.reshape(shape), batch_ndim - 1), acted)
