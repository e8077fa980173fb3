"""nmmo-jax: Neural MMO v1.0 as a pure, vectorised JAX environment.

    env, params = nmmo_jax.make("chaos", n_agents=64)
    obs, state = env.reset(jax.random.key(0), params)
"""

from typing import Any

from nmmo_jax import policies
from nmmo_jax.config import Config, Params, config, params
from nmmo_jax.env import Env
from nmmo_jax.rollout import rollout
from nmmo_jax.state import Actions, Agents, Info, Observation, State


def make(preset: str = "chaos", **overrides: Any) -> tuple[Env, Params]:
    """A ready environment and its rule numbers in one line, as gymnax's `make`.

    `preset` ("base", "law" or "chaos") and `overrides` (static fields such as
    `n_agents=64`, or rule numbers such as `melee_damage=5`) go to `config`, which names
    any unknown or impossible value in a `ValueError`.
    """
    env = Env(config(preset, **overrides))
    return env, env.default_params


__all__ = ["Actions", "Agents", "Config", "Env", "Info", "Observation", "Params", "State",
           "config", "make", "params", "policies", "rollout"]
__version__ = "0.1.0"
