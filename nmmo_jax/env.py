"""The public environment: `Env.reset`, `Env.step`, scenario building and action checks."""

from __future__ import annotations

import functools
import operator
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

from nmmo_jax import game, terrain
from nmmo_jax.config import (
    FOREST,
    INT16_MAX,
    INT32_MAX,
    N_FEATURES,
    N_MOVES,
    N_STYLES,
    PASSABLE,
    STYLE_NAMES,
    TILE_NAMES,
    Config,
    Params,
    check_hits_fit,
    config,
)
from nmmo_jax.config import params as make_params
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
    the `Config`; every rule number lives in `Params`. `env.default_params` are the rule
    numbers of the config's preset; pass others to `reset` and `step` without recompiling.

    Shapes and dtypes are checked while tracing, so the checks cost nothing per call:
    `step` raises `ValueError` for actions that are not an `Actions` of integer [N]
    arrays (per realm under vmap) and for a `State` whose shapes or dtypes are not this
    config's; `reset` does the same for a fixed map's shape and dtype, and checks a
    concrete map's tile ids too (`terrain.check_map`) before the jitted call. Params
    given to `reset` or `make_state` with concrete values are checked against the config
    (`check_params`) on the way in; `step` sees only traced params and cannot.
    """

    def __init__(self, cfg: Config | None = None):
        self.cfg = cfg if cfg is not None else config()
        # Built here, outside any trace: arrays made while tracing must not be kept.
        self._preset_params = make_params(self.cfg.preset)
        self._reset_jit = jax.jit(self._reset)
        self.step = jax.jit(self._step)
        self.observe = jax.jit(self._observe)
        self._observe_into_jit = jax.jit(self._observe_into)

    @property
    def default_params(self) -> Params:
        """The rule numbers of the config's preset. Raises `ValueError` if they do not fit
        the config (`check_params`; e.g. Chaos damages with thousands of agents): then
        pass params of your own to `reset` and `step`."""
        self.check_params(self._preset_params)
        return self._preset_params

    def check_params(self, params: Params) -> None:
        """Raises `ValueError` unless `params` fit this config: the damages of every
        other agent on one agent in one tick must fit its int16 damage stat
        (`config.check_hits_fit`). Traced params (under jit) pass: their values are not
        known while tracing."""
        damages = (params.melee_damage, params.range_damage, params.mage_damage)
        if not any(isinstance(d, jax.core.Tracer) for d in damages):
            check_hits_fit(self.cfg, params)

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
        return {"tiles": (n, v, v), "counts": (n, v, v), "own": (n, N_FEATURES),
                "entities": (n, k, N_FEATURES), "entity_mask": (n, k),
                "target_mask": (n, N_STYLES, k), "move_mask": (n, N_MOVES),
                "alive": (n,), "population": (n,)}

    def reset(self, key: jax.Array, params: Params | None = None,
              tiles: Any | None = None) -> tuple[Observation, State]:
        """A new realm with a generated map (or `tiles`, an [H, W] integer map) and the
        first spawn; returns its observation and state (jitted).

        A concrete `tiles` is checked in full by `terrain.check_map` (shape, integer
        dtype, ids in [0, 7)); a traced one (under jit or vmap) only by shape and dtype,
        since its values are not known while tracing.
        """
        if tiles is not None and not isinstance(tiles, jax.core.Tracer):
            tiles = terrain.check_map(tiles, self.cfg)
        if params is not None:
            self.check_params(params)
        return self._reset_jit(key, params, tiles)

    def _reset(self, key: jax.Array, params: Params | None = None,
               tiles: jax.Array | None = None) -> tuple[Observation, State]:
        params = self.default_params if params is None else params
        map_key, spawn_key = jax.random.split(key)
        if tiles is None:
            tiles = terrain.generate(map_key, self.cfg, params)
        else:
            self._check_map_layout(tiles)
        state = self._blank_state(jnp.asarray(tiles, jnp.int8), params)
        agents, _ = game.spawn(game.draw(spawn_key, self.cfg), state.agents, params, self.cfg)
        state = state.replace(agents=agents, visits=game.count_visits(state.visits, agents))
        return self._observe_into(state, params)

    def _blank_state(self, tiles: jnp.ndarray, params: Params) -> State:
        cfg = self.cfg
        counted = cfg.map_size if cfg.count_visits else 0  # an empty counter when off
        capacity = jnp.where(tiles == FOREST, params.forest_capacity, 0).astype(jnp.int8)
        return State(
            agents=game.empty_agents(cfg, params), terrain=tiles, tiles=tiles,
            capacity=capacity,
            entity_ids=jnp.full((cfg.n_agents, cfg.n_entities), -1, jnp.int32),
            visits=jnp.zeros((cfg.n_pops, counted, counted), jnp.int32),
            tick=jnp.zeros((), jnp.int32))

    def _check_map_layout(self, tiles: Any) -> None:
        """Raises `ValueError` unless `tiles` is an integer array of shape [H, W] (the
        static part of `terrain.check_map`, usable while tracing)."""
        side = self.cfg.map_size
        if np.shape(tiles) != (side, side):
            raise ValueError(f"map must have shape {(side, side)}, got {np.shape(tiles)}")
        if not jnp.issubdtype(tiles.dtype, jnp.integer):
            raise ValueError(f"map must hold integer tile ids, got dtype {tiles.dtype}")

    @functools.cached_property
    def _state_layout(self) -> dict[str, jax.ShapeDtypeStruct]:
        """Shape and dtype of every leaf of this config's `State`, by key path (any params
        give the same layout; the base ones need no check against the config)."""
        side = self.cfg.map_size
        like = jax.eval_shape(self._blank_state, jax.ShapeDtypeStruct((side, side), jnp.int8),
                              make_params())
        return _leaves_by_path(like)

    def check_state(self, state: Any) -> None:
        """Raises `ValueError` naming the first field of `state` whose shape or dtype
        differs from this config's (a `State` built for another config). Static: `step`
        calls it while tracing."""
        if not isinstance(state, State):
            raise ValueError(f"state must be an nmmo_jax.State, got {type(state).__name__}")
        leaves = _leaves_by_path(state)
        for path, want in self._state_layout.items():
            got = leaves.get(path)
            shape, dtype = getattr(got, "shape", None), getattr(got, "dtype", None)
            if shape is None or dtype is None:
                raise ValueError(f"state{path} must be an array {want.shape} {want.dtype}, "
                                 f"got {type(got).__name__}")
            if tuple(shape) != want.shape or dtype != want.dtype:
                raise ValueError(
                    f"state{path} has shape {tuple(shape)} {dtype}; this Env's config needs "
                    f"{want.shape} {want.dtype} (a State built for another config?)")

    def _observe(self, state: State, params: Params | None = None) -> Observation:
        params = self.default_params if params is None else params
        return observe(state, params, self.cfg)[0]

    def _observe_into(self, state: State, params: Params) -> tuple[Observation, State]:
        obs, ids = observe(state, params, self.cfg)
        return obs, state.replace(entity_ids=ids)

    def _step(self, key: jax.Array, state: State, actions: Actions, params: Params | None = None
              ) -> tuple[Observation, State, jax.Array, jax.Array, Info]:
        """Advances the realm one tick; returns (obs, state, reward[N], done[N], info)."""
        self.check_state(state)
        _check_action_layout(actions, (self.cfg.n_agents,))
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

        Raises `ValueError` naming the agent and the field for a state the game cannot
        reach: a slot given twice, an agent off the map or on water, stone or ore,
        health outside [1, max_health], food or water outside [0, max], or a negative
        (or dtype-overflowing) freeze, time_alive or damage.
        """
        params = self.default_params if params is None else params
        self.check_params(params)
        cfg = self.cfg
        tiles = terrain.check_map(tiles, cfg)
        state = self._blank_state(jnp.asarray(tiles), params)
        bounds = _agent_bounds(params)
        columns = {name: np.asarray(getattr(state.agents, name)).copy()
                   for name in ("pos", "alive", *bounds)}
        owner: dict[int, int] = {}
        for index, spec in enumerate(agents):
            slot, pos, stats = _scenario_agent(index, spec, tiles, bounds, cfg)
            if slot in owner:
                raise ValueError(f"agent {index}: slot {slot} is already taken by agent "
                                 f"{owner[slot]}")
            owner[slot] = index
            columns["pos"][slot] = pos
            columns["alive"][slot] = True
            for name, value in stats.items():
                columns[name][slot] = value
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
        n, k = self.cfg.n_agents, self.cfg.n_entities
        alive = np.asarray(obs.alive)
        if not isinstance(actions, Actions):
            _check_action_layout(actions, alive.shape)  # raises, naming what was given
        move, style, target = (np.asarray(a) for a in (actions.move, actions.style, actions.target))
        _check_action_layout(Actions(move, style, target), alive.shape[:-1] + (n,))
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
        for (name, value, top, _), bad in zip(checks, flat[:-1], strict=True):
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


