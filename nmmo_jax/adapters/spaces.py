"""Gymnasium spaces of one agent's observation and action (gymnasium imported lazily,
so the facades work without it)."""

from __future__ import annotations

from typing import Any

import numpy as np

from nmmo_jax.config import N_FEATURES, N_MOVES, N_STYLES, N_TILE_TYPES, Config

# The `Observation` fields a facade hands each agent (`alive` is left out: an agent is
# handed observations exactly while it is live or on the step it dies).
AGENT_FIELDS = ("tiles", "counts", "own", "entities", "entity_mask", "target_mask", "move_mask",
                "population")
ACTION_FIELDS = ("move", "style", "target")


def _gymnasium_spaces() -> Any:
    try:
        from gymnasium import spaces
    except ImportError as error:
        raise ImportError('spaces need gymnasium: pip install "nmmo-jax[adapters]"') from error
    return spaces


def observation_space(cfg: Config) -> Any:
    """A `gymnasium.spaces.Dict` of one agent's observation (fields `AGENT_FIELDS`;
    meanings, shapes and dtypes as in `nmmo_jax.state.Observation` without the N axis)."""
    spaces = _gymnasium_spaces()
    v, k = cfg.view_size, cfg.n_entities
    return spaces.Dict({
        "tiles": spaces.Box(0, N_TILE_TYPES - 1, (v, v), np.int8),
        "counts": spaces.Box(0, np.iinfo(np.int8).max, (v, v), np.int8),
        "own": spaces.Box(-np.inf, np.inf, (N_FEATURES,), np.float32),
        "entities": spaces.Box(-np.inf, np.inf, (k, N_FEATURES), np.float32),
        "entity_mask": spaces.MultiBinary(k),
        "target_mask": spaces.MultiBinary((N_STYLES, k)),
        "move_mask": spaces.MultiBinary(N_MOVES),
        "population": spaces.Discrete(cfg.n_pops),
    })


def action_space(cfg: Config) -> Any:
    """A `gymnasium.spaces.Dict` of one agent's action: `move` Discrete(5), `style`
    Discrete(3), `target` Discrete(K) (see `nmmo_jax.state.Actions`)."""
    spaces = _gymnasium_spaces()
    return spaces.Dict({"move": spaces.Discrete(N_MOVES), "style": spaces.Discrete(N_STYLES),
                        "target": spaces.Discrete(cfg.n_entities)})


def action_mask_space(cfg: Config) -> Any:
    """A `gymnasium.spaces.Dict` of the `action_mask` entry of an observation: one int8
    0/1 array per action field (move [5], style [3], target [K]), the form
    `action_space(cfg).sample(mask=...)` takes."""
    spaces = _gymnasium_spaces()
    return spaces.Dict({"move": spaces.MultiBinary(N_MOVES),
                        "style": spaces.MultiBinary(N_STYLES),
                        "target": spaces.MultiBinary(cfg.n_entities)})
