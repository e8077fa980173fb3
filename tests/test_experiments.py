"""The paper experiments (experiments/) run end to end on a tiny setting and write their
figures and numbers. Only that they run: the findings live in the scripts' outputs.

The three share tiny training configs (4 and 8 slots in 4 populations on a 24 x 24 map),
so each trainer and measurement program compiles once for the session (`common.trainer`,
the jitted measurement): exploration compiles them, niches and tournament reuse them.
The end-to-end runs import the scripts as the package `experiments` (as `python -m`
does); running them as files is checked with `--help`.
"""

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--map-size", "24", "--lava-border", "3", "--entities", "4", "--rollout", "8",
        "--minibatch-size", "32", "--slots", "32", "--pops", "4", "--steps", "200",
        "--ticks", "20", "--eval-realms", "2"]
INTERVAL = {"mean", "ci95", "seeds"}


def run(name: str, out: Path, capsys, *flags: str) -> dict:
    """Runs experiments/NAME.py in this process; returns its JSON after checking that
    its figures exist and that the verdict is its last printed line."""
    with pytest.MonkeyPatch.context() as patch:  # the experiments are not installed
        patch.syspath_prepend(str(ROOT))
        module = importlib.import_module(f"experiments.{name}")
    module.main([*TINY, *flags, "--out", str(out)])
    numbers = json.loads((out / f"{name}.json").read_text())
    assert capsys.readouterr().out.splitlines()[-1] == numbers["verdict"]
    assert numbers["figures"] and all(Path(f).stat().st_size > 0 and f.endswith(".png")
                                      for f in numbers["figures"])
    assert {"settings", "train_config", "seconds", "machine"} <= set(numbers)
    return numbers


def test_exploration_writes_maps_coverage_and_numbers(tmp_path, capsys):
    numbers = run("exploration", tmp_path, capsys, "--agents", "4", "8", "--seeds", "2")
    assert [size["agents"] for size in numbers["sizes"]] == [4, 8]
    for size in numbers["sizes"]:
        for measures in (size, size["untrained"]):
            assert {"coverage", "tiles_per_life", "lifetime"} <= set(measures)
            assert INTERVAL == set(measures["coverage"])
        assert len(size["training"]) == 2


def test_niches_writes_maps_overlap_and_numbers(tmp_path, capsys):
    numbers = run("niches", tmp_path, capsys, "--agents", "8", "--seeds", "1",
                  "--shuffles", "2")
    assert set(numbers["kinds"]) == {"trained", "same_init", "untrained"}
    for kind in numbers["kinds"].values():
        assert {"jsd", "jsd_shuffled", "jsd_excess", "majority", "majority_shuffled",
                "majority_excess", "lifetime"} == set(kind)
        assert kind["jsd"]["ci95"] == [None, None]  # one seed: no interval


def test_tournament_writes_lifetimes_with_intervals(tmp_path, capsys):
    numbers = run("tournament", tmp_path, capsys, "--small", "4", "--large", "8",
                  "--arenas", "8", "--seeds", "2")
    assert set(numbers["arenas"]) == {"8"}
    assert set(numbers["arenas"]["8"]) == {"4", "8"}
    for side in numbers["arenas"]["8"].values():
        assert {"mean", "ci95", "deaths", "seeds"} == set(side)
    assert [len(runs) for runs in numbers["training"].values()] == [2, 2]


@pytest.mark.parametrize("name", ["exploration", "niches", "tournament"])
def test_experiment_runs_as_a_file(name):
    result = subprocess.run([sys.executable, f"experiments/{name}.py", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--steps" in result.stdout, result.stderr