def _leaves_by_path(tree: Any) -> dict[str, Any]:
    """The leaves of a pytree keyed by their path (".agents.pos")."""
    leaves, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): leaf for path, leaf in leaves}


def _check_action_layout(actions: Any, shape: tuple[int, ...]) -> None:
    """Raises `ValueError` naming the field unless `actions` is an `Actions` whose move,
    style and target are integer arrays of `shape` (static: works while tracing)."""
    if not isinstance(actions, Actions):
        raise ValueError(f"actions must be an nmmo_jax.Actions of integer arrays {shape} "
                         f"(move, style, target), got {type(actions).__name__}")
    for name in ("move", "style", "target"):
        value = getattr(actions, name)
        got, dtype = getattr(value, "shape", None), getattr(value, "dtype", None)
        if got is None or dtype is None:
            raise ValueError(f"actions.{name} must be an integer array of shape {shape}, "
                             f"got {type(value).__name__}")
        if tuple(got) != shape or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(f"actions.{name} has shape {tuple(got)} and dtype {dtype}; "
                             f"expected shape {shape} and an integer dtype (int32)")


def _agent_bounds(params: Params) -> dict[str, tuple[int, int]]:
    """[low, high] of each stat `make_state` may set: what a live agent can have (its
    stats within their maxima, health at least 1) and its dtype can hold."""
    return {"health": (1, int(params.max_health)), "food": (0, int(params.max_food)),
            "water": (0, int(params.max_water)), "freeze": (0, INT16_MAX),
            "time_alive": (0, INT32_MAX), "damage": (0, INT16_MAX)}


