"""nmmo-jax: Neural MMO v1.0 as a pure, vectorised JAX environment."""

from nmmo_jax.config import Config, Params, config, params
from nmmo_jax.env import Env
from nmmo_jax.state import Actions, Agents, Info, Observation, State
from nmmo_jax import policies  # noqa: E402  (needs the names above)

__all__ = ["Actions", "Agents", "Config", "Env", "Info", "Observation", "Params", "State",
           "config", "params", "policies"]
__version__ = "0.1.0"
