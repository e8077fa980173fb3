"""The learning side of nmmo-jax: Flax policies, vmapped populations, a compiled PPO trainer,
checkpoints and evaluation. Uses only the public API of `nmmo_jax`."""
