"""Logging helpers and the realm horizon (map refresh), on top of `Env`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from nmmo_jax.config import N_TILE_TYPES, Params
from nmmo_jax.env import Env
from nmmo_jax.game import per_population
from nmmo_jax.state import Actions, Info, Observation, State


def _counted_visits(state: State) -> jnp.ndarray:
    """`state.visits`, or a `ValueError` if its realm does not count them."""
    if state.visits.size == 0:
        raise ValueError("this realm does not count visits: build its Env with "
                         "count_visits=True (nmmo_jax.make(preset, count_visits=True))")
    return state.visits


def visits_by_tile_type(state: State) -> jnp.ndarray:
    """Ticks each population spent on each tile type (original terrain), [P, 7] int32."""
    visits = _counted_visits(state)
    onehot = jax.nn.one_hot(state.terrain, N_TILE_TYPES, dtype=jnp.int32)  # [H, W, 7]
    return jnp.einsum("phw,hwt->pt", visits, onehot)


def distinct_tiles(state: State) -> jnp.ndarray:
    """Distinct tiles each population has stood on, [P] int32."""
    return jnp.sum(_counted_visits(state) > 0, axis=(1, 2))


@struct.dataclass
class Lifetimes:
    """Running totals per population since the realm began.

    Attributes:
      deaths: [P] int32, agents that died.
      lifetime: [P] int32, their summed lifetimes (mean lifetime = lifetime / deaths).
    """

    deaths: jnp.ndarray
    lifetime: jnp.ndarray

    @classmethod
    def zeros(cls, n_pops: int) -> Lifetimes:
        return cls(jnp.zeros((n_pops,), jnp.int32), jnp.zeros((n_pops,), jnp.int32))

    def add(self, info: Info) -> Lifetimes:
        return Lifetimes(self.deaths + info.pop_deaths, self.lifetime + info.pop_lifetime)

    def mean(self) -> jnp.ndarray:
        """Mean lifetime per population, [P] float32 (NaN where nobody died yet)."""
        return jnp.where(self.deaths > 0, self.lifetime / jnp.maximum(self.deaths, 1), jnp.nan)


class RealmHorizon:
    """Regenerates a realm (new map, empty population) once it reaches `horizon` ticks.

    The world never resets for the agents' sake; this refresh is for map randomisation
    (SPEC §4). On the refresh tick every live agent that has acted gets `done` True and
    its lifetime in `info` (cause 0); an agent spawned that same tick just vanishes.
    `step` uses `lax.cond`: under `vmap` both branches run, so a batch pays for a map
    generation every tick; realms reset together keep equal ticks, and a batched caller
    can test `state.tick[0]` itself instead.
    """

    def __init__(self, env: Env, horizon: int):
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        self.env = env
        self.horizon = horizon
        self.reset = env.reset
        self.step = jax.jit(self._step)

    def _step(self, key: jax.Array, state: State, actions: Actions, params: Params | None = None
              ) -> tuple[Observation, State, jax.Array, jax.Array, Info]:
        step_key, reset_key = jax.random.split(key)
        obs, state, reward, done, info = self.env.step(step_key, state, actions, params)

        def refresh(args):
            obs, state, reward, done, info = args
            alive = state.agents.alive & (state.agents.time_alive > 0)  # newborns never acted
            ended = jnp.where(alive, state.agents.time_alive, 0)
            fresh_obs, fresh_state = self.env.reset(reset_key, params)
            info = info.replace(
                lifetime=info.lifetime + ended,
                pop_deaths=info.pop_deaths + per_population(alive.astype(jnp.int32), self.env.cfg),
                pop_lifetime=info.pop_lifetime + per_population(ended, self.env.cfg))
            return fresh_obs, fresh_state, reward, done | alive, info

        return jax.lax.cond(state.tick >= self.horizon, refresh, lambda args: args,
                            (obs, state, reward, done, info))
