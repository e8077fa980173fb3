"""Shared fixtures: a small realm compiled once per test session."""

import jax
import pytest

import nmmo_jax

SMALL = dict(map_size=32, lava_border=3, n_agents=16, n_pops=4, view_radius=7,
             n_entities=8, count_visits=True)


@pytest.fixture(scope="session")
def small_cfg() -> nmmo_jax.Config:
    """Chaos rules on a 32 x 32 map with 16 agent slots in 4 populations, counting
    visits."""
    return nmmo_jax.config("chaos", **SMALL)


@pytest.fixture(scope="session")
def small_env(small_cfg) -> nmmo_jax.Env:
    return nmmo_jax.Env(small_cfg)


@pytest.fixture(scope="session")
def key() -> jax.Array:
    return jax.random.key(0)
