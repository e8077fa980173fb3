"""The numpy facades: `ParallelEnv` (PettingZoo Parallel API) and `BatchEnv`."""

import subprocess
import sys
import warnings

import numpy as np
import pytest

import nmmo_jax
from nmmo_jax.adapters import BatchEnv, ParallelEnv, agent_name
from nmmo_jax.adapters.parallel import MASK
from nmmo_jax.adapters.spaces import AGENT_FIELDS
from nmmo_jax.config import CAUSE_NAMES, PRESETS


def legal_actions(obs: dict, rng: np.random.Generator) -> dict:
    """A random legal action dict for every agent in `obs`: any move and style, and a
    target that style can hit."""
    actions = {}
    for name, o in obs.items():
        style = int(rng.integers(3))
        target = int(rng.choice(np.flatnonzero(o["target_mask"][style])))
        actions[name] = {"move": int(rng.integers(5)), "style": style, "target": target}
    return actions


def run_until_death(penv: ParallelEnv, rng: np.random.Generator, ticks: int = 100):
    """Steps live agents with random legal actions until one dies; returns the step's
    results and the agents that acted in it."""
    obs, _ = penv.reset(seed=1)
    for _ in range(ticks):
        acting = list(penv.agents)
        out = penv.step(legal_actions({a: obs[a] for a in acting}, rng))
        obs, terminations = out[0], out[2]
        if any(terminations.values()):
            return out, acting
    pytest.fail(f"no agent died in {ticks} ticks of random moves")


@pytest.fixture
def penv(small_env) -> ParallelEnv:
    return ParallelEnv(small_env)


def test_reset_hands_each_live_agent_its_row_of_the_observation(penv, small_env):
    obs, infos = penv.reset(seed=0)
    realm = penv.realm
    live = np.flatnonzero(np.asarray(realm.agents.alive))
    assert penv.agents == [agent_name(i) for i in live] and len(live) >= 1
    assert set(obs) == set(infos) == set(penv.agents)
    assert penv.possible_agents == [f"agent_{i}" for i in range(small_env.n_agents)]
    full = small_env.observe(realm)
    for name in penv.agents:
        slot = penv.possible_agents.index(name)
        assert set(obs[name]) == set(AGENT_FIELDS) | {MASK}
        for field in AGENT_FIELDS:
            np.testing.assert_array_equal(obs[name][field], np.asarray(getattr(full, field))[slot])


def test_step_round_trip_with_dict_and_tuple_actions(penv):
    obs, _ = penv.reset(seed=0)
    rng = np.random.default_rng(0)
    for t in range(20):
        before = set(penv.agents)
        actions = legal_actions(obs, rng)
        if t % 2:
            actions = {name: (a["move"], a["style"], a["target"]) for name, a in actions.items()}
        obs, rewards, terminations, truncations, infos = penv.step(actions)
        keys = before | set(penv.agents)
        for out in (obs, rewards, terminations, truncations, infos):
            assert set(out) == keys
        assert all(isinstance(r, float) for r in rewards.values())
        assert not any(truncations.values())
        assert set(penv.agents) <= set(penv.possible_agents)
    assert int(penv.realm.tick) == 20


def test_missing_actions_are_the_noop(penv):
    penv.reset(seed=0)
    for _ in range(5):
        penv.step({})
    before = np.asarray(penv.realm.agents.pos)
    still = set(penv.agents)
    _, _, terminations, _, _ = penv.step({})
    for name in still - {a for a, t in terminations.items() if t}:
        slot = penv.possible_agents.index(name)
        np.testing.assert_array_equal(np.asarray(penv.realm.agents.pos)[slot], before[slot])


def test_dead_agents_are_terminated_and_leave_agents(penv):
    (obs, rewards, terminations, truncations, infos), acting = run_until_death(
        penv, np.random.default_rng(1))
    dead = [name for name, t in terminations.items() if t]
    for name in dead:
        assert name in acting and name not in penv.agents and name in obs
        assert rewards[name] == -1.0 and not truncations[name]
        assert infos[name]["lifetime"] >= 1 and infos[name]["cause"] in CAUSE_NAMES[1:]
    for name in set(acting) - set(dead):
        assert name in penv.agents and not terminations[name] and infos[name] == {}


