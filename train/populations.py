"""P independent parameter sets stacked in one pytree, applied in one vmapped forward.

Every leaf of a population pytree has a leading axis of size P. Agent slot i belongs to
population i % P (the environment's rule), so an agent axis [N] reshapes to [N/P, P]
with population p in column p; `to_pops` moves that column axis to the front, and the
network is vmapped over it with each population's own parameters. There is no Python
loop over populations anywhere.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

import nmmo_jax

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
