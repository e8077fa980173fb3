"""Tournaments: checkpoints and scripted policies share realms, each on its own slots, and
are ranked by mean lifetime with a confidence interval over realms."""

import re
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nmmo_jax
import train
from nmmo_jax.config import REWARD_MODES
from nmmo_jax.policies import fighter
from train import checkpoint, zoo
from train.evaluate import (
    Competitor,
    Scripted,
    arena,
    arena_realm,
    evaluate,
    joint_actions,
    joint_policy,
    lifetime_interval,
    lineup,
    load_competitor,
    main,
)
from train.networks import ActionDist, make_network
from train.populations import init_populations
from train.ppo import TrainConfig

SMALL = TrainConfig(map_size=32, lava_border=3, agents=16, pops=4, entities=8)


@pytest.fixture(scope="module")
def untrained() -> Competitor:
    """Freshly initialised networks of 4 populations: they walk into lava within ticks."""
    network = make_network(SMALL.network, SMALL.hidden or None, SMALL.noop_bias)
    obs, _ = nmmo_jax.Env(SMALL.env_config()).reset(jax.random.key(0))
    params = init_populations(network, jax.random.key(1), obs, SMALL.pops)
    return Competitor("untrained", network, params, SMALL)


def test_lifetime_interval_on_hand_made_numbers():
    # Three realms: 100 ticks over 2 deaths, 300 over 4, 200 over 4. Mean 600 / 10 = 60;
    # residuals l - 60 d = -20, 60, -40; spread sqrt(5600 / (3 * 2)) = 30.551;
    # half-width t(0.975, 2) * 30.551 / (10 / 3) = 4.302653 * 9.1652 = 39.434.
    mean, low, high = lifetime_interval([100, 300, 200], [2, 4, 4])
    assert mean == 60
    assert high - mean == pytest.approx(39.434, abs=1e-3)
    assert mean - low == pytest.approx(high - mean)


def test_lifetime_interval_with_equal_deaths_is_the_t_interval_of_realm_means():
    # One death per realm: the realm means are 10, 20, 30, 40; mean 25, sample standard
    # deviation 12.910, half-width t(0.975, 3) * 12.910 / 2 = 3.182446 * 6.455 = 20.542.
    mean, low, high = lifetime_interval([10, 20, 30, 40], [1, 1, 1, 1])
    assert (mean, low, high) == pytest.approx((25, 25 - 20.542, 25 + 20.542), abs=1e-3)
    assert lifetime_interval([10, 20, 30, 40], [1, 1, 1, 1], level=0.5)[2] < high


def test_lifetime_interval_needs_two_realms_and_a_death():
    mean, low, high = lifetime_interval([30], [2])
    assert mean == 15 and np.isnan(low) and np.isnan(high)
    mean, low, high = lifetime_interval([0, 0], [0, 0])
    assert mean == 0 and np.isnan(low) and np.isnan(high)


def test_scripted_entrants_take_as_many_populations_as_the_first_checkpoint(untrained):
    def still(key, obs):
        return fighter(key, obs)

    entrants = lineup([untrained, "fighter", still])
    assert [e.name for e in entrants] == ["untrained", "fighter", "still"]
    assert entrants[1] == Scripted("fighter", fighter, 4) and entrants[2].pops == 4
    cfg, rules = arena_realm(entrants, agents=24)
    assert cfg.n_pops == 12 and int(rules.reward_mode) == REWARD_MODES[SMALL.reward_mode]
    with pytest.raises(ValueError, match="must be <= 8 with n_agents=3996"):  # Chaos damage
        arena_realm(entrants, agents=3996)
    with pytest.raises(ValueError, match="needs a checkpoint entrant"):
        lineup(["fighter"])
    with pytest.raises(ValueError, match="unknown policy 'pacifist'"):
        lineup([untrained, "pacifist"])


