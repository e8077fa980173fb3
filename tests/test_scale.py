"""The trainer over several devices and processes: a run on 4 (forced CPU) devices and a
run of 2 processes on localhost equal the 1-device run with the same global batch.

Each configuration runs in its own Python process, since the device count and the
distributed runtime are fixed when JAX starts. Every run trains SCALE (4 realms, one
minibatch per epoch, 4 updates) from the same seed.

Tolerance: the discrete outcome (deaths, lifetimes, live agent-steps, rewards, tiles
explored, gradient steps) must be equal exactly: one action sampled differently would
change it. The float results (parameters, losses, values) may differ by the order in
which float32 sums are taken (each device sums its realms, then the devices' sums are
added, over processes by the CPU collectives); over SCALE's 4 updates the parameters
differ by at most 1.6e-6 on 4 devices and 6e-7 over 2 processes (measured), and the
check allows atol 1e-5 plus rtol 1e-4 of them; the metrics, rounded to 5 decimals when
written, came out equal, and the check allows 2e-5.
"""

import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCALE = ["--agents", "16", "--pops", "4", "--map-size", "32", "--lava-border", "3",
         "--entities", "8", "--realms", "4", "--rollout", "8", "--chunk", "2",
         "--total-steps", str(16 * 4 * 8 * 4), "--epochs", "2", "--minibatch-size", "128",
         "--lr", "3e-3", "--checkpoint-every", "2", "--eval-ticks", "0", "--no-progress"]
# Metrics that only count what happened in the realms: equal bit for bit when every
# action is the same.
EXACT = ("update", "steps", "deaths", "died_lava", "died_starvation", "died_combat",
         "lifetime", "alive", "live_steps", "reward", "explored", "grad_steps")
TIMINGS = ("time_s", "steps_per_s", "live_steps_per_s")

# Trains SCALE on 1 device and, twice, on 4 devices (one compiled program each); saves
# each run's parameters and metric rows; then checks that --devices names a bad split.
ON_FOUR_DEVICES = textwrap.dedent("""
    import contextlib, dataclasses, io, json, sys
    from pathlib import Path
    import jax, numpy as np
    from train.ppo import make_train
    from train.train import main, parse_args, train

    folder, argv = Path(sys.argv[1]), sys.argv[2:]
    assert jax.device_count() == 4

    def run(config, trainer, name):
        config = dataclasses.replace(config, out=str(folder / name))
        runner, rows = train(config, progress=False, trainer=trainer)
        np.savez(folder / f"{name}.npz", *jax.tree.leaves(jax.device_get(runner.params)))
        (folder / f"{name}.json").write_text(json.dumps(rows))
        return runner

    for devices in (1, 4):
        config, _ = parse_args(argv + ["--devices", str(devices)])
        trainer = make_train(config)
        runner = run(config, trainer, f"devices{devices}")
        assert len(runner.env_state.agents.health.sharding.device_set) == devices
    run(config, trainer, "devices4_again")  # the same 4-device program, run again
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.suppress(SystemExit):
        main(argv + ["--realms", "6", "--out", str(folder / "bad")])
    (folder / "bad_split.txt").write_text(err.getvalue())
""")

# One of the processes of a run: joins it, trains half of SCALE, resumes to the end (every
# process reads the checkpoint process 0 wrote) and saves its own parameters in a folder.
ONE_PROCESS = textwrap.dedent("""
    import dataclasses, sys
    from pathlib import Path
    import jax, numpy as np
    from train.ppo import make_train
    from train.train import build_parser, join_processes, parse_args, train

    folder, argv = Path(sys.argv[1]), sys.argv[2:]
    join_processes(build_parser().parse_args(argv))
    config, _ = parse_args(argv)
    trainer = make_train(config)
    train(dataclasses.replace(config, total_steps=config.total_steps / 2), progress=False,
          trainer=trainer)
    runner, rows = train(config, resume=True, progress=False, trainer=trainer)
    assert (len(rows) == 4) == (jax.process_index() == 0)
    np.savez(folder / f"process{jax.process_index()}.npz",
             *jax.tree.leaves(jax.device_get(runner.params)))
""")


def _python(code: str, args: list[str], devices: int = 1) -> subprocess.Popen:
    """`python -c code args` on `devices` CPU devices (`code` "" runs train/train.py)."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo",
               JAX_THREEFRY_PARTITIONABLE="1",  # the default from JAX 0.5
               XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}")
    program = ["-c", code] if code else [str(ROOT / "train" / "train.py")]
    return subprocess.Popen([sys.executable, *program, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float, returncode: int = 0) -> str:
    """Waits for `proc` (killed after `timeout` s) and returns its stderr."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        pytest.fail(f"no result in {timeout} s: {err[-3000:]}")
    assert proc.returncode == returncode, err[-3000:]
    return err