def test_a_slot_refilled_on_the_tick_its_agent_died_rejoins_a_step_later(small_env):
    """With a spawn for every free slot each tick, every death is refilled at once: the
    newborn stays out of `agents` for one step (standing still), then joins under the
    slot's name."""
    params = nmmo_jax.params(**PRESETS["chaos"], spawn_per_tick=small_env.n_agents)
    penv = ParallelEnv(small_env, params=params)
    (_, _, terminations, _, _), _ = run_until_death(penv, np.random.default_rng(2))
    dead = [name for name, t in terminations.items() if t]
    slots = [penv.possible_agents.index(name) for name in dead]
    assert np.asarray(penv.realm.agents.alive)[slots].all()
    assert not set(dead) & set(penv.agents)
    pos = np.asarray(penv.realm.agents.pos)[slots]
    obs, _, terminations, _, _ = penv.step({name: (0, 0, 0) for name in penv.agents})
    for name in dead:
        assert name in penv.agents and name in obs and not terminations[name]
    np.testing.assert_array_equal(np.asarray(penv.realm.agents.pos)[slots], pos)


@pytest.mark.parametrize("action, message", [
    ({"move": 7, "style": 0, "target": 0}, "move 7 is not in"),
    ({"move": 0, "style": 3, "target": 0}, "style 3 is not in"),
    ({"move": 0, "style": 0, "target": -1}, "target -1 is not in"),
    ({"move": 0, "style": 0, "target": 7}, "cannot be hit with melee"),
    ({"move": 1.5, "style": 0, "target": 0}, "move must be an integer"),
    ({"move": 0, "style": 0}, "needs exactly the keys"),
    ((0, 0), r"\(move, style, target\)"),
])
def test_bad_actions_raise_naming_the_agent(small_env, action, message):
    penv = ParallelEnv(small_env, strict=True)
    penv.reset(seed=0)
    name = penv.agents[0]
    with pytest.raises(ValueError, match=f"^{name}: .*{message}"):
        penv.step({name: action})
    assert int(penv.realm.tick) == 0


@pytest.mark.parametrize("actions, message", [
    ({"agent_99": (0, 0, 0)}, "unknown agent 'agent_99'"),
    ({"bob": (0, 0, 0)}, "unknown agent 'bob'"),
    ([(0, 0, 0)], "must be a dict"),
])
def test_bad_action_dicts_raise(penv, actions, message):
    penv.reset(seed=0)
    with pytest.raises(ValueError, match=message):
        penv.step(actions)


def test_actions_for_agents_not_live_are_ignored(penv):
    penv.reset(seed=0)
    idle = next(name for name in penv.possible_agents if name not in penv.agents)
    penv.step({idle: (9, 9, 9)})
    assert int(penv.realm.tick) == 1


def test_space_samples_are_accepted_and_an_unhittable_target_is_no_attack(small_env):
    """A sampled target that the style cannot hit (here an empty entity slot: one agent
    lives after the reset) is no attack, as inside jit; `strict=True` raises instead."""
    gymnasium = pytest.importorskip("gymnasium")
    penv = ParallelEnv(small_env)
    penv.reset(seed=0)
    (name,) = penv.agents
    slot = penv.possible_agents.index(name)
    empty = small_env.n_entities - 1
    penv.step({name: {"move": 0, "style": 0, "target": empty}})
    assert int(penv.realm.tick) == 1 and int(penv.realm.agents.last_target[slot]) == -1
    space = penv.action_space(name)
    assert isinstance(space, gymnasium.spaces.Dict)
    space.seed(0)
    for _ in range(10):
        penv.step({name: space.sample() for name in penv.agents})
    with pytest.raises(ValueError, match="move 5 is not in"):
        penv.step({penv.agents[0]: (5, 0, 0)})
    strict = ParallelEnv(small_env, strict=True)
    strict.reset(seed=0)
    with pytest.raises(ValueError, match=f"^{name}: target slot {empty} cannot be hit"):
        strict.step({name: {"move": 0, "style": 0, "target": empty}})


@pytest.fixture(scope="module")
def default_penv() -> ParallelEnv:
    return ParallelEnv()


def test_the_standard_sampling_loop_runs_with_default_settings(default_penv):
    pytest.importorskip("gymnasium")
    env = default_penv
    env.reset(seed=0)
    env.action_space("agent_0").seed(0)
    attacks = 0
    for _ in range(200):
        env.step({a: env.action_space(a).sample() for a in env.agents})
        attacks += int(np.sum(np.asarray(env.realm.agents.last_target) >= 0))
    assert int(env.realm.tick) == 200 and env.agents
    assert attacks > 0  # some sampled targets were hittable and landed