def _whole_number(label: str, value: Any) -> int:
    """`value` as an int; raises `ValueError` naming `label` unless it is a whole number
    (a Python or NumPy int, not a bool or a float)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{label} must be a whole number, got {value!r}")
    try:
        return operator.index(value)
    except TypeError:
        raise ValueError(f"{label} must be a whole number, got {value!r}") from None


def _scenario_agent(index: int, spec: dict[str, Any], tiles: np.ndarray,
                    bounds: dict[str, tuple[int, int]], cfg: Config
                    ) -> tuple[int, tuple[int, int], dict[str, int]]:
    """One checked agent of `make_state`: (slot, (row, col), the stats it sets)."""
    where = f"agent {index}"
    unknown = set(spec) - {"pos", "slot", *bounds}
    if unknown:
        raise ValueError(f"{where}: unknown fields {sorted(unknown)}; known: pos, slot, "
                         f"{', '.join(bounds)}")
    if "pos" not in spec or np.shape(spec["pos"]) != (2,):
        raise ValueError(f"{where}: pos must be a (row, col) pair, got {spec.get('pos')!r}")
    slot = _whole_number(f"{where}: slot", spec.get("slot", index))
    if not 0 <= slot < cfg.n_agents:
        raise ValueError(f"{where}: slot {slot} not in [0, {cfg.n_agents})")
    row, col = (_whole_number(f"{where}: pos", x) for x in spec["pos"])
    if not (0 <= row < cfg.map_size and 0 <= col < cfg.map_size):
        raise ValueError(f"{where}: pos {(row, col)} is off the map")
    tile = int(tiles[row, col])
    if not PASSABLE[tile]:
        raise ValueError(f"{where}: pos {(row, col)} is {TILE_NAMES[tile]}, where no agent "
                         f"can stand")
    stats = {}
    for name, (low, high) in bounds.items():
        if name in spec:
            stats[name] = _whole_number(f"{where}: {name}", spec[name])
            if not low <= stats[name] <= high:
                raise ValueError(f"{where}: {name} must be in [{low}, {high}], "
                                 f"got {stats[name]}")
    return slot, (row, col), stats


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