def test_each_entrant_plays_only_its_own_slots(untrained):
    def west_with_mage(key, obs):
        n = obs.alive.shape[0]
        return nmmo_jax.Actions(move=jnp.full(n, 3, jnp.int32), style=jnp.full(n, 2, jnp.int32),
                                target=jnp.zeros(n, jnp.int32))

    entrants = lineup([untrained, west_with_mage])
    cfg, _ = arena_realm(entrants)
    obs, _ = jax.vmap(arena(cfg).reset)(jax.random.split(jax.random.key(2), 2))
    players = (untrained.network, entrants[1])
    params = (untrained.params, None)
    key = jax.random.key(3)
    actions = jax.jit(joint_actions, static_argnums=0)(players, params, key, obs)
    scripted = np.arange(cfg.n_agents) % cfg.n_pops >= 4  # populations 4..7
    assert np.all(np.asarray(actions.move)[:, scripted] == 3)
    assert np.all(np.asarray(actions.style)[:, scripted] == 2)
    sampled = ActionDist(joint_policy(players, params, obs)).sample(key)
    for field in ("move", "style", "target"):
        np.testing.assert_array_equal(np.asarray(getattr(actions, field))[:, ~scripted],
                                      np.asarray(getattr(sampled, field))[:, ~scripted])


def test_a_tournament_with_a_scripted_entrant_runs_and_ranks(untrained):
    result = evaluate([untrained, "fighter"], jax.random.key(4), realms=4, ticks=150)
    assert (result["realms"], result["ticks"]) == (4, 150)
    rows = {row["name"]: row for row in result["competitors"]}
    assert rows["fighter"]["scripted"] and not rows["untrained"]["scripted"]
    assert rows["untrained"]["pops"] == [0, 1, 2, 3] and rows["fighter"]["pops"] == [4, 5, 6, 7]
    lifetimes = [row["lifetime"] for row in result["competitors"]]
    assert lifetimes == sorted(lifetimes, reverse=True)
    assert [row["name"] for row in result["competitors"]] == ["fighter", "untrained"]
    for row in result["competitors"]:
        low, high = row["ci95"]
        assert row["deaths"] > 0 and low <= row["lifetime"] <= high
    assert sum(row["deaths"] for row in result["competitors"]) == sum(result["deaths"])
    assert len(result["population_lifetime"]) == 8


class Saved(NamedTuple):
    """The part of a runner that `load_competitor` reads."""

    params: Any


def test_the_command_line_ranks_a_checkpoint_against_a_scripted_policy(
        untrained, tmp_path, capsys):
    path = tmp_path / "checkpoint.msgpack"
    checkpoint.save(path, Saved(untrained.params), SMALL)
    main([str(path), "--vs", "forager", "--realms", "2", "--ticks", "30"])
    text = capsys.readouterr().out
    assert "2 realms x 30 ticks" in text
    bound = r"(?:nan|-?[\d.]+)"
    ranked = re.findall(rf"^\s+\d\.\s+[\d.]+ ticks \[{bound}, {bound}\]\s+\(\d+ deaths\)\s+(\S+)$",
                        text, re.M)
    assert sorted(ranked) == sorted([str(path), "forager"])


def test_saved_populations_load_as_a_competitor(untrained, tmp_path):
    path = tmp_path / "pops.msgpack"
    zoo.save_populations(path, untrained.params, SMALL, {"lifetime": 12.5})
    loaded = load_competitor(path, name="saved")
    assert loaded.name == "saved" and loaded.config == SMALL
    chex.assert_trees_all_equal(loaded.params, untrained.params)
    assert checkpoint.read(path)["meta"] == {"lifetime": 12.5}


@pytest.mark.parametrize("name", zoo.names())
def test_shipped_populations_load_in_one_line_and_play(name):
    competitor = train.pretrained(name)
    assert competitor.name == f"pretrained:{name}" and competitor.config.preset == name
    result = evaluate([competitor], jax.random.key(0), realms=2, ticks=20)
    assert result["competitors"][0]["name"] == f"pretrained:{name}"


def test_unknown_pretrained_populations_name_the_choices(capsys):
    with pytest.raises(SystemExit):
        main(["pretrained:nowhere"])
    assert f"no pretrained populations 'nowhere'; choose one of {zoo.names()}" in (
        capsys.readouterr().err)
