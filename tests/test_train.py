"""The trainer (train/): compiled updates, masking of empty slots, exact resume, checkpoint
errors, runs that lose nothing (no overwrite, NaN stops, SIGKILL mid-checkpoint, torn
metrics), the CLI, and a short learning run.

Everything runs one tiny config (32 x 32 map, 16 slots in 4 populations) whose update
program is compiled once for the whole module (`chex.assert_max_traces` holds it to one
trace); only the SIGKILL test compiles it again, in the process it kills.
"""

import dataclasses
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nmmo_jax.config import REWARD_MODES
from nmmo_jax.policies import evader, forager
from nmmo_jax.state import Actions
from train import checkpoint, zoo
from train.evaluate import Competitor, evaluate, load_competitor, training_lineup
from train.networks import (
    BLOCK,
    FOVEA,
    NETWORKS,
    ActionDist,
    FovealEncoder,
    PolicyOutput,
    make_network,
)
from train.populations import (
    act_live,
    action_noise,
    apply_populations,
    from_pops,
    init_populations,
    per_population,
    sample_actions,
    to_pops,
)
from train.ppo import TrainConfig, gae, make_train, ppo_loss
from train.train import (
    CHECKPOINT,
    METRICS,
    RunError,
    main,
    metric_rows,
    nonfinite,
    parse_args,
    read_metrics,
    train,
)

TINY = TrainConfig(map_size=32, lava_border=3, agents=16, pops=4, entities=8, realms=4,
                   rollout=16, chunk=5, epochs=2, minibatch_size=64,
                   lr=3e-3, total_steps=16 * 4 * 16 * 10, checkpoint_every=5, eval_ticks=0)
LEARN_UPDATES = 30


