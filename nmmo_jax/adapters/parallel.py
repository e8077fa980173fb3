"""One realm behind the PettingZoo Parallel API, for agents written against numpy."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nmmo_jax.adapters import spaces
from nmmo_jax.adapters.common import agent_name, check_actions, make_env, seed_key
from nmmo_jax.config import CAUSE_NAMES, N_STYLES, Config, Params
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Observation, State

try:
    from pettingzoo.utils.env import ParallelEnv as _PettingZooParallelEnv
except ImportError:  # pettingzoo is optional: the same API, duck typed
    _PettingZooParallelEnv = object

__all__ = ["MASK", "ParallelEnv", "agent_name"]

MASK = "action_mask"  # the observation entry that `action_space(...).sample(mask=...)` takes


class ParallelEnv(_PettingZooParallelEnv):
    """A Neural MMO realm as a PettingZoo `ParallelEnv` (a subclass of PettingZoo's when
    it is installed, the same API by duck typing when not).

    Agents are named after their slots: `possible_agents` is "agent_0" ...
    "agent_{N-1}" and `agents` the names of the live ones. `reset` returns
    `(observations, infos)` and `step(actions)` returns `(observations, rewards,
    terminations, truncations, infos)`, dicts keyed by name. An observation is a dict of
    numpy arrays, the agent's row of `nmmo_jax.state.Observation` (fields
    `spaces.AGENT_FIELDS`: tiles [V, V], counts [V, V], own [F], entities [K, F],
    entity_mask [K], target_mask [3, K], move_mask [5], population []), plus
    `action_mask` (below). An action is a dict `{"move", "style", "target"}` of ints or
    a tuple in that order (see `nmmo_jax.state.Actions`); a live agent without one does
    nothing (stay, target 0), and actions for names not in `agents` are ignored. Rewards
    follow the params' `reward_mode`.

    Actions: a value outside its field's range (not in `action_space`) raises
    `ValueError` naming the agent. A target that the chosen style cannot hit (an empty
    slot, or out of the style's reach) is no attack, as inside jit, so every sample of
    `action_space(agent)` is accepted. With `strict=True` it raises `ValueError` too.

    Action mask: `observation[MASK]` is a dict of int8 0/1 arrays, move [5], style [3]
    and target [K], the form gymnasium's `Dict.sample(mask=...)` takes (its mask is one
    array per field, so it cannot tie the target to the style drawn). A move is marked
    when it changes the agent's tile (`move_mask`; "stay" always); every style is
    marked; a target is marked when every style can hit it, so a masked sample
    is a legal action whatever style it draws, even with `strict=True`. Which targets
    each style can hit is `target_mask` [3, K]; slot 0, the no-op, is always marked.

    Two modes:

    - Persistent (default), as in the original game: the realm has no episodes, only
      lives for the agents. Reset spawns `spawn_per_tick` agents and up to that many
      spawn each tick into free slots. An agent that dies is terminated
      (`terminations[name]` True, with its `lifetime` and death `cause` in
      `infos[name]`) and leaves `agents`. A newborn in a slot that was free before the
      tick joins `agents` under the slot's name at once, so a name comes back after its
      agent died: a new life, a new episode. A newborn in the slot of an agent that died
      the same tick joins `agents` one step later (that step it stays and does not
      attack), so each step reports one life per name. This reuse of names is what
      PettingZoo's `parallel_api_test` rejects ("agent cannot be revived once dead");
      everything else in it is followed. Without `max_ticks` the realm never ends and
      `agents` is empty only while no agent lives.
    - Episodic (`episodic=True`), like Neural MMO 2: reset spawns an agent into every
      slot, nobody spawns after, and the episode ends when every agent is dead or at
      `max_ticks` (the horizon). Names never come back, and `parallel_api_test` passes.

    With `max_ticks`, every agent that acted and lives on is truncated when the realm
    reaches that tick, and `agents` empties. The observation handed with a termination
    is the slot's after the tick; do not bootstrap from it. Once the episode is over,
    `step` raises until `reset`.

    `env` is an `nmmo_jax.Env` (sharing its compiled functions), a `Config`, or None
    for the default config; `params` defaults to `env.default_params` (episodic mode
    overrides its `spawn_per_tick`), and params that do not fit the config raise
    `ValueError` (`Env.check_params`).
    """

    metadata = {"name": "nmmo_jax_v0", "render_modes": ["rgb_array"], "is_parallelizable": True}
    render_mode = "rgb_array"

    def __init__(self, env: Env | Config | None = None, params: Params | None = None,
                 max_ticks: int | None = None, strict: bool = False, episodic: bool = False):
        if max_ticks is not None and max_ticks < 1:
            raise ValueError(f"max_ticks must be >= 1 or None, got {max_ticks}")
        self.env = make_env(env)
        self.params = self.env.default_params if params is None else params
        self.env.check_params(self.params)
        self.max_ticks = max_ticks
        self.strict = strict
        self.episodic = episodic
        self.possible_agents = [agent_name(i) for i in range(self.env.n_agents)]
        self.agents: list[str] = []
        self._slots = {name: i for i, name in enumerate(self.possible_agents)}
        self._key: jax.Array | None = None
        self._state: State | None = None
        self._previous: State | None = None
        self._obs: Observation | None = None
        self._over = False
        self._painter: Any = None
        self._spaces: tuple[Any, Any] | None = None

    @property
    def num_agents(self) -> int:
        return len(self.agents)

    @property
    def max_num_agents(self) -> int:
        return len(self.possible_agents)

    @property
    def unwrapped(self) -> ParallelEnv:
        return self

    @property
    def realm(self) -> State:
        """The realm's current `nmmo_jax.State` (JAX arrays), e.g. for `nmmo_jax.render`."""
        if self._state is None:
            raise RuntimeError("call reset() first")
        return self._state

    def observation_space(self, agent: str) -> Any:
        """The `gymnasium.spaces.Dict` of `agent`'s observation, `action_mask` included
        (the same object for every agent and call); needs gymnasium."""
        self._slot(agent)
        return self._gym_spaces()[0]

    def action_space(self, agent: str) -> Any:
        """The `gymnasium.spaces.Dict` of `agent`'s action (the same object for every
        agent and call); needs gymnasium."""
        self._slot(agent)
        return self._gym_spaces()[1]

    def reset(self, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
        """Starts a new realm: a new map, and `spawn_per_tick` agents (persistent) or an
        agent in every slot (episodic).

        `seed` seeds the realm and every later step; None continues the previous
        random stream (fresh entropy on the first reset). `options` is accepted for the
        API and unused.
        """
        if seed is not None or self._key is None:
            self._key = seed_key(seed)
        self._key, key = jax.random.split(self._key)
        obs, self._state = self.env.reset(key, self._rules(spawns=self.env.n_agents))
        self._previous, self._over = None, False
        self._obs = jax.tree.map(np.array, obs)
        self.agents = [self.possible_agents[i] for i in np.flatnonzero(self._obs.alive)]
        return self._observations(self.agents), {name: {} for name in self.agents}

    def step(self, actions: Mapping[str, Any]) -> tuple[
            dict[str, dict[str, Any]], dict[str, float], dict[str, bool],
            dict[str, bool], dict[str, dict[str, Any]]]:
        """Advances the realm one tick with the live agents' `actions` (see the class).

        The returned dicts hold every agent that acted this step or joined `agents` at
        its end. Raises `ValueError` naming the agent for an unknown name or a malformed
        action (and, with `strict`, a target its style cannot hit); the realm does not
        advance then.
        """
        if self._state is None or self._over:
            raise RuntimeError("call reset() first" if self._state is None
                               else "the episode is over; call reset()")
        batch = self._actions(actions)
        check_actions(self.env, batch, self._obs, self.strict)
        self._key, key = jax.random.split(self._key)
        obs, state, reward, done, info = self.env.step(key, self._state, batch,
                                                        self._rules(spawns=0))
        self._previous, self._state = self._state, state
        self._obs, reward, done, info, tick = jax.tree.map(
            np.array, (obs, reward, done, info, state.tick))

        acted = np.zeros(self.env.n_agents, bool)
        acted[[self._slots[name] for name in self.agents]] = True
        died = acted & done
        truncate = self.max_ticks is not None and int(tick) >= self.max_ticks
        live = self._obs.alive & ~died & ~truncate  # newborns of the last tick never show
        self._over = truncate or (self.episodic and not live.any())
        present = np.flatnonzero(acted | live)
        names = [self.possible_agents[i] for i in present]
        self.agents = [self.possible_agents[i] for i in np.flatnonzero(live)]

        terminations = {name: bool(died[i]) for name, i in zip(names, present, strict=True)}
        truncations = {name: truncate and not died[i]
                       for name, i in zip(names, present, strict=True)}
        rewards = {name: float(reward[i]) for name, i in zip(names, present, strict=True)}
        infos = {name: ({"lifetime": int(info.lifetime[i]), "cause": CAUSE_NAMES[info.cause[i]]}
                        if died[i] else {}) for name, i in zip(names, present, strict=True)}
        return self._observations(names), rewards, terminations, truncations, infos

    def render(self) -> np.ndarray:
        """The realm as an [h, w, 3] uint8 image (`nmmo_jax.render.Painter`: tiles,
        agents by population with health bars, last tick's attacks). The painter, and
        with it matplotlib, is imported on the first call."""
        from nmmo_jax.render import Painter

        if self._painter is None:
            self._painter = Painter(self.env.cfg, params=self.params)
        return self._painter.draw(self.realm, self._previous).image()

    def close(self) -> None:
        """Drops the realm and the drawing figure; `reset` starts again."""
        self._state = self._previous = self._obs = self._painter = None
        self.agents = []

    def _rules(self, spawns: int) -> Params:
        """The rule numbers of a reset or a step: `params`, whose `spawn_per_tick` is
        `spawns` in episodic mode (every slot at reset, none on a step)."""
        if not self.episodic:
            return self.params
        return self.params.replace(spawn_per_tick=jnp.asarray(spawns, jnp.int32))

    def _slot(self, agent: str) -> int:
        try:
            return self._slots[agent]
        except (KeyError, TypeError):
            raise ValueError(f"unknown agent {agent!r}; agents are named "
                             f"agent_0 ... agent_{self.env.n_agents - 1}") from None

    def _gym_spaces(self) -> tuple[Any, Any]:
        if self._spaces is None:
            observation = spaces.observation_space(self.env.cfg)
            observation = type(observation)({**observation.spaces,
                                             MASK: spaces.action_mask_space(self.env.cfg)})
            self._spaces = (observation, spaces.action_space(self.env.cfg))
        return self._spaces

    def _observations(self, names: list[str]) -> dict[str, dict[str, Any]]:
        """Each named agent's observation: its row of every `AGENT_FIELDS` field and
        its action mask."""
        n = self.env.n_agents
        masks = {"move": self._obs.move_mask.astype(np.int8),
                 "style": np.ones((n, N_STYLES), np.int8),
                 "target": np.all(self._obs.target_mask, axis=1).astype(np.int8)}  # [N, K]
        observations = {}
        for name in names:
            slot = self._slots[name]
            row = {field: getattr(self._obs, field)[slot] for field in spaces.AGENT_FIELDS}
            row[MASK] = {field: mask[slot] for field, mask in masks.items()}
            observations[name] = row
        return observations

    def _actions(self, actions: Mapping[str, Any]) -> Actions:
        """The per-agent `actions` as one `Actions` of int32 [N] arrays: the no-op
        (stay, target 0) for live agents without an action and for every slot not in
        `agents`, whose actions (e.g. for an agent that just died) are ignored."""
        if not isinstance(actions, Mapping):
            raise ValueError(f"actions must be a dict from agent name to action, "
                             f"got {type(actions).__name__}")
        columns = np.zeros((len(spaces.ACTION_FIELDS), self.env.n_agents), np.int32)
        live = set(self.agents)
        for name, action in actions.items():
            slot = self._slot(name)
            if name in live:
                columns[:, slot] = _parse_action(name, action)
        return Actions(*columns)


def _parse_action(name: str, action: Any) -> tuple[int, int, int]:
    """(move, style, target) of one agent's action: a dict with exactly those keys or a
    sequence of three integers."""
    if isinstance(action, Mapping):
        if set(action) != set(spaces.ACTION_FIELDS):
            raise ValueError(f"{name}: an action dict needs exactly the keys "
                             f"{list(spaces.ACTION_FIELDS)}, got {sorted(map(str, action))}")
        values = [action[field] for field in spaces.ACTION_FIELDS]
    else:
        values = list(np.ravel(np.asarray(action, dtype=object)))
        if len(values) != len(spaces.ACTION_FIELDS):
            raise ValueError(f"{name}: an action is a dict or a (move, style, target) "
                             f"sequence, got {action!r}")
    parsed = []
    for field, value in zip(spaces.ACTION_FIELDS, values, strict=True):
        try:
            parsed.append(operator.index(value))
        except TypeError:
            raise ValueError(f"{name}: {field} must be an integer, got {value!r}") from None
    # Values beyond int32 are out of range anyway; clipping keeps them so for the check.
    bounds = np.iinfo(np.int32)
    return tuple(min(max(value, bounds.min), bounds.max) for value in parsed)