def _processes(code: str, args: list[str], out: Path, timeout: float, returncode: int = 0
               ) -> list[str]:
    """Runs `code` (or train/train.py) as the 2 processes of one run on localhost; returns
    their stderr."""
    with socket.socket() as sock:  # a free port for the coordinator
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    procs = [_python(code, [*args, "--out", str(out), "--coordinator", f"127.0.0.1:{port}",
                            "--num-processes", "2", "--process-id", str(i)])
             for i in range(2)]
    try:
        return [_finish(proc, timeout, returncode) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory) -> Path:
    """The folder of the ON_FOUR_DEVICES runs."""
    folder = tmp_path_factory.mktemp("four_devices")
    _finish(_python(ON_FOUR_DEVICES, [str(folder), *SCALE], devices=4), timeout=400)
    return folder


def _params(path: Path) -> list[np.ndarray]:
    with np.load(path) as saved:
        return [saved[f"arr_{i}"] for i in range(len(saved.files))]


def _untimed(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in TIMINGS} for row in rows]


def _assert_same_run(rows, params, reference_rows, reference_params) -> None:
    """Equal to the reference run: the outcome exactly, floats within the tolerance."""
    assert [r["update"] for r in rows] == [r["update"] for r in reference_rows] == [1, 2, 3, 4]
    for row, reference in zip(rows, reference_rows, strict=True):
        assert row.keys() == reference.keys()
        for name in row.keys() - set(TIMINGS):
            if name.removesuffix("_pop") in EXACT:
                assert row[name] == reference[name], (row["update"], name)
            else:  # rounded to 5 decimals when written
                np.testing.assert_allclose(row[name], reference[name], rtol=1e-4, atol=2e-5,
                                           err_msg=f"update {row['update']}: {name}")
    for leaf, reference in zip(params, reference_params, strict=True):
        np.testing.assert_allclose(leaf, reference, rtol=1e-4, atol=1e-5)


def test_four_devices_train_the_one_device_run(four_devices):
    one = json.loads((four_devices / "devices1.json").read_text())
    four = json.loads((four_devices / "devices4.json").read_text())
    _assert_same_run(four, _params(four_devices / "devices4.npz"),
                     one, _params(four_devices / "devices1.npz"))
    assert not all(np.array_equal(a, b) for a, b in zip(  # the devices summed in their order
        _params(four_devices / "devices4.npz"), _params(four_devices / "devices1.npz"),
        strict=True))


def test_a_run_on_four_devices_is_bitwise_reproducible(four_devices):
    first = json.loads((four_devices / "devices4.json").read_text())
    again = json.loads((four_devices / "devices4_again.json").read_text())
    assert _untimed(first) == _untimed(again)
    for a, b in zip(_params(four_devices / "devices4.npz"),
                    _params(four_devices / "devices4_again.npz"), strict=True):
        np.testing.assert_array_equal(a, b)


def test_realms_that_do_not_divide_by_the_devices_are_refused(four_devices):
    message = (four_devices / "bad_split.txt").read_text()
    assert ("realms (6) must divide evenly by the device count (4): each device steps "
            "realms / devices realms; use --realms 8 or --devices 3") in message
    assert not (four_devices / "bad").exists()


def test_two_processes_train_one_run(four_devices, tmp_path):
    """Two processes on localhost, one CPU device each, train SCALE with a checkpoint and
    a resume in between: both end with the same parameters, and process 0's metrics are
    those of the 1-device run."""
    out = tmp_path / "run"
    _processes(ONE_PROCESS, [str(tmp_path), *SCALE], out, timeout=300)
    first, second = _params(tmp_path / "process0.npz"), _params(tmp_path / "process1.npz")
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    _assert_same_run(rows, first, json.loads((four_devices / "devices1.json").read_text()),
                     _params(four_devices / "devices1.npz"))
    assert sorted(path.name for path in out.iterdir()) == [
        "checkpoint.msgpack", "config.json", "metrics.jsonl"]


def test_when_process_0_cannot_start_every_process_stops(tmp_path):
    """train.py in 2 processes on a folder that holds another file: process 0 refuses it,
    and process 1 stops too instead of waiting for process 0 in a collective."""
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("not a run")
    lead, other = _processes("", SCALE, out, timeout=120, returncode=1)
    assert "already holds notes.txt: pass --resume" in lead
    assert "error: process 0 stopped the run; see its error" in other
    assert [path.name for path in out.iterdir()] == ["notes.txt"]
