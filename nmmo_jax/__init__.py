"""nmmo-jax: Neural MMO v1.0 as a pure, vectorised JAX environment.

    env, params = nmmo_jax.make("chaos", n_agents=64)
    obs, state = env.reset(jax.random.key(0), params)
"""

from typing import Any

from nmmo_jax import policies
from nmmo_jax.config import Config, Params, config, params, split_overrides
from nmmo_jax.env import Env
from nmmo_jax.rollout import rollout
from nmmo_jax.state import Actions, Agents, Info, Observation, State


def make(preset: str = "chaos", **overrides: Any) -> tuple[Env, Params]:
    """A ready environment and its rule numbers in one line, as gymnax's `make`.

    `preset` is "base", "law" or "chaos"; `overrides` may name static fields (such as
    `n_agents=64`, for `config`) and rule numbers (such as `melee_damage=5`, for
    `params`). Raises `ValueError` naming any unknown name or impossible value, and when
    the damages do not fit the agent count (`Env.check_params`).
    """
    static, rules = split_overrides(overrides)
    env = Env(config(preset, **static))
    rule_numbers = params(preset, **rules)
    env.check_params(rule_numbers)
    return env, rule_numbers


__all__ = ["Actions", "Agents", "Config", "Env", "Info", "Observation", "Params", "State",
           "config", "make", "params", "policies", "rollout"]
__version__ = "0.1.0"
