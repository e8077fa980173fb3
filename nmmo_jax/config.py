"""Configuration: the static shape of a realm and the dynamic rule numbers.

`Config` fixes every array shape (map size, agent slots, populations, view, entity
slots), so changing it recompiles. `Params` holds every rule number of the game as
arrays, so it can be changed, vmapped or swept without recompiling. Both are checked
when built and raise `ValueError` with the offending field named.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

REWARD_MODES = {"death": 0, "alive": 1}

# Tile ids, part of the observation (SPEC §1).
LAVA, WATER, GRASS, SCRUB, FOREST, STONE, ORE = range(7)
N_TILE_TYPES = 7
TILE_NAMES = ("lava", "water", "grass", "scrub", "forest", "stone", "ore")
PASSABLE = (True, False, True, True, True, False, False)

# Attack styles, in the order of the `style` action and of `target_mask`'s middle axis.
MELEE, RANGE, MAGE = range(3)
STYLE_NAMES = ("melee", "range", "mage")
N_STYLES = 3

# Moves in (row, col): stay, east, south, west, north (SPEC §5).
MOVE_DELTAS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0))
N_MOVES = 5

# Why an agent died, as reported in `info.cause`.
ALIVE_OR_EMPTY, DIED_LAVA, DIED_STARVATION, DIED_COMBAT = range(4)
CAUSE_NAMES = ("none", "lava", "starvation", "combat")

N_FEATURES = 11


@struct.dataclass
class Params:
    """Every rule number of the game; a pytree of 0-d arrays (vmappable, no retrace).

    Field names follow SPEC.md. Build with `params(...)` or `Config.params`, which check
    the values; the constructor itself does not.
    """

    max_health: jnp.ndarray
    max_food: jnp.ndarray
    max_water: jnp.ndarray
    forage_food: jnp.ndarray  # food gained by harvesting a forest tile
    drink_water: jnp.ndarray  # water gained each tick next to water
    forest_capacity: jnp.ndarray
    regrow_prob: jnp.ndarray  # per depleted tile per tick
    immunity_ticks: jnp.ndarray
    melee_range: jnp.ndarray
    range_range: jnp.ndarray
    mage_range: jnp.ndarray
    melee_damage: jnp.ndarray
    range_damage: jnp.ndarray
    mage_damage: jnp.ndarray
    mage_freeze: jnp.ndarray  # ticks a mage hit freezes its target
    vampirism: jnp.ndarray  # food and water drained per point of damage
    spawn_per_tick: jnp.ndarray  # agents spawned per tick while slots are free
    reward_mode: jnp.ndarray  # 0: "death" (-1 on death, else 0); 1: "alive" (+1 per tick)
    water_threshold: jnp.ndarray  # terrain: v < this -> water
    grass_threshold: jnp.ndarray  # v < this -> grass
    forest_threshold: jnp.ndarray  # v < this -> forest, else stone

    @property
    def ranges(self) -> jnp.ndarray:
        """Chebyshev range of each style, [3] int32 (melee, range, mage)."""
        return jnp.stack([self.melee_range, self.range_range, self.mage_range])

    @property
    def damages(self) -> jnp.ndarray:
        """Damage of each style, [3] int32 (melee, range, mage)."""
        return jnp.stack([self.melee_damage, self.range_damage, self.mage_damage])


_INT_PARAMS = {
    "max_health", "max_food", "max_water", "forage_food", "drink_water",
    "forest_capacity", "immunity_ticks", "melee_range", "range_range", "mage_range",
    "melee_damage", "range_damage", "mage_damage", "mage_freeze", "spawn_per_tick",
    "reward_mode",
}
PARAM_FIELDS = tuple(f.name for f in dataclasses.fields(Params))

_BASE_PARAMS: dict[str, Any] = dict(
    max_health=10, max_food=32, max_water=32, forage_food=5, drink_water=5,
    forest_capacity=1, regrow_prob=0.025, immunity_ticks=15,
    melee_range=1, range_range=4, mage_range=4,
    melee_damage=10, range_damage=2, mage_damage=1, mage_freeze=3, vampirism=0.0,
    spawn_per_tick=1, reward_mode="death",
    water_threshold=0.3, grass_threshold=0.57, forest_threshold=0.715,
)

PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "chaos": dict(range_range=2, mage_range=3, vampirism=1.0),
    "law": dict(melee_damage=0, range_damage=0, mage_damage=0, mage_freeze=0),
}


def params(**values: Any) -> Params:
    """Builds checked `Params` from the base numbers overridden by `values`.

    `reward_mode` may be given as "death" or "alive". Raises `ValueError` for an unknown
    field or an impossible value (negative stats, probabilities outside [0, 1], ...).
    """
    unknown = set(values) - set(PARAM_FIELDS)
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)}; known: {PARAM_FIELDS}")
    merged = {**_BASE_PARAMS, **values}
    mode = merged["reward_mode"]
    if isinstance(mode, str):
        if mode not in REWARD_MODES:
            raise ValueError(f"reward_mode must be one of {list(REWARD_MODES)}, got {mode!r}")
        merged["reward_mode"] = REWARD_MODES[mode]
    _check_params(merged)
    return Params(**{
        k: jnp.asarray(v, jnp.int32 if k in _INT_PARAMS else jnp.float32)
        for k, v in merged.items()
    })


def _check_params(p: dict[str, Any]) -> None:
    for name in sorted(_INT_PARAMS):
        if not float(p[name]).is_integer():
            raise ValueError(f"{name} must be a whole number, got {p[name]}")
    for name in ("max_health", "max_food", "max_water", "forest_capacity"):
        if p[name] < 1:
            raise ValueError(f"{name} must be >= 1, got {p[name]}")
    if max(p["max_health"], p["max_food"], p["max_water"]) > 32767:
        raise ValueError("max_health, max_food and max_water must fit in int16 (<= 32767)")
    for name in ("forage_food", "drink_water", "immunity_ticks", "melee_damage",
                 "range_damage", "mage_damage", "mage_freeze", "spawn_per_tick"):
        if p[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {p[name]}")
    for name in ("melee_range", "range_range", "mage_range"):
        if p[name] < 0:
            raise ValueError(f"{name} must be >= 0, got {p[name]}")
    for name in ("regrow_prob",):
        if not 0.0 <= p[name] <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {p[name]}")
    if not p["vampirism"] >= 0:  # also rejects NaN
        raise ValueError(f"vampirism must be >= 0, got {p['vampirism']}")
    if p["reward_mode"] not in REWARD_MODES.values():
        raise ValueError(f"reward_mode must be 0 ('death') or 1 ('alive'), got {p['reward_mode']}")
    if not 0.0 <= p["water_threshold"] <= p["grass_threshold"] <= p["forest_threshold"] <= 1.0:
        raise ValueError("terrain thresholds must satisfy 0 <= water <= grass <= forest <= 1")


@dataclasses.dataclass(frozen=True)
class Config:
    """Static realm shape plus the default rule numbers.

    Attributes:
      map_size: side of the square map in tiles (80 in the original).
      lava_border: width of the lava ring; the grass spawn ring lies just inside it.
      n_agents: agent slots per realm (NENT); fixed array size.
      n_pops: populations (NPOP); slot i belongs to population i % n_pops.
      view_radius: the observation window is (2 r + 1)^2 tiles around the agent.
      n_entities: K, the entity slots of an observation (slot 0 is the observer).
      max_stack: agents per tile that the neighbour index can tell apart; more agents
        on one tile are still counted in `obs.counts` but only the first `max_stack`
        (lowest slots) can appear in entity lists.
      terrain_octaves: octaves of the ridged noise used by the map generator.
      preset: the name of the preset the defaults came from.
      params: the default `Params` (the dynamic rule numbers).
    """

    map_size: int = 80
    lava_border: int = 9
    n_agents: int = 128
    n_pops: int = 8
    view_radius: int = 7
    n_entities: int = 16
    max_stack: int = 4
    terrain_octaves: int = 8
    preset: str = "chaos"
    params: Params = dataclasses.field(
        default_factory=lambda: params(**PRESETS["chaos"]), compare=False)

    def __post_init__(self) -> None:
        for name in ("map_size", "n_agents", "n_pops", "n_entities", "max_stack",
                     "terrain_octaves"):
            value = _whole(self, name)
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lava_border", "view_radius"):
            value = _whole(self, name)
            if value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if self.n_agents % self.n_pops:
            raise ValueError(
                f"n_agents ({self.n_agents}) must be divisible by n_pops ({self.n_pops})")
        if self.interior < 1:
            raise ValueError(
                f"map_size ({self.map_size}) leaves no interior inside a lava border of "
                f"{self.lava_border} and the spawn ring; need map_size >= 2*lava_border + 3")
        if 2 * self.view_radius + 1 > self.map_size:
            raise ValueError(
                f"view window ({2 * self.view_radius + 1}) is larger than the map ({self.map_size})")
        if self.n_entities > self.view_tiles * self.max_stack:
            raise ValueError(
                f"n_entities ({self.n_entities}) exceeds what a view can hold "
                f"({self.view_tiles} tiles x max_stack {self.max_stack})")
        if self.n_agents >= 2**31 - 1:
            raise ValueError("n_agents too large")

    @property
    def view_size(self) -> int:
        """Side of the observation window, 2 * view_radius + 1."""
        return 2 * self.view_radius + 1

    @property
    def view_tiles(self) -> int:
        return self.view_size * self.view_size

    @property
    def interior(self) -> int:
        """Side of the generated interior inside the spawn ring."""
        return self.map_size - 2 * self.lava_border - 2

    @property
    def pop_size(self) -> int:
        return self.n_agents // self.n_pops

    def replace(self, **changes: Any) -> "Config":
        return dataclasses.replace(self, **changes)


def _whole(cfg: Config, name: str) -> int:
    """The static field `name` as a Python int (numpy ints accepted); raises otherwise."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    object.__setattr__(cfg, name, int(value))
    return int(value)


STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name not in ("params", "preset"))


def config(preset: str = "chaos", **overrides: Any) -> Config:
    """Builds a checked `Config` from a preset ("base", "law" or "chaos").

    Keyword overrides may name static fields (`n_agents=64`) or rule numbers
    (`melee_damage=5`); unknown names raise `ValueError`.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    static = {k: v for k, v in overrides.items() if k in STATIC_FIELDS}
    dynamic = {k: v for k, v in overrides.items() if k in PARAM_FIELDS}
    unknown = set(overrides) - set(static) - set(dynamic)
    if unknown:
        raise ValueError(
            f"unknown config fields {sorted(unknown)}; static: {STATIC_FIELDS}; "
            f"params: {PARAM_FIELDS}")
    return Config(preset=preset, params=params(**{**PRESETS[preset], **dynamic}), **static)
