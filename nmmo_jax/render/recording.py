"""Recording on device: a policy played in one realm (or a batch) under one scan, kept
as a `Trajectory` of stacked states."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from nmmo_jax.config import CAUSE_NAMES, Config, Params
from nmmo_jax.env import Env
from nmmo_jax.game import count_visits
from nmmo_jax.policies import Policy
from nmmo_jax.rollout import Tick, rollout
from nmmo_jax.state import Info, State


@struct.dataclass
class Trajectory:
    """A recorded rollout of one realm (or, from `record_batch`, of R realms).

    Attributes:
      states: `State` stacked over ticks, leading axis T + 1 (tick 0 to T; [R, T + 1]
        for a batch). To keep memory at O(T * (N * K + H * W)) the per-tick visit
        counts are dropped: `states.visits` is an empty [T + 1, P, 0, 0] array.
      info: `Info` of each tick, leading axis T.
      visits: [P, H, W] int32, ticks each population spent on each tile over the
        recorded states (the first included), counted whether or not the realm's config
        counts visits; from a reset, the same counts as the final `State.visits` of a
        realm that does.
      params: the `Params` the realm played by (drawing scales health bars by their
        `max_health`).
      cfg: the realm's `Config` (static metadata, not an array).
    """

    states: State
    info: Info
    visits: jax.Array
    params: Params
    cfg: Config = struct.field(pytree_node=False)

    @property
    def ticks(self) -> int:
        """T, the number of ticks recorded (one less than the number of states)."""
        return self.info.cause.shape[-2]


def _without_visits(state: State) -> State:
    return state.replace(visits=jnp.zeros(state.visits.shape[:1] + (0, 0), jnp.int32))


def _visits(states: State, cfg: Config) -> jax.Array:
    """Each population's ticks on each tile over stacked states, [P, H, W] int32."""
    agents = jax.tree.map(lambda x: x.reshape((-1,) + x.shape[2:]), states.agents)  # [(T+1) N]
    side = cfg.map_size
    return count_visits(jnp.zeros((cfg.n_pops, side, side), jnp.int32), agents)


def _frame(tick: Tick) -> tuple[State, Info]:
    """What a recording keeps of a tick: the state after it (without visit counts) and
    its `Info`."""
    return _without_visits(tick.next_state), tick.info


def _play(env: Env, policy: Policy, key: jax.Array, params: Params, ticks: int,
          state: State) -> Trajectory:
    """Plays `policy` from `state` for `ticks` ticks under one scan."""
    start = (env.observe(state, params), state)
    _, (states, info) = rollout(env, policy, key, ticks, params, start,
                                        observe=_frame)
    first = _without_visits(state)
    states = jax.tree.map(lambda a, b: jnp.concatenate([a[None], b]), first, states)
    return Trajectory(states=states, info=info, visits=_visits(states, env.cfg), params=params,
                      cfg=env.cfg)


_play_jit = jax.jit(_play, static_argnames=("env", "policy", "ticks"))


def record(env: Env, policy: Policy, key: jax.Array, params: Params | None = None,
           ticks: int = 200, realm: State | None = None) -> Trajectory:
    """Plays `policy` in one realm for `ticks` ticks, on device.

    `realm` is the state to start from (e.g. from `env.make_state`); None resets a new
    realm from `key`. `params` None means `env.default_params`. The rollout is one
    jitted scan, compiled once per (env, policy, ticks) whichever way the realm came.
    """
    params = env.default_params if params is None else params
    reset_key, run_key = jax.random.split(key)
    if realm is None:
        _, realm = env.reset(reset_key, params)
    return _play_jit(env, policy, run_key, params, ticks, realm)


@functools.partial(jax.jit, static_argnames=("env", "policy", "ticks", "n_realms"))
def record_batch(env: Env, policy: Policy, key: jax.Array, params: Params | None = None,
                 ticks: int = 200, n_realms: int = 4) -> Trajectory:
    """`record` over `n_realms` new realms at once (vmapped); every array gains a leading
    realm axis R. Take one realm out with `pick`."""
    params = env.default_params if params is None else params

    def one(key: jax.Array) -> Trajectory:
        reset_key, run_key = jax.random.split(key)
        return _play(env, policy, run_key, params, ticks, env.reset(reset_key, params)[1])

    return jax.vmap(one)(jax.random.split(key, n_realms))


def pick(batch: Any, index: int) -> Any:
    """Realm `index` of a batched pytree (a `Trajectory` from `record_batch`, a vmapped
    `State`, ...): every array indexed on its leading axis."""
    return jax.tree.map(lambda x: x[index], batch)


def summary(trajectory: Trajectory) -> str:
    """A few lines: ticks, agents alive at the end, deaths by cause, mean lifetime."""
    info = jax.device_get(trajectory.info)
    cause = np.asarray(info.cause)
    deaths = int(np.sum(cause > 0))
    by_cause = ", ".join(f"{name} {int(np.sum(cause == i))}"
                         for i, name in enumerate(CAUSE_NAMES) if i > 0)
    alive = np.asarray(trajectory.states.agents.alive[-1])
    lines = [f"ticks {trajectory.ticks}, alive at the end {int(alive.sum())}/{alive.size}",
             f"deaths {deaths}: {by_cause}"]
    if deaths:
        lines.append(f"mean lifetime of the dead {np.sum(info.lifetime) / deaths:.1f} ticks")
    return "\n".join(lines)
