"""`python -m nmmo_jax.render`: the command line of `nmmo_jax.render.command`."""

from nmmo_jax.render.command import main

main(prog="python -m nmmo_jax.render")
