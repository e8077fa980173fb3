"""The trainer (train/): compiled updates, masking of empty slots, exact resume, checkpoint
errors, the CLI, and a short learning run.

Everything runs one tiny config (32 x 32 map, 16 slots in 4 populations) whose update
program is compiled once for the whole module.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nmmo_jax.config import REWARD_MODES
from train import checkpoint
from train.evaluate import Competitor, evaluate
from train.networks import ActionDist
from train.populations import act_live, apply_populations, from_pops, init_populations, to_pops
from train.ppo import TrainConfig, make_train, ppo_loss
from train.train import metric_rows, parse_args, train

TINY = TrainConfig(map_size=32, lava_border=3, agents=16, pops=4, entities=8, realms=4,
                   rollout=16, chunk=5, epochs=2, minibatch_size=64,
                   lr=3e-3, total_steps=16 * 4 * 16 * 10, checkpoint_every=5, eval_ticks=0)
LEARN_UPDATES = 30


@pytest.fixture(scope="module")
def trainer():
    return make_train(TINY)


@pytest.fixture(scope="module")
def first_chunks(trainer):
    """The runner after init, one chunk and two chunks, and the chunks' metrics."""
    runner0 = trainer.init(jax.random.key(0))
    runner1, metrics1 = trainer.run(runner0)
    runner2, metrics2 = trainer.run(runner1)
    return runner0, runner1, runner2, metrics1, metrics2


@pytest.fixture(scope="module")
def forward(trainer):
    """Every slot's policy output for a runner's current observation, [B, N, ...]."""
    apply = jax.jit(lambda p, o: apply_populations(trainer.network, p, o))
    return lambda runner: apply(runner.params, runner.obs)


def tree_equal(a, b) -> bool:
    same = jax.tree.map(lambda x, y: bool(np.array_equal(np.asarray(x), np.asarray(y))),
                        _data(a), _data(b))
    return all(jax.tree.leaves(same))


def _data(tree):
    return jax.tree.map(lambda x: jax.random.key_data(x) if jax.dtypes.issubdtype(
        x.dtype, jax.dtypes.prng_key) else x, tree)


def test_updates_have_finite_metrics_and_do_not_retrace(trainer, first_chunks):
    runner0, runner1, runner2, metrics1, metrics2 = first_chunks
    assert trainer.traces == 1
    assert int(runner2.update) == 2 * TINY.chunk
    for metrics in (metrics1, metrics2):
        for name, value in metrics.items():
            assert value.shape == (TINY.chunk, TINY.pops), name
            assert np.all(np.isfinite(value)), name
    assert not tree_equal(runner0.params, runner2.params)


