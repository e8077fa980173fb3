"""What the facades share: agent names, seeding, and action checks that name the agent."""

from __future__ import annotations

import re

import jax
import numpy as np

from nmmo_jax.config import Config
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Observation


def agent_name(slot: int) -> str:
    """The facade's name for agent slot `slot`: "agent_0", "agent_1", ..."""
    return f"agent_{slot}"


def make_env(env: Env | Config | None) -> Env:
    """`env` itself, or a new `Env` of the config `env` (None: the default config).

    Passing an existing `Env` shares its compiled `reset` / `step` with other users.
    """
    return env if isinstance(env, Env) else Env(env)


def seed_key(seed: int | None) -> jax.Array:
    """A PRNG key from `seed`, or from fresh OS entropy when `seed` is None."""
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % 2**31)
    return jax.random.key(seed)


def check_actions(env: Env, actions: Actions, obs: Observation, strict: bool) -> None:
    """`env.check_actions` (one realm or a batch), its errors naming the agent as the
    facades do ("agent_3", after "realm 1: " for a batch).

    Out-of-range values always raise. An in-range target the style cannot hit raises
    only when `strict`; otherwise it is left to the step, where it is no attack.
    """
    if not strict:
        obs = obs.replace(target_mask=np.ones(np.shape(obs.target_mask), bool))
    try:
        env.check_actions(actions, obs)
    except ValueError as error:
        message = re.sub(r"^((?:realm \d+: )?)agent (\d+):",
                         lambda m: f"{m[1]}{agent_name(int(m[2]))}:", str(error))
        raise ValueError(message) from None
