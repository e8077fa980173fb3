"""R realms stepped together with numpy arrays in and out, for batched learners."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from nmmo_jax.adapters.common import check_actions, make_env, seed_key
from nmmo_jax.adapters.spaces import ACTION_FIELDS
from nmmo_jax.config import Config, Params
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Observation, State


class BatchEnv:
    """`n_realms` realms under one vmapped, jitted `reset` / `step`, as numpy arrays.

    Every slot of every realm is an agent, alive or not: arrays have leading axes
    [R, N]. `reset(seed)` returns `(obs, {})` and `step(actions)` returns `(obs, reward,
    done, info)`, where `obs` and `info` are dicts of the fields of
    `nmmo_jax.state.Observation` and `nmmo_jax.state.Info` ([R, N, ...], or [R, P] for
    per-population counts), `reward` is float32 [R, N] and `done` bool [R, N] (True on
    the tick a slot's agent dies; a later spawn starts a new life in the slot). The
    realms never end; read `obs["alive"]` to know which slots hold an agent.

    `actions` maps "move", "style" and "target" to integer arrays [R, N]. Dead slots'
    values are ignored; a live agent's out-of-range value raises `ValueError` naming
    the realm and the agent. An in-range target its style cannot hit is no attack, as
    inside jit; with `strict=True` it raises too. `env` is an `nmmo_jax.Env`, a
    `Config` or None (the default config); `params` defaults to `env.default_params`,
    and params that do not fit the config raise `ValueError` (`Env.check_params`).
    """

    def __init__(self, env: Env | Config | None = None, n_realms: int = 1,
                 params: Params | None = None, strict: bool = False):
        if n_realms < 1:
            raise ValueError(f"n_realms must be >= 1, got {n_realms}")
        self.env = make_env(env)
        self.n_realms = n_realms
        self.params = self.env.default_params if params is None else params
        self.env.check_params(self.params)
        self.strict = strict
        self._reset = jax.jit(jax.vmap(self.env.reset, (0, None)))
        self._step = jax.jit(jax.vmap(self.env.step, (0, 0, 0, None)))
        self._key: jax.Array | None = None
        self._state: State | None = None
        self._obs: Observation | None = None

    @property
    def realms(self) -> State:
        """The realms' current `nmmo_jax.State`, leading axis R (JAX arrays)."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    def reset(self, seed: int | None = None) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Starts `n_realms` new realms; `seed` as in `ParallelEnv.reset`."""
        if seed is not None or self._key is None:
            self._key = seed_key(seed)
        self._key, key = jax.random.split(self._key)
        obs, self._state = self._reset(jax.random.split(key, self.n_realms), self.params)
        self._obs = jax.tree.map(np.array, obs)
        return _fields(self._obs), {}

    def step(self, actions: Mapping[str, Any]) -> tuple[
            dict[str, np.ndarray], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Advances every realm one tick; the realms do not advance if an action is bad."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        batch = self._actions(actions)
        check_actions(self.env, batch, self._obs, self.strict)
        self._key, key = jax.random.split(self._key)
        obs, self._state, reward, done, info = self._step(
            jax.random.split(key, self.n_realms), self._state, batch, self.params)
        self._obs, reward, done, info = jax.tree.map(np.array, (obs, reward, done, info))
        return _fields(self._obs), reward, done, _fields(info)

    def _actions(self, actions: Mapping[str, Any]) -> Actions:
        shape = (self.n_realms, self.env.n_agents)
        if not isinstance(actions, Mapping) or set(actions) != set(ACTION_FIELDS):
            got = sorted(map(str, actions)) if isinstance(actions, Mapping) else type(actions)
            raise ValueError(f"actions must be a dict with keys {list(ACTION_FIELDS)}, got {got}")
        columns = {}
        for field in ACTION_FIELDS:
            value = np.asarray(actions[field])
            if value.shape != shape or not np.issubdtype(value.dtype, np.integer):
                raise ValueError(f"actions[{field!r}] must be integers of shape {shape}, "
                                 f"got {value.dtype} {value.shape}")
            bounds = np.iinfo(np.int32)
            columns[field] = np.clip(value, bounds.min, bounds.max).astype(np.int32)
        return Actions(**columns)


def _fields(tree: Any) -> dict[str, np.ndarray]:
    """A flax struct's fields as a dict."""
    return {field.name: getattr(tree, field.name) for field in dataclasses.fields(tree)}