@pytest.fixture(scope="module")
def trainer():
    """The TINY trainer, its chunk program allowed a single trace for the whole module:
    every later chunk, resume and CLI run must reuse that compilation."""
    trainer = make_train(TINY)
    trainer.run = jax.jit(chex.assert_max_traces(trainer._run_chunk, n=1))
    return trainer


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
    runner3, _ = trainer.run(runner2)  # a second trace would raise here
    assert int(runner3.update) == 3 * TINY.chunk
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
    for a, b in zip(jax.tree.leaves(final.params), jax.tree.leaves(chunked.params),
                    strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_gae_by_hand_across_a_death_and_the_rollout_cut():
    # One slot, 4 ticks: an agent lives ticks 0-1 and dies on tick 1 (done); a new agent
    # spawns into the slot and lives ticks 2-3, cut by the end of the rollout.
    gamma, lam = 0.9, 0.5
    value = jnp.array([1.0, 2.0, 3.0, 4.0])[:, None]  # [T, 1]
    reward = jnp.array([1.0, 0.0, 1.0, 1.0])[:, None]
    done = jnp.array([False, True, False, False])[:, None]
    last_value = jnp.array([5.0])  # the value of the observation after the cut
    # deltas: r + gamma * V(next) * (1 - done) - V
    d3 = 1.0 + 0.9 * 5.0 - 4.0  # bootstrapped from the last value: 1.5
    d2 = 1.0 + 0.9 * 4.0 - 3.0  # 1.6
    d1 = 0.0 - 2.0  # the death: nothing after it, -2.0
    d0 = 1.0 + 0.9 * 2.0 - 1.0  # 1.8
    a3 = d3
    a2 = d2 + gamma * lam * a3  # 1.6 + 0.45 * 1.5 = 2.275
    a1 = d1  # no advantage flows back across the death from the next agent
    a0 = d0 + gamma * lam * a1  # 1.8 + 0.45 * -2.0 = 0.9
    advantage, target = gae(value, reward, done, last_value, gamma, lam)
    np.testing.assert_allclose(advantage[:, 0], [a0, a1, a2, a3], rtol=1e-6)
    np.testing.assert_allclose(target[:, 0], [a0 + 1, a1 + 2, a2 + 3, a3 + 4], rtol=1e-6)


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
    out = forward(runner)
    noise = action_noise(jax.random.key(1), runner.obs.alive.shape, TINY.entities)
    for actions in (ActionDist(out).sample(jax.random.key(1)), sample_actions(out, noise)):
        legal = jnp.take_along_axis(runner.obs.target_mask, actions.style[..., None, None],
                                    axis=-2)[..., 0, :]
        assert np.all(np.take_along_axis(np.asarray(legal),
                                         np.asarray(actions.target)[..., None], axis=-1))


def test_gumbel_max_sampling_draws_from_the_policy():
    """argmax(logits + Gumbel noise) picks each choice with its softmax probability, the
    target from the sampled style's row (40,000 draws: 3 standard errors are < 0.008)."""
    draws, k = 40_000, 3
    move = jnp.log(jnp.array([0.1, 0.2, 0.3, 0.15, 0.25]))
    style = jnp.log(jnp.array([0.5, 0.3, 0.2]))
    target = jnp.log(jnp.array([[0.7, 0.3, 1e-30], [0.2, 0.2, 0.6], [0.1, 0.1, 0.8]]))
    out = PolicyOutput(*(jnp.broadcast_to(x, (draws,) + x.shape) for x in (move, style, target)),
                       value=jnp.zeros(draws))
    actions = jax.jit(sample_actions)(out, action_noise(jax.random.key(0), (draws,), k))

    def frequencies(x: jax.Array, n: int) -> np.ndarray:
        return np.bincount(np.asarray(x), minlength=n) / x.size

    np.testing.assert_allclose(frequencies(actions.move, 5), np.exp(move), atol=0.008)
    np.testing.assert_allclose(frequencies(actions.style, 3), np.exp(style), atol=0.008)
    for s in range(3):
        chosen = np.asarray(actions.target)[np.asarray(actions.style) == s]
        np.testing.assert_allclose(frequencies(chosen, k), np.exp(target[s]), atol=0.015)


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_acting_on_live_slots_only_matches_the_full_forward(trainer, first_chunks, forward,
                                                            chunk):
    """Whatever the chunk, every live slot gets its own population's value and the action
    its own logits and noise draw (the same for every chunk, so for every split of the
    realms across devices); empty slots get zeros."""
    runner = first_chunks[1]
    slots = np.arange(runner.obs.alive.size).reshape(runner.obs.alive.shape)
    runner = runner.replace(obs=runner.obs.replace(  # empty some slots, unevenly by population
        alive=runner.obs.alive & jnp.asarray((slots % 3 != 0) & (slots % 7 != 1))))
    noise = action_noise(jax.random.key(3), runner.obs.alive.shape, TINY.entities)
    acted = act_live(trainer.network, runner.params, trainer.network.inputs(runner.obs),
                     runner.obs.alive, noise, chunk)
    full = forward(runner)
    alive = np.asarray(runner.obs.alive)
    assert 0 < alive.sum() < alive.size
    for got, drawn in zip(jax.tree.leaves(acted.actions),
                          jax.tree.leaves(sample_actions(full, noise)), strict=True):
        np.testing.assert_array_equal(np.asarray(got)[alive], np.asarray(drawn)[alive])
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
    batch = _population_batch(trainer.network.inputs(runner.obs), runner.obs.alive, actions,
                              dist.log_prob(actions), out.value, pop)
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
    inputs = jax.tree.map(  # junk in every field the network reads of the dead sample
        lambda x: x.at[dead].set(True if x.dtype == jnp.bool_ else 5), noisy.inputs)
    noisy = noisy._replace(
        inputs=inputs, log_prob=noisy.log_prob.at[dead].set(-30.0),
        value=noisy.value.at[dead].set(50.0),
        actions=noisy.actions.replace(move=noisy.actions.move.at[dead].set(3),
                                      style=noisy.actions.style.at[dead].set(2)))
    perturbed = loss_and_grads(noisy, advantage.at[dead].set(1e3), target.at[dead].set(-1e3))
    assert float(base[0]) == float(perturbed[0])
    assert tree_equal(base[1], perturbed[1])


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_a_network_reads_its_stored_inputs_as_it_reads_the_observation(small_env, key, name):
    """The trainer stores `network.inputs(obs)` for each sample; the network gives the
    same outputs from them as from the observation itself."""
    obs, _ = small_env.reset(key)
    network = make_network(name, None, 3.0)
    params = network.init(jax.random.key(1), obs)
    for got, want in zip(jax.jit(network.apply)(params, network.inputs(obs)),
                         network.apply(params, obs), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_foveal_inputs_are_the_centre_tiles_then_the_block_sums():
    rng = np.random.default_rng(0)
    tiles = rng.integers(0, 7, (2, 15, 15)).astype(np.int8)
    counts = rng.integers(0, 127, (2, 15, 15)).astype(np.int8)
    cells = np.asarray(FovealEncoder.inputs(jnp.asarray(tiles), jnp.asarray(counts)))
    centre = (2 * FOVEA + 1) ** 2
    assert cells.shape == (2, centre + 25, 8) and cells.dtype == np.int16

    def channels(t, c):  # one-hot tile id and count of a group of tiles, summed
        return np.concatenate([np.eye(7, dtype=np.int64)[t.ravel()].sum(0), [c.astype(int).sum()]])

    row, col = 7 - FOVEA + 1, 7 - FOVEA + 3  # the centre's cell 1 * 5 + 3
    np.testing.assert_array_equal(cells[1, 1 * 5 + 3], channels(tiles[1, row, col],
                                                                 counts[1, row, col]))
    block = np.s_[1, 3 * BLOCK:4 * BLOCK, 2 * BLOCK:3 * BLOCK]  # block row 3, column 2
    np.testing.assert_array_equal(cells[1, centre + 3 * 5 + 2],
                                  channels(tiles[block], counts[block]))


def _population_batch(inputs, alive, actions, log_prob, value, pop):
    """Population `pop`'s samples of one tick, leaves [B * N / P, ...], as a Transition."""
    from train.ppo import Transition

    def take(x):
        x = to_pops(x, TINY.pops, axis=1)[pop]
        return x.reshape((-1,) + x.shape[2:])

    step = Transition(inputs, actions, log_prob, value, jnp.zeros_like(value),
                      jnp.zeros(value.shape, bool), alive)
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


@pytest.fixture(scope="module")
def whole_run(trainer, tmp_path_factory):
    """train.py's loop over TINY's 10 updates in one go: (final runner, metric rows)."""
    whole = dataclasses.replace(TINY, out=str(tmp_path_factory.mktemp("whole")))
    return train(whole, progress=False, trainer=trainer)


def _half_run(trainer, out: Path) -> TrainConfig:
    """Trains TINY's first 5 updates (one checkpoint) into `out`; returns TINY's config
    with `out`, ready to resume to 10 updates."""
    train(dataclasses.replace(TINY, out=str(out), total_steps=TINY.total_steps / 2),
          progress=False, trainer=trainer)
    return dataclasses.replace(TINY, out=str(out))


def _assert_same_run(whole_run, final, rows) -> None:
    """`final` and `rows` equal the uninterrupted run's, bit for bit (timings aside)."""
    assert tree_equal(whole_run[0], final)
    drop = {"time_s", "steps_per_s", "live_steps_per_s"}
    assert ([{k: v for k, v in r.items() if k not in drop} for r in whole_run[1]]
            == [{k: v for k, v in r.items() if k not in drop} for r in rows])


def test_cli_resume_writes_the_same_run(trainer, whole_run, tmp_path):
    """train.py's loop: 10 updates in one go equal 5, stop, --resume to 10."""
    config = _half_run(trainer, tmp_path / "half")
    final, rows = train(config, resume=True, progress=False, trainer=trainer)
    logged = read_metrics(tmp_path / "half" / METRICS)
    assert [r["update"] for r in logged] == list(range(1, 11))
    _assert_same_run(whole_run, final, logged)
    assert rows == logged


def test_a_folder_that_holds_a_run_is_never_overwritten(trainer, tmp_path, capsys):
    out = tmp_path / "run"
    config = _half_run(trainer, out)
    kept = {name: (out / name).read_bytes() for name in (CHECKPOINT, METRICS, "config.json")}
    again = dataclasses.replace(config, total_steps=3000.0)
    with pytest.raises(RunError, match=rf"{re.escape(str(out))} already holds checkpoint.msgpack, "
                                       rf"config.json, metrics.jsonl: pass --resume to "
                                       rf"continue the run there or --overwrite to replace it"):
        train(again, progress=False, trainer=trainer)
    with pytest.raises(SystemExit, match=rf"error: {re.escape(str(out))} already holds"):
        main(_flags(again) + ["--no-progress"])
    assert {name: (out / name).read_bytes() for name in kept} == kept
    (out / "notes.txt").write_text("not the run's")
    capsys.readouterr()
    _, rows = train(again, progress=False, trainer=trainer, overwrite=True)
    # 3000 slot-steps are 2.9 updates of 1024: rounded up to one chunk of 5 updates.
    assert ("total_steps 3,000 rounded up to 5 whole updates in chunks of 5: 5,120 slot-steps"
            in capsys.readouterr().out)
    assert [r["update"] for r in read_metrics(out / METRICS)] == [1, 2, 3, 4, 5]
    assert (out / "notes.txt").read_text() == "not the run's"
    with pytest.raises(ValueError, match="resume and overwrite exclude each other"):
        train(again, resume=True, overwrite=True, trainer=trainer)


def test_a_folder_with_any_file_needs_overwrite(tmp_path):
    (tmp_path / "data.csv").write_text("1,2")
    with pytest.raises(RunError, match="already holds data.csv"):
        train(dataclasses.replace(TINY, out=str(tmp_path)), progress=False)


def test_nonfinite_names_the_arrays_that_hold_nan(first_chunks):
    runner, metrics = first_chunks[1], first_chunks[3]
    assert nonfinite(runner, metrics) == []
    (path, leaf), *_ = jax.tree_util.tree_flatten_with_path(runner.params)[0]
    poisoned = runner.replace(params=jax.tree_util.tree_map_with_path(
        lambda p, x: x.at[0].set(jnp.inf) if p == path else x, runner.params))
    metrics = {**metrics, "value_loss": metrics["value_loss"].at[1, 2].set(jnp.nan)}
    assert nonfinite(poisoned, metrics) == ["metrics['value_loss']",
                                            "params" + jax.tree_util.keystr(path)]


def test_a_chunk_with_nan_stops_the_run_and_keeps_the_last_good_checkpoint(
        trainer, tmp_path, monkeypatch):
    out = tmp_path / "run"
    config = _half_run(trainer, out)
    good = (out / CHECKPOINT).read_bytes()
    run = trainer.run

    def poisoned(runner):  # one NaN weight in population 0 spreads through the update
        first, *rest = jax.tree.leaves(runner.params)
        params = jax.tree.unflatten(jax.tree.structure(runner.params),
                                    [first.at[0].set(jnp.nan), *rest])
        return run(runner.replace(params=params))

    monkeypatch.setattr(trainer, "run", poisoned)
    with pytest.raises(RunError, match=r"updates 6-10 produced NaN or inf in metrics\[.*more; "
                                       r"stopped without writing them, and the last good "
                                       r"checkpoint \(update 5\) is kept"):
        train(config, resume=True, progress=False, trainer=trainer)
    assert (out / CHECKPOINT).read_bytes() == good
    assert [r["update"] for r in read_metrics(out / METRICS)] == [1, 2, 3, 4, 5]


def test_resume_drops_a_torn_last_metrics_line(trainer, whole_run, tmp_path):
    config = _half_run(trainer, tmp_path / "run")
    with open(tmp_path / "run" / METRICS, "a") as f:
        f.write('{"update": 6, "steps": 61')  # a kill in the middle of a row
    with pytest.warns(RuntimeWarning, match="dropped its last line, cut short"):
        final, rows = train(config, resume=True, progress=False, trainer=trainer)
    _assert_same_run(whole_run, final, rows)


def test_a_broken_metrics_line_before_the_last_is_an_error(tmp_path):
    path = tmp_path / METRICS
    path.write_text('{"update": 1}\n{"upd\n{"update": 3}\n')
    with pytest.raises(RunError, match=rf"{re.escape(str(path))}, line 2: not a JSON row"):
        read_metrics(path)


def _flags(config: TrainConfig) -> list[str]:
    """The train.py command line of `config`."""
    argv = []
    for field in dataclasses.fields(config):
        value, flag = getattr(config, field.name), "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else "--no-" + flag[2:])
        else:
            argv += [flag, str(value)]
    return argv


# Runs train.py's main and hangs in the second checkpoint write with half the file on
# disk, after touching the marker file: the test's SIGKILL lands mid-write.
KILLED_IN_A_WRITE = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from train import checkpoint, train

    marker, argv = Path(sys.argv[1]), sys.argv[2:]
    tmp = checkpoint.temp_path(Path(argv[argv.index("--out") + 1]) / train.CHECKPOINT)
    saves, save, fsync = [], checkpoint.save, os.fsync

    def counted_save(*args, **kwargs):
        saves.append(1)
        return save(*args, **kwargs)

    def hang_in_second_write(fd):
        if len(saves) == 2 and tmp.exists() and os.fstat(fd).st_ino == tmp.stat().st_ino:
            os.ftruncate(fd, os.fstat(fd).st_size // 2)
            marker.touch()
            time.sleep(600)
        fsync(fd)

    checkpoint.save, os.fsync = counted_save, hang_in_second_write
    train.main(argv)
""")


def test_sigkill_during_a_checkpoint_write_then_resume_is_the_same_run(trainer, whole_run,
                                                                       tmp_path):
    out, marker = tmp_path / "run", tmp_path / "in_write"
    config = dataclasses.replace(TINY, out=str(out))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_IN_A_WRITE, str(marker), *_flags(config), "--no-progress"],
        cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 500
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the run never reached its second checkpoint"
            time.sleep(0.2)
        proc.kill()  # SIGKILL
    finally:
        proc.kill()
        proc.communicate()
    assert proc.returncode == -9
    tmp = checkpoint.temp_path(out / CHECKPOINT)
    assert 0 < tmp.stat().st_size < (out / CHECKPOINT).stat().st_size  # a torn write
    assert checkpoint.read(out / CHECKPOINT)["meta"]["update"] == 5
    final, rows = train(config, resume=True, progress=False, trainer=trainer)
    assert not tmp.exists()
    _assert_same_run(whole_run, final, rows)
    assert checkpoint.read(out / CHECKPOINT)["meta"]["update"] == 10


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


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint-every", "0"], "argument --checkpoint-every: checkpoint_every must be >= 1, "
                                  "got 0"),
    (["--total-steps", "-5"], "argument --total-steps: total_steps must be > 0, got -5.0"),
    (["--total-steps", "0"], "argument --total-steps: total_steps must be > 0, got 0.0"),
    (["--lr", "-1"], "argument --lr: lr must be > 0, got -1.0"),
    (["--ent-coef", "nan"], "argument --ent-coef: ent_coef must be a finite number, got nan"),
    (["--vf-coef", "-0.5"], "argument --vf-coef: vf_coef must be >= 0, got -0.5"),
    (["--gamma", "1.5"], "argument --gamma: gamma must be in [0, 1], got 1.5"),
    (["--gae-lambda", "-0.1"], "argument --gae-lambda: gae_lambda must be in [0, 1], got -0.1"),
    (["--clip", "0"], "argument --clip: clip must be > 0, got 0.0"),
    (["--max-grad-norm", "inf"], "argument --max-grad-norm: max_grad_norm must be a finite"),
    (["--realms", "0"], "argument --realms: realms must be >= 1, got 0"),
    (["--eval-ticks", "-1"], "argument --eval-ticks: eval_ticks must be >= 0, got -1"),
    (["--seed", str(2**32)], "argument --seed: seed must be < 2**32"),
    (["--network", "huge"], "argument --network: invalid choice: 'huge' (choose from "),
    (["--preset", "peace"], "argument --preset: invalid choice: 'peace' (choose from "),
    (["--agents", "10", "--pops", "4"], "do not make a valid realm: n_agents (10) must be "
                                        "divisible by n_pops (4)"),
    (["--resume", "--overwrite"], "--resume and --overwrite exclude each other"),
    (["--scripted", "hunter:2"], "argument --scripted: scripted names an unknown policy "
                                 "'hunter'"),
    (["--scripted", "forager:8"], "argument --scripted: scripted must leave at least one of "
                                  "the 8 populations to learn"),
    (["--devices", "-1"], "argument --devices: devices must be >= 0, got -1"),
    (["--realm-ticks", "-1"], "argument --realm-ticks: realm_ticks must be >= 0, got -1"),
    (["--networks", "3"], "argument --networks: networks must divide the 8 learning "
                          "populations evenly, got 3"),
    (["--map", "nowhere.npy"], "argument --map: map 'nowhere.npy': expected 'generated', "
                               "'original:I'"),
    (["--map", "original:3", "--map-size", "32", "--lava-border", "3"],
     "argument --map: map 'original:3': the original maps are 80 x 80"),
])
def test_cli_rejects_bad_values_naming_the_flag(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("field, value", [("agents", "16"), ("lr", None), ("same_init", 1),
                                          ("epochs", 2.0), ("chunk", True)])
def test_train_config_rejects_wrong_types_naming_the_field(field, value):
    with pytest.raises(TypeError, match=rf"^{field} must be"):
        dataclasses.replace(TINY, **{field: value})


def test_cli_flags_reach_the_config():
    config, args = parse_args([
        "--preset", "law", "--agents", "32", "--pops", "2", "--map-size", "40",
        "--total-steps", "5e6", "--realms", "64", "--lr", "3e-4", "--same-init",
        "--algo", "pg", "--out", "runs/x", "--resume", "--networks", "1"])
    assert (config.preset, config.agents, config.pops, config.map_size) == ("law", 32, 2, 40)
    assert (config.total_steps, config.realms, config.lr) == (5e6, 64, 3e-4)
    assert config.same_init and config.algo == "pg" and config.out == "runs/x" and args.resume
    assert config.networks == config.n_networks == 1
    env_cfg = config.env_config()
    assert (env_cfg.n_agents, env_cfg.n_pops, env_cfg.map_size) == (32, 2, 40)
    assert int(config.env_params().reward_mode) == REWARD_MODES["alive"]
    defaults, _ = parse_args([])
    assert defaults == TrainConfig()


def test_more_devices_than_there_are_is_a_usage_error(tmp_path, capsys):
    """The split of the realms over the devices is checked before anything runs."""
    with pytest.raises(SystemExit) as exit_info:
        main(_flags(dataclasses.replace(TINY, out=str(tmp_path / "run"), devices=2)))
    assert exit_info.value.code == 2
    assert f"devices (2) is more than the {jax.device_count()} device(s) JAX sees" in (
        capsys.readouterr().err)
    assert not (tmp_path / "run").exists()


def test_cpu_devices_split_the_cpu_before_jax_starts_and_only_then(capsys):
    """--cpu-devices makes that many CPU devices in a fresh process; here, where JAX has
    already run, and for a negative count, it is a usage error naming the flag."""
    code = ("from train.train import parse_args; parse_args(['--cpu-devices', '3']); "
            "import jax; print(jax.device_count())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=Path(__file__).parent.parent, timeout=120, check=True)
    assert done.stdout.split()[-1] == "3"
    for count, message in (("2", "must be applied before any JAX computation"),
                           ("-1", "must be >= 0")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(["--cpu-devices", count])
        assert exit_info.value.code == 2
        assert f"argument --cpu-devices: {message}" in capsys.readouterr().err


def test_the_map_option_starts_every_realm_on_that_map(first_chunks, tmp_path):
    generated = np.asarray(first_chunks[0].env_state.terrain)  # [B, H, W], one map per realm
    assert not np.array_equal(generated[0], generated[1])
    np.save(tmp_path / "map.npy", generated[1])
    config = dataclasses.replace(TINY, map=str(tmp_path / "map.npy"))
    runner = make_train(config).init(jax.random.key(0))
    assert np.array_equal(np.asarray(runner.env_state.terrain),
                          np.broadcast_to(generated[1], generated.shape))


def test_metric_rows_weigh_lifetime_by_deaths():
    metrics = {"lifetime": np.array([[10.0, 40.0]]), "deaths": np.array([[3.0, 1.0]]),
               "live_steps": np.array([[5.0, 5.0]])}
    config = dataclasses.replace(TINY, pops=2)
    row = metric_rows(metrics, 0, 1.0, 1.0, config)[0]
    assert row["lifetime"] == pytest.approx((30 + 40) / 4)
    assert row["lifetime_pop"] == [10.0, 40.0]


# Populations 2 and 3 scripted; the oldest realm restarts once it has run one rollout.
# Two learning populations that share one network, beside two scripted ones.
SCRIPTED = dataclasses.replace(TINY, scripted="forager,evader", realm_ticks=TINY.rollout,
                               networks=1)


@pytest.fixture(scope="module")
def scripted_run():
    """SCRIPTED's trainer, its runner after init and after one chunk (5 updates), and the
    chunk's metrics."""
    trainer = make_train(SCRIPTED)
    runner0 = trainer.init(jax.random.key(0))
    runner1, metrics = trainer.run(runner0)
    return trainer, runner0, runner1, jax.device_get(metrics)


def test_scripted_populations_play_their_script_on_their_own_slots(scripted_run):
    """Slots of populations 0 and 1 take the learners' actions; those of population 2 the
    forager's and of population 3 the evader's, each script run on its population's slots
    as if they were a realm of their own."""
    trainer, runner = scripted_run[0], scripted_run[2]
    obs, n = runner.obs, TINY.agents
    learned = jax.tree.map(lambda x: jnp.full((TINY.realms, n // 2), x, jnp.int32),
                           Actions(move=3, style=2, target=5))  # marks the learners' slots
    keys = jax.random.split(jax.random.key(7), TINY.realms)
    actions = jax.jit(trainer._with_scripts)(keys, obs, learned)
    population = np.arange(n) % TINY.pops
    for field in ("move", "style", "target"):
        assert np.all(np.asarray(getattr(actions, field))[:, population < 2]
                      == getattr(learned, field)[0, 0])
    for c, policy in enumerate((forager, evader)):
        own = jax.tree.map(lambda x, c=c: x[:, population == 2 + c], obs)
        expected = jax.vmap(lambda k, o, c=c, policy=policy: policy(
            jax.random.fold_in(k, c), o))(keys, own)
        for field in ("move", "style", "target"):
            np.testing.assert_array_equal(np.asarray(getattr(actions, field))[:, population
                                                                                 == 2 + c],
                                          getattr(expected, field))


def test_only_the_learning_populations_have_parameters_and_learn(scripted_run):
    trainer, runner0, runner1, metrics = scripted_run
    assert SCRIPTED.learning_pops == 2 and SCRIPTED.scripted_pops == (("forager", 1),
                                                                        ("evader", 1))
    assert {leaf.shape[0] for leaf in jax.tree.leaves(runner1.params)} == {1}  # shared
    assert not tree_equal(runner0.params, runner1.params)
    for name, value in metrics.items():
        width = 2 if name.startswith("scripted_") else SCRIPTED.learning_pops
        assert value.shape == (TINY.chunk, width), name
        assert np.all(np.isfinite(value)), name
    assert metrics["scripted_deaths"].sum() > 0
    # Live agent-steps count the learners' slots only: at most T x B x N / 2 per update.
    assert np.all(metrics["live_steps"].sum(1) <= TINY.rollout * TINY.realms * TINY.agents / 2)
    # One network plays both learning populations: one set of loss terms for both.
    np.testing.assert_array_equal(metrics["policy_loss"][:, 0], metrics["policy_loss"][:, 1])
    row = metric_rows(metrics, 0, 1.0, 1.0, SCRIPTED)[-1]
    deaths = metrics["scripted_deaths"][-1]
    assert row["scripted_lifetime"] == pytest.approx(
        (metrics["scripted_lifetime"][-1] * deaths).sum() / deaths.sum(), rel=1e-4)


def test_a_scripted_run_is_evaluated_beside_its_scripts(scripted_run, tmp_path):
    """Saved and loaded, the learners' populations meet the scripts they trained beside."""
    runner = scripted_run[2]
    zoo.save_populations(tmp_path / "p.msgpack", runner.params, SCRIPTED)
    loaded = load_competitor(tmp_path / "p.msgpack", "trained")
    assert tree_equal(loaded.params, runner.params)
    # Both populations play the one network they shared in training.
    assert tree_equal(loaded.population_params,
                      jax.tree.map(lambda x: jnp.concatenate([x, x]), runner.params))
    lineup = training_lineup(loaded)
    assert [(e.name, e.pops) for e in lineup] == [("trained", 2), ("forager", 1),
                                                  ("evader", 1)]
    result = evaluate(lineup, jax.random.key(2), realms=2, ticks=20)
    assert sorted(row["name"] for row in result["competitors"]) == ["evader", "forager",
                                                                     "trained"]


def test_the_oldest_realm_restarts_on_a_new_map_once_it_has_run_realm_ticks(scripted_run):
    """One realm per update, the first of the oldest: after update 1 the realms have run
    [16, 16, 16, 16] ticks and realm 0 restarts; after update 2, [16, 32, 32, 32] and
    realm 1 restarts; ... after update 5, [64, 48, 32, 16] and realm 0 restarts again."""
    _, runner0, runner1, _ = scripted_run
    assert np.asarray(runner1.env_state.tick).tolist() == [0, 48, 32, 16]
    before, after = np.asarray(runner0.env_state.terrain), np.asarray(runner1.env_state.terrain)
    assert all(not np.array_equal(before[r], after[r]) for r in range(TINY.realms))
    # Realm 0 is a new realm: its first spawn only, and only its spawn tile visited.
    assert int(runner1.obs.alive[0].sum()) == 1
    assert int(runner1.env_state.visits[0].sum()) == 1
    assert int(runner1.obs.alive[1:].sum()) > 3


def test_a_shared_network_learns_from_every_population_that_plays_it(scripted_run):
    """The one network of SCRIPTED's two learning populations steps through the live
    samples of both, in minibatches of minibatch_size for each population it plays."""
    trainer, metrics = scripted_run[0], scripted_run[3]
    assert trainer.nets == 1 and trainer.minibatch_size == 2 * TINY.minibatch_size
    live = metrics["live_steps"].sum(1)  # [updates], both populations
    steps = TINY.epochs * -(-live // trainer.minibatch_size)
    np.testing.assert_array_equal(metrics["grad_steps"][:, 0], steps)
    np.testing.assert_array_equal(metrics["grad_steps"][:, 1], steps)


def test_population_parameters_follow_population_modulo_networks():
    params = {"w": jnp.arange(2)[:, None] * jnp.ones((2, 3))}  # networks 0 and 1
    np.testing.assert_array_equal(per_population(params, 6)["w"][:, 0], [0, 1, 0, 1, 0, 1])
    assert tree_equal(per_population(params, 2), params)


@pytest.mark.parametrize("networks", [3, 8])
def test_networks_must_divide_the_learning_populations(networks):
    with pytest.raises(ValueError, match=re.escape(
            f"networks must divide the 4 learning populations evenly, got {networks}")):
        dataclasses.replace(TINY, networks=networks)


@pytest.mark.parametrize("scripted, message", [
    ("nobody:2", "scripted names an unknown policy 'nobody' in 'nobody:2'"),
    ("forager:0", "scripted gives 'forager' the count '0'; a count must be an int >= 1"),
    ("forager:two", "scripted gives 'forager' the count 'two'"),
    ("forager:3,evader", "scripted must leave at least one of the 4 populations to learn"),
])
def test_bad_scripted_populations_are_rejected(scripted, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        dataclasses.replace(TINY, scripted=scripted)


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
