"""nmmo-jax: Neural MMO v1.0 as a pure, vectorised JAX environment."""

from nmmo_jax.config import Config, Params, config, params
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Agents, Info, Observation, State

__all__ = ["Actions", "Agents", "Config", "Env", "Info", "Observation", "Params", "State",
           "config", "params"]
__version__ = "0.1.0"
