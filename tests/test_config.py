"""Config and params: SPEC's defaults, the presets, the static / rule-number split, and
clear errors for bad values."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
from nmmo_jax.config import GRASS, PARAM_FIELDS, STATIC_FIELDS


def test_defaults_follow_the_spec():
    cfg = nmmo_jax.config()
    assert (cfg.map_size, cfg.lava_border, cfg.interior) == (80, 9, 60)
    assert (cfg.n_agents, cfg.n_pops, cfg.pop_size) == (128, 8, 16)
    assert (cfg.view_radius, cfg.view_size) == (7, 15)
    p = nmmo_jax.Env(cfg).default_params
    assert [int(x) for x in (p.max_health, p.max_food, p.max_water)] == [10, 32, 32]
    assert [int(x) for x in (p.forage_food, p.drink_water, p.forest_capacity)] == [5, 5, 1]
    assert float(p.regrow_prob) == pytest.approx(0.025)
    assert int(p.immunity_ticks) == 15 and int(p.mage_freeze) == 3
    assert int(p.spawn_per_tick) == 1 and int(p.reward_mode) == 0


@pytest.mark.parametrize("preset, ranges, damages, vampirism", [
    ("chaos", [1, 2, 3], [10, 2, 1], 1.0),
    ("base", [1, 4, 4], [0, 0, 0], 0.0),
    ("law", [1, 4, 4], [0, 0, 0], 0.0),
])
def test_presets(preset, ranges, damages, vampirism):
    p = nmmo_jax.params(preset)
    assert p.ranges.tolist() == ranges
    assert p.damages.tolist() == damages
    assert float(p.vampirism) == vampirism


def test_law_has_no_freeze():
    assert int(nmmo_jax.params("law").mage_freeze) == 0


def test_an_env_defaults_to_its_presets_rule_numbers():
    for preset in ("base", "law", "chaos"):
        env = nmmo_jax.Env(nmmo_jax.config(preset, n_agents=16, n_pops=4))
        expected = nmmo_jax.params(preset)
        assert [float(x) for x in jax.tree.leaves(env.default_params)] == [
            float(x) for x in jax.tree.leaves(expected)]


def test_overrides_reach_static_fields_and_params():
    cfg = nmmo_jax.config("chaos", n_agents=32)
    p = nmmo_jax.params("chaos", melee_damage=5, reward_mode="alive")
    assert cfg.n_agents == 32 and cfg.preset == "chaos"
    assert int(p.melee_damage) == 5 and int(p.reward_mode) == 1
    assert int(p.range_range) == 2  # the preset still applies


def test_config_holds_no_rule_numbers():
    assert not set(STATIC_FIELDS) & set(PARAM_FIELDS)
    with pytest.raises(ValueError, match=r"\['melee_damage', 'reward_mode'\] are rule numbers "
                                         r"\(Params\), not static config fields; pass them to "
                                         r"nmmo_jax.params\('law', ...\) or nmmo_jax.make"):
        nmmo_jax.config("law", n_agents=32, reward_mode="alive", melee_damage=5)


def test_params_are_arrays_of_fixed_dtypes():
    p = nmmo_jax.params()
    for name in PARAM_FIELDS:
        value = getattr(p, name)
        assert value.shape == () and value.dtype in (jnp.int32, jnp.float32), name


@pytest.mark.parametrize("field, value", [
    ("map_size", -1), ("map_size", 0), ("n_agents", -8), ("n_pops", 0),
    ("n_entities", 0), ("terrain_octaves", 0),
    ("lava_border", -1), ("view_radius", -2), ("map_size", 32.0), ("count_visits", 1),
])
def test_bad_sizes_are_rejected_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        nmmo_jax.config(**{field: value})


def test_agents_must_split_evenly_into_populations():
    with pytest.raises(ValueError, match=r"n_agents \(10\) must be divisible by n_pops \(4\)"):
        nmmo_jax.config(n_agents=10, n_pops=4)


def test_view_larger_than_the_map_is_rejected():
    with pytest.raises(ValueError, match="larger than the map"):
        nmmo_jax.config(map_size=12, lava_border=2, view_radius=7)


def test_map_too_small_for_its_border_is_rejected():
    with pytest.raises(ValueError, match="no interior"):
        nmmo_jax.config(map_size=20, lava_border=9, view_radius=2)


def test_unknown_preset_is_rejected():
    with pytest.raises(ValueError, match="unknown preset 'peace'"):
        nmmo_jax.config("peace")
    with pytest.raises(ValueError, match="unknown preset 'peace'"):
        nmmo_jax.params("peace")
    with pytest.raises(ValueError, match="unknown preset 'peace'"):
        nmmo_jax.Config(preset="peace")


def test_unknown_fields_are_rejected():
    with pytest.raises(ValueError, match=r"unknown config fields \['n_agent'\]"):
        nmmo_jax.config(n_agent=64)
    with pytest.raises(ValueError, match=r"unknown params \['melee_dmg'\]"):
        nmmo_jax.params(melee_dmg=3)


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_probabilities_must_lie_in_zero_one(value):
    with pytest.raises(ValueError, match=r"regrow_prob must be in \[0, 1\]"):
        nmmo_jax.params(regrow_prob=value)


@pytest.mark.parametrize("field, value", [
    ("max_health", 0), ("max_food", -1), ("forest_capacity", 0), ("forage_food", -5),
    ("melee_damage", -1), ("mage_range", -1), ("mage_freeze", -3), ("spawn_per_tick", -1),
    ("immunity_ticks", -1), ("vampirism", -0.5), ("vampirism", float("nan")),
    ("max_water", 40000), ("melee_damage", 2.5), ("mage_freeze", float("inf")),
])
def test_impossible_rule_numbers_are_rejected(field, value):
    with pytest.raises(ValueError, match=field):
        nmmo_jax.params(**{field: value})


def test_reward_mode_must_be_known():
    with pytest.raises(ValueError, match="reward_mode"):
        nmmo_jax.params(reward_mode="score")
    with pytest.raises(ValueError, match="reward_mode"):
        nmmo_jax.params(reward_mode=2)


def test_terrain_thresholds_must_be_ordered():
    with pytest.raises(ValueError, match="thresholds"):
        nmmo_jax.params(water_threshold=0.6, grass_threshold=0.5)
    with pytest.raises(ValueError, match="thresholds"):
        nmmo_jax.params(forest_threshold=1.2)


@pytest.mark.parametrize("field, value, bound", [
    ("forest_capacity", 128, r"\[1, 127\]"),  # stored as int8
    ("mage_freeze", 40000, r"\[0, 32767\]"),  # the int16 freeze counter
    ("max_health", 32768, r"\[1, 32767\]"),
    ("forage_food", 2**31 - 1, r"\[0, 32767\]"),  # added to an int16 stat
    ("drink_water", 40000, r"\[0, 32767\]"),
    ("melee_damage", 2**31 - 100, r"\[0, 32767\]"),
    ("range_damage", 32768, r"\[0, 32767\]"),
    ("immunity_ticks", 2**31, r"\[0, 2147483647\]"),  # compared with int32 time_alive
    ("spawn_per_tick", 2**40, r"\[0, 2147483647\]"),
    ("vampirism", float("inf"), r"\[0, 32767\]"),
    ("reward_mode", 2, r"\[0, 1\]"),
])
def test_rule_numbers_must_fit_their_dtypes(field, value, bound):
    with pytest.raises(ValueError, match=rf"{field} must be in {bound}, got {value}"):
        nmmo_jax.params(**{field: value})


def test_the_largest_rule_numbers_are_accepted():
    p = nmmo_jax.params(forest_capacity=127, mage_freeze=32767, max_health=32767,
                        forage_food=32767, melee_damage=32767, vampirism=1.0)
    assert int(p.forest_capacity) == 127 and int(p.mage_freeze) == 32767


def test_what_one_hit_drains_must_fit_a_stat():
    with pytest.raises(ValueError, match=r"vampirism x the largest damage must be <= 32767"):
        nmmo_jax.params(vampirism=5000.0, melee_damage=10)


def test_the_hits_on_one_agent_in_a_tick_must_fit_its_damage_stat(key):
    # Checked where a config and params meet: make, default_params, reset, make_state.
    with pytest.raises(ValueError, match=r"must be <= 258 with n_agents=128"):
        nmmo_jax.make("chaos", melee_damage=300)
    _, p = nmmo_jax.make("chaos", n_agents=8, melee_damage=4000)
    assert int(p.melee_damage) == 4000
    crowded = nmmo_jax.Env(nmmo_jax.config("chaos", n_agents=4000, n_pops=8))
    with pytest.raises(ValueError, match=r"must be <= 8 with n_agents=4000"):
        crowded.default_params  # noqa: B018
    small = nmmo_jax.Env(nmmo_jax.config("chaos", map_size=24, lava_border=2, n_agents=8,
                                         n_pops=4))
    with pytest.raises(ValueError, match=r"must be <= 4681 with n_agents=8"):
        small.reset(key, nmmo_jax.params("chaos", range_damage=5000))
    with pytest.raises(ValueError, match=r"must be <= 4681 with n_agents=8"):
        small.make_state(np.full((24, 24), GRASS, np.int8), [dict(pos=(5, 5))],
                         nmmo_jax.params("chaos", mage_damage=5000))


@pytest.mark.parametrize("field", ["n_agents", "map_size", "melee_damage", "regrow_prob",
                                   "vampirism"])
@pytest.mark.parametrize("value", ["10", None, [1, 2], True])
def test_values_that_are_not_numbers_raise_a_type_error_naming_the_field(field, value):
    with pytest.raises(TypeError, match=rf"^{field} must be"):
        nmmo_jax.make("chaos", **{field: value})


@pytest.mark.parametrize("value", [None, [1], True])
def test_reward_mode_is_a_name_or_a_number(value):
    with pytest.raises(TypeError, match=r"^reward_mode must be a real number"):
        nmmo_jax.params("chaos", reward_mode=value)


def test_terrain_octaves_are_bounded():
    # Octaves past 16 change no tile of the map, only its cost (`config._STATIC_MAX`).
    for octaves in (17, 125):
        with pytest.raises(ValueError, match=f"terrain_octaves must be <= 16, got {octaves}"):
            nmmo_jax.config(terrain_octaves=octaves)
    with pytest.raises(ValueError, match="terrain_octaves must be <= 16"):
        nmmo_jax.Config(terrain_octaves=125)
    assert nmmo_jax.config(terrain_octaves=16).terrain_octaves == 16


def test_preset_must_be_a_known_name():
    with pytest.raises(ValueError, match="unknown preset"):
        nmmo_jax.config(["chaos"])
