"""Configuration: the static shape of a realm and the dynamic rule numbers.

`Config` fixes every array shape (map size, agent slots, populations, view, entity
slots), so changing it recompiles; it holds no rule number. `Params` holds every rule
number of the game as arrays, so it can be changed, vmapped or swept without
recompiling. A preset ("base", "law", "chaos") names a set of rule numbers:
`params(preset, ...)` builds them, and a `Config` keeps the preset's name so that an
`Env` knows its default params, as gymnax's `env.default_params`. Both are checked when
built and raise `ValueError` with the offending field named; `check_hits_fit` checks
the one rule that depends on a shape, where a config and params meet (`nmmo_jax.make`,
`Env.check_params`).
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

import jax
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


class Feature(enum.IntEnum):
    """Columns of an entity's features in `Observation.own` and `.entities` (SPEC §6)."""

    TIME_ALIVE = 0  # (time_alive - TIME_ALIVE_CENTRE) / TIME_ALIVE_SCALE
    HEALTH = 1  # (health - max/2) / max, likewise FOOD and WATER
    FOOD = 2
    WATER = 3
    ROW = 4  # (row - map_size/2) / map_size, likewise COL
    COL = 5
    ROW_OFFSET = 6  # (row - observer's row) / view_radius, likewise COL_OFFSET
    COL_OFFSET = 7
    DAMAGE = 8  # health damage taken last tick / max_health
    SAME_POP = 9  # +0.5 in the observer's population, -0.5 otherwise
    FREEZE = 10  # freeze / mage_freeze (freeze itself when mage_freeze is 0)


N_FEATURES = len(Feature)
# Time alive is centred like the other stats, against a scale of 100 ticks.
TIME_ALIVE_SCALE = 100.0
TIME_ALIVE_CENTRE = TIME_ALIVE_SCALE / 2


