"""Numpy facades over `nmmo_jax.Env` for code that does not speak JAX.

- `ParallelEnv`: one realm behind the PettingZoo Parallel API (a `pettingzoo.ParallelEnv`
  when PettingZoo is installed, duck typed when not), with a dict per agent in and out,
  in the original's persistent world or in episodes like Neural MMO 2's.
- `BatchEnv`: R realms stepped together, every slot of every realm at once, as plain
  numpy arrays [R, N, ...] (for batched learners in PyTorch or NumPy).

Both run the jitted `Env.reset` / `Env.step` and check the actions handed in with
`Env.check_actions`, raising `ValueError` that names the agent for a value out of range;
a target its style cannot hit is no attack, as inside jit, or an error with
`strict=True`. Gymnasium spaces (`ParallelEnv.observation_space` / `action_space`) need
the optional extra: `pip install "nmmo-jax[adapters]"`; everything else works without
it. Neither imports matplotlib until `ParallelEnv.render` is called.
"""

from nmmo_jax.adapters.batch import BatchEnv
from nmmo_jax.adapters.parallel import ParallelEnv, agent_name

__all__ = ["BatchEnv", "ParallelEnv", "agent_name"]