def test_the_whole_run_as_one_program_matches_the_chunks(trainer, first_chunks):
    """`trainer(key)` (init and every update in one jit) = init + `run` chunk by chunk."""
    assert TINY.num_updates == 2 * TINY.chunk
    final, metrics = trainer(jax.random.key(0))
    assert metrics["lifetime"].shape == (TINY.num_updates, TINY.pops)
    chunked = first_chunks[2]
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(chunked.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_population_split_round_trips_and_follows_slot_modulo():
    x = jnp.arange(2 * 12).reshape(2, 12)  # [B, N], value = slot index + 12 * realm
    split = to_pops(x, 4, axis=1)  # [P, B, N/P]
    assert split.shape == (4, 2, 3)
    assert np.all(np.asarray(split[:, 0] % 4) == np.arange(4)[:, None])
    assert np.array_equal(from_pops(split, 1), x)


def test_each_population_acts_with_its_own_parameters(trainer, first_chunks, forward):
    runner = first_chunks[0]
    out = forward(runner)  # [B, N]
    one = jax.tree.map(lambda x: x[2], runner.params)  # population 2's parameters
    single = jax.jit(trainer.network.apply)(
        one, jax.tree.map(lambda x: x[:, 2::TINY.pops], runner.obs))
    assert np.allclose(out.value[:, 2::TINY.pops], single.value, atol=1e-5)
    assert np.allclose(out.move_logits[:, 2::TINY.pops], single.move_logits, atol=1e-5)


def test_same_init_gives_identical_populations(trainer, first_chunks):
    obs = first_chunks[0].obs
    params = jax.jit(lambda k: init_populations(trainer.network, k, obs, 3, same_init=True))(
        jax.random.key(3))
    for leaf in jax.tree.leaves(params):
        assert np.array_equal(leaf[0], leaf[1]) and np.array_equal(leaf[0], leaf[2])


def test_illegal_targets_are_never_sampled(first_chunks, forward):
    runner = first_chunks[1]
    actions = ActionDist(forward(runner)).sample(jax.random.key(1))
    legal = jnp.take_along_axis(runner.obs.target_mask, actions.style[..., None, None], axis=-2
                                )[..., 0, :]
    assert np.all(np.take_along_axis(np.asarray(legal), np.asarray(actions.target)[..., None],
                                     axis=-1))


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_acting_on_live_slots_only_matches_the_full_forward(trainer, first_chunks, forward,
                                                            chunk):
    """Whatever the chunk, every live slot gets its own population's value and a legal
    action; empty slots get zeros."""
    runner = first_chunks[1]
    slots = np.arange(runner.obs.alive.size).reshape(runner.obs.alive.shape)
    runner = runner.replace(obs=runner.obs.replace(  # empty some slots, unevenly by population
        alive=runner.obs.alive & jnp.asarray((slots % 3 != 0) & (slots % 7 != 1))))
    acted = act_live(trainer.network, runner.params, runner.obs, jax.random.key(3), chunk)
    full = forward(runner)
    alive = np.asarray(runner.obs.alive)
    assert 0 < alive.sum() < alive.size
    np.testing.assert_allclose(np.asarray(acted.value)[alive], np.asarray(full.value)[alive],
                               rtol=1e-5, atol=1e-5)
    expected = ActionDist(full).log_prob(acted.actions)
    np.testing.assert_allclose(np.asarray(acted.log_prob)[alive], np.asarray(expected)[alive],
                               rtol=1e-4, atol=1e-4)
    for leaf in (acted.value, acted.log_prob, *jax.tree.leaves(acted.actions)):
        assert not np.asarray(leaf)[~alive].any()


def test_each_epoch_steps_through_the_live_samples(first_chunks):
    metrics = first_chunks[3]
    live = np.asarray(metrics["live_steps"])  # [updates, P]
    steps = -(-live.max(axis=1) // TINY.minibatch_size) * TINY.epochs
    np.testing.assert_array_equal(np.asarray(metrics["grad_steps"])[:, 0], steps)


def test_an_empty_slot_contributes_nothing_to_the_loss(trainer, first_chunks, forward):
    """Perturbing the observation, action, reward and value of a dead slot's sample
    changes neither the loss nor its gradients."""
    runner, pop = next((r, p) for r in first_chunks[:3] for p in range(TINY.pops)
                       if 0 < int(to_pops(r.obs.alive, TINY.pops, 1)[p].sum()) < TINY.realms
                       * TINY.agents // TINY.pops)  # a population with live and empty slots
    out = forward(runner)
    dist = ActionDist(out)
    actions = dist.sample(jax.random.key(2))
    batch = _population_batch(runner.obs, actions, dist.log_prob(actions), out.value, pop)
    valid = np.asarray(batch.valid)
    dead = int(np.flatnonzero(~valid)[0])
    params = jax.tree.map(lambda x: x[pop], runner.params)
    advantage = jnp.linspace(-1.0, 1.0, valid.size)
    target = jnp.linspace(0.0, 2.0, valid.size)

    def loss_and_grads(batch, advantage, target):
        return jax.value_and_grad(
            lambda p: ppo_loss(trainer.network, TINY, p, batch, advantage, target)[0])(params)

    loss_and_grads = jax.jit(loss_and_grads)
    base = loss_and_grads(batch, advantage, target)
    noisy = jax.tree.map(lambda x: x, batch)
    obs = noisy.obs.replace(
        tiles=noisy.obs.tiles.at[dead].set(5), counts=noisy.obs.counts.at[dead].set(9),
        own=noisy.obs.own.at[dead].set(3.0), entities=noisy.obs.entities.at[dead].set(-2.0),
        entity_mask=noisy.obs.entity_mask.at[dead].set(True))
    noisy = noisy._replace(
        obs=obs, log_prob=noisy.log_prob.at[dead].set(-30.0), value=noisy.value.at[dead].set(50.0),
        actions=noisy.actions.replace(move=noisy.actions.move.at[dead].set(3),
                                      style=noisy.actions.style.at[dead].set(2)))
    perturbed = loss_and_grads(noisy, advantage.at[dead].set(1e3), target.at[dead].set(-1e3))
    assert float(base[0]) == float(perturbed[0])
    assert tree_equal(base[1], perturbed[1])


def _population_batch(obs, actions, log_prob, value, pop):
    """Population `pop`'s samples of one tick, leaves [B * N / P, ...], as a Transition."""
    from train.ppo import Transition

    def take(x):
        x = to_pops(x, TINY.pops, axis=1)[pop]
        return x.reshape((-1,) + x.shape[2:])

    step = Transition(obs, actions, log_prob, value, jnp.zeros_like(value),
                      jnp.zeros(value.shape, bool), obs.alive)
    return jax.tree.map(take, step)


def test_resume_equals_an_uninterrupted_run(trainer, first_chunks, tmp_path):
    runner0, runner1, runner2, _, metrics2 = first_chunks
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, runner1, TINY, {"time_s": 1.0})
    template = trainer.init(jax.random.key(99))
    restored, meta = checkpoint.restore(path, template, TINY)
    assert meta == {"time_s": 1.0}
    assert tree_equal(restored, runner1)
    resumed, metrics = trainer.run(restored)
    assert tree_equal(resumed, runner2)
    assert tree_equal(metrics, metrics2)


def test_cli_resume_writes_the_same_run(trainer, tmp_path):
    """train.py's loop: 10 updates in one go equal 5, stop, --resume to 10."""
    whole = dataclasses.replace(TINY, out=str(tmp_path / "whole"))
    final, rows = train(whole, progress=False, trainer=trainer)
    half = dataclasses.replace(TINY, out=str(tmp_path / "half"), total_steps=TINY.total_steps / 2)
    train(half, progress=False, trainer=trainer)
    resumed = dataclasses.replace(half, total_steps=TINY.total_steps)
    final2, rows2 = train(resumed, resume=True, progress=False, trainer=trainer)
    assert tree_equal(final.params, final2.params)
    assert tree_equal(final.env_state, final2.env_state)
    logged = [json.loads(line) for line in open(tmp_path / "half" / "metrics.jsonl")]
    assert [r["update"] for r in logged] == list(range(1, 11))
    drop = {"time_s", "steps_per_s", "live_steps_per_s"}
    assert ([{k: v for k, v in r.items() if k not in drop} for r in rows]
            == [{k: v for k, v in r.items() if k not in drop} for r in logged])


def test_checkpoint_errors_are_clear(trainer, first_chunks, tmp_path):
    runner = first_chunks[1]
    path = tmp_path / "ckpt.msgpack"
    checkpoint.save(path, runner, TINY)
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    (tmp_path / "corrupt.msgpack").write_bytes(bytes(blob))
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.restore(tmp_path / "corrupt.msgpack", runner, TINY)
    (tmp_path / "short.msgpack").write_bytes(path.read_bytes()[:100])
    with pytest.raises(checkpoint.CheckpointError, match="corrupt"):
        checkpoint.restore(tmp_path / "short.msgpack", runner, TINY)
    (tmp_path / "other.msgpack").write_bytes(b"hello")
    with pytest.raises(checkpoint.CheckpointError, match="not an nmmo-jax checkpoint"):
        checkpoint.restore(tmp_path / "other.msgpack", runner, TINY)
    with pytest.raises(checkpoint.CheckpointError, match="lr"):
        checkpoint.restore(path, runner, dataclasses.replace(TINY, lr=1.0))
    wider = jax.tree.map(lambda x: x, runner)
    wider = wider.replace(params=jax.tree.map(lambda x: jnp.zeros(x.shape[:1] + (3,) + x.shape[1:]),
                                              runner.params))
    with pytest.raises(checkpoint.CheckpointError, match="shape"):
        checkpoint.restore(path, wider)


def test_cli_flags_reach_the_config():
    config, args = parse_args([
        "--preset", "law", "--agents", "32", "--pops", "2", "--map-size", "40",
        "--total-steps", "5e6", "--realms", "64", "--lr", "3e-4", "--same-init",
        "--algo", "pg", "--out", "runs/x", "--resume"])
    assert (config.preset, config.agents, config.pops, config.map_size) == ("law", 32, 2, 40)
    assert (config.total_steps, config.realms, config.lr) == (5e6, 64, 3e-4)
    assert config.same_init and config.algo == "pg" and config.out == "runs/x" and args.resume
    env_cfg = config.env_config()
    assert (env_cfg.n_agents, env_cfg.n_pops, env_cfg.map_size) == (32, 2, 40)
    assert int(env_cfg.params.reward_mode) == REWARD_MODES["alive"]
    defaults, _ = parse_args([])
    assert defaults == TrainConfig()


def test_metric_rows_weigh_lifetime_by_deaths():
    metrics = {"lifetime": np.array([[10.0, 40.0]]), "deaths": np.array([[3.0, 1.0]]),
               "live_steps": np.array([[5.0, 5.0]])}
    config = dataclasses.replace(TINY, pops=2)
    row = metric_rows(metrics, 0, 1.0, 1.0, config)[0]
    assert row["lifetime"] == pytest.approx((30 + 40) / 4)
    assert row["lifetime_pop"] == [10.0, 40.0]


@pytest.fixture(scope="module")
def trained(trainer, first_chunks):
    """The populations after LEARN_UPDATES updates (continuing `first_chunks`)."""
    runner = first_chunks[2]
    while int(runner.update) < LEARN_UPDATES:
        runner, _ = trainer.run(runner)
    return Competitor("trained", trainer.network, runner.params, TINY)


def test_a_short_run_learns_to_live_longer(trainer, first_chunks, trained):
    """A few seconds of training beat the untrained populations' lifetime clearly."""
    untrained = Competitor("untrained", trainer.network, first_chunks[0].params, TINY)
    key = jax.random.key(5)
    before = evaluate([untrained], key, realms=8, ticks=100)["competitors"][0]["lifetime"]
    after = evaluate([trained], key, realms=8, ticks=100)["competitors"][0]["lifetime"]
    assert after > 1.5 * before, (before, after)


def test_tournament_ranks_the_trained_populations_first(trainer, first_chunks, trained):
    untrained = Competitor("untrained", trainer.network, first_chunks[0].params, TINY)
    result = evaluate([untrained, trained], jax.random.key(6), realms=8, ticks=100, agents=16)
    assert [row["name"] for row in result["competitors"]] == ["trained", "untrained"]
    assert len(result["population_lifetime"]) == 2 * TINY.pops