@struct.dataclass
class Params:
    """Every rule number of the game; a pytree of 0-d arrays (vmappable, no retrace).

    Field names follow SPEC.md. Build with `params(...)`, `nmmo_jax.make` or
    `Env.default_params`, which check the values; the constructor itself does not.
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
    melee_damage=0, range_damage=0, mage_damage=0, mage_freeze=3, vampirism=0.0,
    spawn_per_tick=1, reward_mode="death",
    water_threshold=0.3, grass_threshold=0.57, forest_threshold=0.715,
)

# The original's experiments (SPEC §5): "base" is the foraging-only game (ranges 1/4/4,
# no damage), "law" the same with no freeze either, "chaos" full combat with vampirism.
PRESETS: dict[str, dict[str, Any]] = {
    "base": {},
    "chaos": dict(range_range=2, mage_range=3, melee_damage=10, range_damage=2,
                  mage_damage=1, vampirism=1.0),
    "law": dict(mage_freeze=0),
}


def params(preset: str = "base", **values: Any) -> Params:
    """Builds checked `Params`: the rule numbers of `preset` ("base", "law" or "chaos";
    "base" is the base numbers themselves) overridden by `values`.

    `reward_mode` may be given as "death" or "alive". Raises `TypeError` for a value that
    is not a real number and `ValueError` for an unknown preset or field or an impossible
    value (negative stats, probabilities outside [0, 1], a number its array cannot hold,
    ...); both name the field.
    """
    _check_preset(preset)
    unknown = set(values) - set(PARAM_FIELDS)
    if unknown:
        raise ValueError(f"unknown params {sorted(unknown)}; known: {PARAM_FIELDS}")
    merged = {**_BASE_PARAMS, **PRESETS[preset], **values}
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


def _check_preset(preset: Any) -> None:
    """Raises `ValueError` unless `preset` names a preset."""
    if not isinstance(preset, str) or preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")


INT8_MAX, INT16_MAX, INT32_MAX = 2**7 - 1, 2**15 - 1, 2**31 - 1
# [low, high] of the whole-number rules that are not plain int32 counts: the agents'
# stats (and what fills or hits them) are int16 and forest capacity is int8.
_INT_BOUNDS: dict[str, tuple[int, int]] = {
    "max_health": (1, INT16_MAX), "max_food": (1, INT16_MAX), "max_water": (1, INT16_MAX),
    "forage_food": (0, INT16_MAX), "drink_water": (0, INT16_MAX),
    "forest_capacity": (1, INT8_MAX), "mage_freeze": (0, INT16_MAX),
    "melee_damage": (0, INT16_MAX), "range_damage": (0, INT16_MAX),
    "mage_damage": (0, INT16_MAX), "reward_mode": (0, 1),
}


def _real(name: str, value: Any) -> float:
    """`value` as a float; raises `TypeError` naming the field unless it is a real number
    (a Python or NumPy number or a 0-d numeric array; not a bool, string, None or list)."""
    number = isinstance(value, (int, float, np.integer, np.floating))
    array = (getattr(value, "shape", None) == ()
             and np.issubdtype(getattr(value, "dtype", np.bool_), np.number))
    if isinstance(value, bool) or not (number or array):
        raise TypeError(f"{name} must be a real number, got {value!r} ({type(value).__name__})")
    return float(value)


def _check_params(p: dict[str, Any]) -> None:
    """Raises naming the first field whose value is not a number, not whole where its
    array is int32, or outside what the game and the field's dtype can hold."""
    values = {name: _real(name, p[name]) for name in PARAM_FIELDS}
    for name in sorted(_INT_PARAMS):
        low, high = _INT_BOUNDS.get(name, (0, INT32_MAX))
        if not values[name].is_integer():
            raise ValueError(f"{name} must be a whole number, got {p[name]}")
        if not low <= values[name] <= high:
            raise ValueError(f"{name} must be in [{low}, {high}], got {p[name]}")
    if not 0.0 <= values["regrow_prob"] <= 1.0:
        raise ValueError(f"regrow_prob must be in [0, 1], got {p['regrow_prob']}")
    if not 0.0 <= values["vampirism"] <= INT16_MAX:  # also rejects NaN
        raise ValueError(f"vampirism must be in [0, {INT16_MAX}], got {p['vampirism']}")
    drain = values["vampirism"] * max(values[f"{s}_damage"] for s in STYLE_NAMES)
    if drain > INT16_MAX:
        raise ValueError(f"vampirism x the largest damage must be <= {INT16_MAX} (what one "
                         f"hit drains must fit an int16 stat), got {drain}")
    thresholds = [values[f"{t}_threshold"] for t in ("water", "grass", "forest")]
    if not 0.0 <= thresholds[0] <= thresholds[1] <= thresholds[2] <= 1.0:
        raise ValueError("terrain thresholds must satisfy 0 <= water <= grass <= forest <= 1, "
                         f"got {thresholds}")


@dataclasses.dataclass(frozen=True)
class Config:
    """The static shape of a realm; changing a field recompiles. No rule numbers: those
    are `Params`.

    Attributes:
      map_size: side of the square map in tiles (80 in the original).
      lava_border: width of the lava ring; the grass spawn ring lies just inside it.
      n_agents: agent slots per realm (NENT); fixed array size.
      n_pops: populations (NPOP); slot i belongs to population i % n_pops.
      view_radius: the observation window is (2 r + 1)^2 tiles around the agent.
      n_entities: K, the entity slots of an observation (slot 0 is the observer).
      terrain_octaves: octaves of the ridged noise used by the map generator.
      count_visits: keep `State.visits`, each population's count of ticks on each tile
        (the exploration maps of SPEC §7). Off, `visits` is an empty [P, 0, 0] array and
        the step skips it: the counter is a third of the bytes a step moves.
      preset: the preset whose rule numbers are the default params of an `Env` of
        this config (`Env.default_params`).
    """

    map_size: int = 80
    lava_border: int = 9
    n_agents: int = 128
    n_pops: int = 8
    view_radius: int = 7
    n_entities: int = 16
    terrain_octaves: int = 8
    count_visits: bool = False
    preset: str = "chaos"

    def __post_init__(self) -> None:
        _check_preset(self.preset)
        for name in ("map_size", "n_agents", "n_pops", "n_entities", "terrain_octaves"):
            value = _whole(self, name)
            if value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name in ("lava_border", "view_radius"):
            value = _whole(self, name)
            if value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        if not isinstance(self.count_visits, bool):
            raise ValueError(f"count_visits must be a bool, got {self.count_visits!r}")
        if self.n_agents % self.n_pops:
            raise ValueError(
                f"n_agents ({self.n_agents}) must be divisible by n_pops ({self.n_pops})")
        if self.interior < 1:
            raise ValueError(
                f"map_size ({self.map_size}) leaves no interior inside a lava border of "
                f"{self.lava_border} and the spawn ring; need map_size >= 2*lava_border + 3")
        if 2 * self.view_radius + 1 > self.map_size:
            raise ValueError(
                f"view window ({2 * self.view_radius + 1}) is larger than the map "
                f"({self.map_size})")
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

    def replace(self, **changes: Any) -> Config:
        return dataclasses.replace(self, **changes)


