"""Numpy facades over `nmmo_jax.Env` for code that does not speak JAX.

- `ParallelEnv`: one realm behind the PettingZoo Parallel API (duck typed: PettingZoo
  itself is not needed), with a dict per agent in and out.
- `BatchEnv`: R realms stepped together, every slot of every realm at once, as plain
  numpy arrays [R, N, ...] (for batched learners in PyTorch or NumPy).

Both run the jitted `Env.reset` / `Env.step` and check the actions handed in with
`Env.check_actions`, raising `ValueError` that names the agent. Gymnasium spaces
(`ParallelEnv.observation_space` / `action_space`) need the optional extra:
`pip install "nmmo-jax[adapters]"`; everything else works without it.
"""

from nmmo_jax.adapters.batch import BatchEnv
from nmmo_jax.adapters.parallel import ParallelEnv, agent_name

__all__ = ["BatchEnv", "ParallelEnv", "agent_name"]