def test_masked_samples_are_legal_even_when_strict(small_env):
    """The action mask marks the moves that change the agent's tile (`move_mask`),
    every style and the targets that every style can hit, so `sample(mask=...)` never
    draws an illegal action."""
    pytest.importorskip("gymnasium")
    penv = ParallelEnv(small_env, strict=True, episodic=True)
    obs, _ = penv.reset(seed=3)
    space = penv.action_space("agent_0")
    space.seed(3)
    hits = 0
    for _ in range(40):
        for o in obs.values():
            mask = o[MASK]
            assert {k: (v.dtype, v.shape) for k, v in mask.items()} == {
                "move": (np.int8, (5,)), "style": (np.int8, (3,)),
                "target": (np.int8, (small_env.n_entities,))}
            np.testing.assert_array_equal(mask["target"], o["target_mask"].all(axis=0))
            np.testing.assert_array_equal(mask["move"], o["move_mask"])
            assert mask["move"][0] == 1 and mask["style"].all() and mask["target"][0] == 1
        actions = {a: space.sample(mask=obs[a][MASK]) for a in penv.agents}
        hits += sum(int(a["target"]) > 0 for a in actions.values())
        obs = penv.step(actions)[0]
        obs = {name: obs[name] for name in penv.agents}
        if not penv.agents:
            break
    assert hits > 0


def test_episodic_reset_fills_every_slot_and_nobody_respawns(small_env):
    penv = ParallelEnv(small_env, episodic=True)
    penv.reset(seed=0)
    assert penv.agents == penv.possible_agents
    rng = np.random.default_rng(0)
    obs, ended = penv.reset(seed=0)[0], set()
    while penv.agents:
        before = set(penv.agents)
        obs, _, terminations, truncations, _ = penv.step(legal_actions(obs, rng))
        assert set(terminations) == before and not any(truncations.values())
        ended |= {name for name, t in terminations.items() if t}
        assert set(penv.agents) == before - ended
        assert int(np.sum(np.asarray(penv.realm.agents.alive))) == len(penv.agents)
        obs = {name: obs[name] for name in penv.agents}
    assert ended == set(penv.possible_agents)
    with pytest.raises(RuntimeError, match="episode is over"):
        penv.step({})
    assert len(penv.reset(seed=1)[0]) == small_env.n_agents


def test_episodic_mode_ends_at_the_horizon(small_env):
    penv = ParallelEnv(small_env, episodic=True, max_ticks=4)
    penv.reset(seed=0)
    for _ in range(3):
        penv.step({})
    acting = set(penv.agents)
    _, _, terminations, truncations, _ = penv.step({})
    assert penv.agents == [] and acting
    assert {n for n, t in truncations.items() if t} == {n for n in acting if not terminations[n]}
    with pytest.raises(RuntimeError, match="episode is over"):
        penv.step({})