# Upper bounds of static fields beyond what memory limits. Octaves past 16 weigh under
# 2^-16 of the noise field: on 80 x 80 maps of three keys, 16, 17, 125 and 200 octaves
# gave the same tiles (12 octaves at most 2 tiles apart), each octave at the cost of
# another noise pass over the map.
_STATIC_MAX = {"terrain_octaves": 16}


def _whole(cfg: Config, name: str) -> int:
    """The static field `name` as a Python int (numpy ints accepted). Raises `TypeError`
    naming the field for a non-number, `ValueError` for a non-whole number or one above
    its bound in `_STATIC_MAX`."""
    value = getattr(cfg, name)
    if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be an int, got {value!r} ({type(value).__name__})")
    if not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int, got {value!r}")
    top = _STATIC_MAX.get(name)
    if top is not None and value > top:
        raise ValueError(f"{name} must be <= {top}, got {value}")
    object.__setattr__(cfg, name, int(value))
    return int(value)


STATIC_FIELDS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "preset")


def config(preset: str = "chaos", **overrides: Any) -> Config:
    """Builds a checked `Config` for `preset` ("base", "law" or "chaos").

    Keyword overrides name static fields (`n_agents=64`). A rule number
    (`melee_damage=5`) raises `ValueError` pointing to `params` and `nmmo_jax.make`, which
    take them; an unknown name raises `ValueError` listing the static fields.
    """
    _check_preset(preset)
    rules = sorted(set(overrides) & set(PARAM_FIELDS))
    if rules:
        raise ValueError(
            f"{rules} are rule numbers (Params), not static config fields; pass them to "
            f"nmmo_jax.params({preset!r}, ...) or nmmo_jax.make({preset!r}, ...)")
    unknown = set(overrides) - set(STATIC_FIELDS)
    if unknown:
        raise ValueError(f"unknown config fields {sorted(unknown)}; static fields: "
                         f"{STATIC_FIELDS}")
    return Config(preset=preset, **overrides)


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`overrides` as (static fields for `config`, rule numbers for `params`); raises
    `ValueError` naming any name that is neither, with both lists of known names."""
    unknown = set(overrides) - set(STATIC_FIELDS) - set(PARAM_FIELDS)
    if unknown:
        raise ValueError(f"unknown fields {sorted(unknown)}; static (Config): "
                         f"{STATIC_FIELDS}; rule numbers (Params): {PARAM_FIELDS}")
    static = {k: v for k, v in overrides.items() if k in STATIC_FIELDS}
    rules = {k: v for k, v in overrides.items() if k in PARAM_FIELDS}
    return static, rules


def check_hits_fit(cfg: Config, p: Params) -> None:
    """Raises `ValueError` unless the hits of every other agent on one agent in one tick
    fit the int16 `damage` stat: (n_agents - 1) x the largest damage <= 32767. `p` must
    hold concrete values (any leading axes: every set of params is checked)."""
    damages = jax.device_get((p.melee_damage, p.range_damage, p.mage_damage))
    largest = int(max(np.max(d) for d in damages))
    if (cfg.n_agents - 1) * largest > INT16_MAX:
        raise ValueError(
            f"melee_damage, range_damage and mage_damage must be <= "
            f"{INT16_MAX // max(cfg.n_agents - 1, 1)} with n_agents={cfg.n_agents} (what "
            f"every other agent deals to one agent in a tick must fit int16), got {largest}")
