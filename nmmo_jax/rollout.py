"""Rollouts: a policy played for T ticks in one realm or a batch of realms, in one scan.

`rollout` is the one loop of the project that plays `policy(key, obs) -> Actions` for a
number of ticks: `jax.lax.scan` over ticks, `jax.vmap` over realms. What it keeps of each
tick is the caller's choice (`observe`, a function of the `Tick`); it returns the final
observation and state beside the stacked outputs, so a rollout can be continued.

Keys are used the same way everywhere, so that a rollout is reproducible from its key:
without a `start`, the key splits into (reset key, run key) and the realms are reset from
the reset key (R realms: one key each from `jax.random.split(reset_key, R)`). The run key
splits into one key per tick; a tick's key splits into (act key, step key). In one realm
the policy gets the act key and `env.step` the step key; in R realms each is split into R
keys, one per realm (or passed whole to a policy that plays all realms at once).

    (obs, state), info = nmmo_jax.rollout(env, fighter, key, ticks=100, realms=8)
    info.lifetime.sum() / (info.cause > 0).sum()  # mean lifetime of the agents that died
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from nmmo_jax.config import Params
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Info, Observation, State


class Tick(NamedTuple):
    """One tick of a rollout as `observe` sees it; in a batch every leaf has a leading
    realm axis R."""

    obs: Observation  # what the policy saw
    state: State  # the realm before the tick
    act: Any  # what the policy returned: `Actions`, or (`Actions`, anything else)
    next_obs: Observation
    next_state: State
    reward: jax.Array  # [N] float32
    done: jax.Array  # [N] bool, True on the tick a slot's agent died
    info: Info


def _info(tick: Tick) -> Info:
    """The default of `rollout`'s `observe`: each tick's `Info`."""
    return tick.info


def _split(key: jax.Array, realms: int) -> jax.Array:
    """The default of `rollout`'s `realm_keys`: one key per realm."""
    return jax.random.split(key, realms)


@functools.partial(jax.jit, static_argnames=("env", "policy", "ticks", "realms", "observe",
                                             "vmap_policy", "realm_keys"))
def rollout(env: Env, policy: Callable[[jax.Array, Observation], Any], key: jax.Array,
            ticks: int, params: Params | None = None,
            start: tuple[Observation, State] | None = None, realms: int | None = None,
            observe: Callable[[Tick], Any] = _info, vmap_policy: bool = True,
            realm_keys: Callable[[jax.Array, int], jax.Array] = _split
            ) -> tuple[tuple[Observation, State], Any]:
    """Plays `policy` for `ticks` ticks; returns the final (obs, state) and the outputs of
    `observe` stacked over ticks (leading axis T; then R in a batch).

    `realms` None plays one realm; an int R plays R realms at once (vmapped). `start` is
    the (obs, state) to play from (leaves [R, ...] in a batch); None resets new realms
    from `key`. `params` None means `env.default_params`. `observe` maps each `Tick` to
    the pytree to keep (default: its `Info`). The policy maps one realm's observation
    (leaves [N, ...]) to `Actions`, or to (`Actions`, extra) to hand `observe` more of what
    it computed (log-probabilities, values) through `Tick.act`. In a batch it is vmapped
    over realms with a key each, unless `vmap_policy` is False: then it gets the whole
    batch (leaves [R, N, ...]) and the tick's act key. `realm_keys(key, R)` makes the R
    keys of one realm each (default `jax.random.split`). Jitted: compiled once per env,
    policy, observe and shape.
    """
    params = env.default_params if params is None else params
    if start is None:
        reset_key, key = jax.random.split(key)
        start = _reset(env, reset_key, params, realms, realm_keys)
    _check_batch(start[1], realms)
    step = env.step if realms is None else jax.vmap(env.step, (0, 0, 0, None))

    def act(key: jax.Array, obs: Observation) -> Any:
        if realms is None or not vmap_policy:
            return policy(key, obs)
        return jax.vmap(policy)(realm_keys(key, realms), obs)

    def per_realm(key: jax.Array) -> jax.Array:
        return key if realms is None else realm_keys(key, realms)

    def tick(carry: tuple[Observation, State], key: jax.Array) -> tuple[Any, Any]:
        obs, state = carry
        act_key, step_key = jax.random.split(key)
        out = act(act_key, obs)
        actions = out if isinstance(out, Actions) else out[0]
        next_obs, next_state, reward, done, info = step(per_realm(step_key), state, actions,
                                                        params)
        kept = observe(Tick(obs, state, out, next_obs, next_state, reward, done, info))
        return (next_obs, next_state), kept

    return jax.lax.scan(tick, start, jax.random.split(key, ticks))


def _reset(env: Env, key: jax.Array, params: Params, realms: int | None,
           realm_keys: Callable[[jax.Array, int], jax.Array]) -> tuple[Observation, State]:
    """New realms: one from `key`, or R from `realm_keys(key, R)`."""
    if realms is None:
        return env.reset(key, params)
    return jax.vmap(env.reset, (0, None))(realm_keys(key, realms), params)


def _check_batch(state: State, realms: int | None) -> None:
    """Raises `ValueError` unless `state` holds one realm (`realms` None) or R realms."""
    expected = () if realms is None else (realms,)
    if state.tick.shape != expected:
        held = "one realm" if state.tick.ndim == 0 else f"{state.tick.shape[0]} realms"
        wanted = "one realm (realms=None)" if realms is None else f"realms={realms}"
        raise ValueError(f"the start state holds {held} but the rollout plays {wanted}")