def test_episodic_mode_passes_the_pettingzoo_api_test(small_env):
    pettingzoo = pytest.importorskip("pettingzoo")
    from pettingzoo.test import parallel_api_test

    penv = ParallelEnv(small_env, episodic=True, max_ticks=60)
    assert isinstance(penv, pettingzoo.ParallelEnv)
    penv.action_space("agent_0").seed(0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parallel_api_test(penv, num_cycles=100)
    assert not [str(w.message) for w in caught]


def test_spaces_contain_the_observations(penv):
    pytest.importorskip("gymnasium")
    obs, _ = penv.reset(seed=0)
    space = penv.observation_space("agent_3")
    assert space is penv.observation_space("agent_0")
    assert penv.action_space("agent_1") is penv.action_space("agent_2")
    rng = np.random.default_rng(3)
    seen = 0
    for _ in range(30):
        obs = penv.step(legal_actions(obs, rng))[0]
        assert all(space.contains(o) for o in obs.values())
        seen += len(obs)
        obs = {name: obs[name] for name in penv.agents}
    assert seen > 30
    with pytest.raises(ValueError, match="unknown agent"):
        penv.action_space("agent_-1")


def test_spaces_need_gymnasium(penv, monkeypatch):
    monkeypatch.setitem(sys.modules, "gymnasium", None)
    with pytest.raises(ImportError, match=r"nmmo-jax\[adapters\]"):
        penv.observation_space("agent_0")


def test_the_facades_import_without_gymnasium_or_pettingzoo():
    code = ("import sys; sys.modules['gymnasium'] = sys.modules['pettingzoo'] = None; "
            "from nmmo_jax.adapters import ParallelEnv, BatchEnv; "
            "assert ParallelEnv.__bases__ == (object,)")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_matplotlib_loads_only_when_a_frame_is_drawn():
    code = ("import sys, nmmo_jax\n"
            "from nmmo_jax.adapters import ParallelEnv\n"
            "penv = ParallelEnv(nmmo_jax.config(map_size=24, lava_border=2, n_agents=4, "
            "n_pops=2, view_radius=3, n_entities=4))\n"
            "penv.reset(seed=0); penv.step({})\n"
            "assert 'matplotlib' not in sys.modules, 'stepping loaded matplotlib'\n"
            "assert penv.render().ndim == 3 and 'matplotlib' in sys.modules\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_same_seed_gives_the_same_observations(small_env):
    runs = []
    for seed in (7, 7, 8):
        penv = ParallelEnv(small_env)
        obs, _ = penv.reset(seed=seed)
        trace = [obs]
        for _ in range(5):
            trace.append(penv.step({name: (1, 0, 0) for name in penv.agents})[0])
        runs.append(trace)

    def same(a, b):
        return all(a_t.keys() == b_t.keys() and all(
            np.array_equal(a_t[n][f], b_t[n][f]) for n in a_t for f in AGENT_FIELDS)
            for a_t, b_t in zip(a, b, strict=True))

    assert same(runs[0], runs[1])
    assert not same(runs[0], runs[2])


def test_pettingzoo_api_test_finds_only_the_documented_name_reuse(small_env):
    """In the persistent mode PettingZoo's own API test passes until a slot's name comes
    back with a new agent (the one documented departure from its rules)."""
    test = pytest.importorskip("pettingzoo.test")
    params = nmmo_jax.params(**PRESETS["chaos"], spawn_per_tick=small_env.n_agents)
    penv = ParallelEnv(small_env, params=params)
    penv.action_space("agent_0").seed(0)
    with pytest.raises(AssertionError, match="revived"):
        test.parallel_api_test(penv, num_cycles=100)


def test_max_ticks_truncates_every_agent_and_ends_the_realm(small_env):
    penv = ParallelEnv(small_env, max_ticks=3)
    penv.reset(seed=0)
    penv.step({})
    penv.step({})
    acting = set(penv.agents)
    _, _, terminations, truncations, _ = penv.step({})
    assert penv.agents == [] and set(truncations) == acting
    assert all(truncations[n] != terminations[n] for n in acting)
    with pytest.raises(RuntimeError, match="episode is over"):
        penv.step({})


def test_render_draws_the_realm(penv):
    with pytest.raises(RuntimeError, match="reset"):
        penv.render()
    penv.reset(seed=0)
    penv.step({})
    frame = penv.render()
    assert frame.dtype == np.uint8 and frame.ndim == 3 and frame.shape[2] == 3
    penv.close()
    assert penv.agents == []


def test_batch_env_steps_realms_as_arrays(small_env):
    realms, n = 2, small_env.n_agents
    benv = BatchEnv(small_env, n_realms=realms)
    obs, _ = benv.reset(seed=0)
    for field, shape in small_env.observation_shapes.items():
        assert obs[field].shape == (realms,) + shape
    assert not np.array_equal(np.asarray(benv.realms.tiles[0]), np.asarray(benv.realms.tiles[1]))
    zeros = np.zeros((realms, n), np.int64)
    obs, reward, done, info = benv.step({"move": zeros, "style": zeros, "target": zeros})
    assert reward.shape == done.shape == info["lifetime"].shape == (realms, n)
    assert info["pop_alive"].shape == (realms, small_env.n_pops)

    slot = int(np.flatnonzero(obs["alive"][1])[0])
    move = zeros.copy()
    move[1, slot] = 9
    with pytest.raises(ValueError, match=f"^realm 1: agent_{slot}: move 9"):
        benv.step({"move": move, "style": zeros, "target": zeros})
    far = small_env.n_entities - 1  # an empty entity slot: two agents live per realm
    target = zeros.copy()
    target[0, int(np.flatnonzero(obs["alive"][0])[0])] = far
    with pytest.raises(ValueError, match="must be integers of shape"):
        benv.step({"move": zeros[0], "style": zeros, "target": zeros})
    assert int(benv.realms.tick[0]) == 1
    benv.step({"move": zeros, "style": zeros, "target": target})  # no attack
    assert int(benv.realms.tick[0]) == 2
    benv.strict = True
    with pytest.raises(ValueError, match=f"^realm 0: agent_.*: target slot {far} cannot"):
        benv.step({"move": zeros, "style": zeros, "target": target})
    assert int(benv.realms.tick[0]) == 2
