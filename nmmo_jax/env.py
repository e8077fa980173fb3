"""The public environment: `Env.reset`, `Env.step`, scenario building and action checks."""

from __future__ import annotations

import functools
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from nmmo_jax import game, terrain
from nmmo_jax.config import (FOREST, N_MOVES, N_STYLES, STYLE_NAMES, Config, Params,
                             config)
from nmmo_jax.observe import observe
from nmmo_jax.state import Actions, Info, Observation, State


class Env:
    """Neural MMO v1.0 as a pure, vectorised JAX environment.

    A realm is an H x W tile map (lava border, grass spawn ring, generated interior)
    holding up to N agents in fixed slots; slot i belongs to population i % P. Every
    tick each live agent moves (stay / east / south / west / north) and attacks an entity
    slot of its observation with melee, range or mage; then upkeep feeds, waters, heals,
    starves and ages it, agents die of lava, starvation or combat, and one agent spawns
    on the ring into a free slot. The world never resets for the agents' sake.

    Observation: `state.Observation` (per slot: the 15 x 15 tile and agent-count window,
    own features, the K nearest entities with masks, per-style target masks).
    Actions: `state.Actions` (move, style, target; int32 [N]).
    Reward: with `reward_mode` "death" (default) 0 per tick and -1 on death; with
    "alive" +1 per tick survived. Empty slots get 0. `done[N]` is True on the tick a
    slot's agent dies.

    `reset` and `step` are pure and jitted; vmap them over realms. Static shapes live in
    the `Config`; every rule number lives in `Params` (`env.default_params`).
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg if cfg is not None else config()
        self.reset = jax.jit(self._reset)
        self.step = jax.jit(self._step)
        self.observe = jax.jit(self._observe)
        self._observe_into_jit = jax.jit(self._observe_into)

    @property
    def default_params(self) -> Params:
        return self.cfg.params

    @property
    def n_agents(self) -> int:
        return self.cfg.n_agents

    @property
    def n_pops(self) -> int:
        return self.cfg.n_pops

    @property
    def n_entities(self) -> int:
        return self.cfg.n_entities

    @property
    def action_sizes(self) -> dict[str, int]:
        """The number of choices of each action head."""
        return {"move": N_MOVES, "style": N_STYLES, "target": self.cfg.n_entities}

    @property
    def observation_shapes(self) -> dict[str, tuple[int, ...]]:
        """Shape of each `Observation` field (see its docstring for dtypes)."""
        n, v, k = self.cfg.n_agents, self.cfg.view_size, self.cfg.n_entities
        return {"tiles": (n, v, v), "counts": (n, v, v), "own": (n, 11),
                "entities": (n, k, 11), "entity_mask": (n, k), "target_mask": (n, N_STYLES, k),
                "alive": (n,), "population": (n,)}

    def _reset(self, key: jax.Array, params: Params | None = None,
               tiles: jax.Array | None = None) -> tuple[Observation, State]:
        """A new realm with a generated map (or `tiles`, an [H, W] int map) and the first
        spawn; returns its observation and state."""
        params = self.default_params if params is None else params
        map_key, spawn_key = jax.random.split(key)
        if tiles is None:
            tiles = terrain.generate(map_key, self.cfg, params)
        state = self._blank_state(jnp.asarray(tiles, jnp.int8), params)
        agents, _ = game.spawn(spawn_key, state.agents, params, self.cfg)
        state = state.replace(agents=agents, visits=game.count_visits(state.visits, agents))
        return self._observe_into(state, params)

    def _blank_state(self, tiles: jnp.ndarray, params: Params) -> State:
        cfg = self.cfg
        capacity = jnp.where(tiles == FOREST, params.forest_capacity, 0).astype(jnp.int8)
        return State(
            agents=game.empty_agents(cfg, params), terrain=tiles, tiles=tiles,
            capacity=capacity,
            entity_ids=jnp.full((cfg.n_agents, cfg.n_entities), -1, jnp.int32),
            visits=jnp.zeros((cfg.n_pops, cfg.map_size, cfg.map_size), jnp.int32),
            tick=jnp.zeros((), jnp.int32))

    def _observe(self, state: State, params: Params | None = None) -> Observation:
        params = self.default_params if params is None else params
        return observe(state, params, self.cfg)[0]

    def _observe_into(self, state: State, params: Params) -> tuple[Observation, State]:
        obs, ids = observe(state, params, self.cfg)
        return obs, state.replace(entity_ids=ids)

    def _step(self, key: jax.Array, state: State, actions: Actions, params: Params | None = None
              ) -> tuple[Observation, State, jax.Array, jax.Array, Info]:
        """Advances the realm one tick; returns (obs, state, reward[N], done[N], info)."""
        params = self.default_params if params is None else params
        state, reward, done, info = game.tick(key, state, actions, params, self.cfg)
        obs, state = self._observe_into(state, params)
        return obs, state, reward, done, info

    def make_state(self, tiles: Any, agents: Sequence[dict[str, Any]],
                   params: Params | None = None) -> tuple[Observation, State]:
        """Builds an exact scenario: a fixed map and agents in chosen slots.

        `tiles` is an [H, W] integer map. Each entry of `agents` is a dict with `pos`
        (row, col) and optionally `slot` (default: its index in the list), `health`,
        `food`, `water` (default: the maxima), `freeze`, `time_alive` (default 0; agents
        younger than `immunity_ticks` are immune) and `damage`. Returns the observation
        and the state, ready for `step`.
        """
        params = self.default_params if params is None else params
        cfg = self.cfg
        tiles = terrain.check_map(tiles, cfg)
        state = self._blank_state(jnp.asarray(tiles), params)
        columns = {name: np.asarray(getattr(state.agents, name)).copy()
                   for name in ("pos", "health", "food", "water", "freeze", "time_alive",
                                "damage", "alive")}
        known = {"pos", "slot", "health", "food", "water", "freeze", "time_alive", "damage"}
        for index, spec in enumerate(agents):
            unknown = set(spec) - known
            if unknown:
                raise ValueError(f"agent {index}: unknown fields {sorted(unknown)}")
            slot = spec.get("slot", index)
            if not 0 <= slot < cfg.n_agents:
                raise ValueError(f"agent {index}: slot {slot} not in [0, {cfg.n_agents})")
            row, col = spec["pos"]
            if not (0 <= row < cfg.map_size and 0 <= col < cfg.map_size):
                raise ValueError(f"agent {index}: pos {(row, col)} is off the map")
            columns["pos"][slot] = (row, col)
            columns["alive"][slot] = True
            for name in ("health", "food", "water", "freeze", "time_alive", "damage"):
                if name in spec:
                    columns[name][slot] = spec[name]
        agents_struct = state.agents.replace(**{k: jnp.asarray(v) for k, v in columns.items()})
        state = state.replace(agents=agents_struct,
                              visits=game.count_visits(state.visits, agents_struct))
        return self._observe_into_jit(state, params)

    def check_actions(self, actions: Actions, obs: Observation) -> None:
        """Raises `ValueError` naming the first live agent whose action is out of range
        or targets a slot its style cannot hit (eager, for Python-facing callers).

        Arrays may carry leading realm axes ([R, N] for a batch); the error then names
        the first realm with a bad action ("realm 2: agent 5: ...").
        """
        move, style, target = (np.asarray(a) for a in (actions.move, actions.style, actions.target))
        n, k = self.cfg.n_agents, self.cfg.n_entities
        alive = np.asarray(obs.alive)
        for name, value in (("move", move), ("style", style), ("target", target)):
            if value.shape != alive.shape or value.shape[-1:] != (n,):
                raise ValueError(f"actions.{name} must have shape {alive.shape[:-1] + (n,)}, "
                                 f"got {value.shape}")
        checks = [(name, value, top, (value < 0) | (value >= top))
                  for name, value, top in (("move", move, N_MOVES), ("style", style, N_STYLES),
                                           ("target", target, k))]
        # Out-of-range values are reported above; clipping keeps their lookups in bounds.
        rows = np.take_along_axis(np.asarray(obs.target_mask),
                                  np.clip(style, 0, N_STYLES - 1)[..., None, None], axis=-2)
        legal = np.take_along_axis(rows[..., 0, :], np.clip(target, 0, k - 1)[..., None],
                                   axis=-1)[..., 0]
        problems = [bad for *_, bad in checks] + [~legal]
        flat = [(alive & bad).reshape(-1, n) for bad in problems]  # [R, N] each
        realms = np.flatnonzero(np.any(np.logical_or.reduce(flat), axis=1))
        if not realms.size:
            return
        r = realms[0]
        where = f"realm {r}: " if alive.ndim > 1 else ""
        for (name, value, top, _), bad in zip(checks, flat):
            if bad[r].any():
                i = np.flatnonzero(bad[r])[0]
                raise ValueError(f"{where}agent {i}: {name} {value.reshape(-1, n)[r, i]} "
                                 f"is not in [0, {top})")
        i = np.flatnonzero(flat[-1][r])[0]
        style, target = style.reshape(-1, n)[r, i], target.reshape(-1, n)[r, i]
        raise ValueError(f"{where}agent {i}: target slot {target} cannot be hit with "
                         f"{STYLE_NAMES[style]} (empty or out of range)")

    def step_checked(self, key: jax.Array, state: State, actions: Actions,
                     params: Params | None = None
                     ) -> tuple[Observation, State, jax.Array, jax.Array, Info]:
        """`step` with a checkify guard: raises naming the first live agent whose move,
        style or target is out of range, instead of treating it as the no-op."""
        err, out = _checked_step(self, key, state, actions, params)
        err.throw()
        return out


def _action_checks(env: Env, state: State, actions: Actions) -> None:
    alive = state.agents.alive
    for name, value, top in (("move", actions.move, N_MOVES), ("style", actions.style, N_STYLES),
                             ("target", actions.target, env.cfg.n_entities)):
        bad = alive & ((value < 0) | (value >= top))
        first = jnp.argmax(bad)
        checkify.check(~jnp.any(bad), f"agent {{i}}: {name} {{v}} is not in [0, {top})",
                       i=first, v=value[first])


@functools.partial(jax.jit, static_argnums=0)
def _checked_step(env: Env, key, state, actions, params):
    def guarded(key, state, actions, params):
        _action_checks(env, state, actions)
        return env._step(key, state, actions, params)
    return checkify.checkify(guarded)(key, state, actions, params)
