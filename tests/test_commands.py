"""The installed commands (`nmmo-train`, `nmmo-eval`, `nmmo-render`) start from a fresh
process and explain every flag: its help, its default and, for a choice, its choices."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def help_text(*command: str) -> str:
    result = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def flags(text: str) -> dict[str, str]:
    """Each option of an argparse help's "options" section and its help text."""
    section = text.split("options:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", "\n" + section)
    table = {}
    for entry in filter(str.strip, entries):
        first, *more = entry.strip().splitlines()
        head, _, rest = first.partition("  ")
        name = re.findall(r"(?:^|\s)(--?[\w-]+)", head)[-1]
        table[name] = " ".join(" ".join([rest, *more]).split())
    return table


@pytest.mark.parametrize("name", ["nmmo-train", "nmmo-eval", "nmmo-render"])
def test_the_console_scripts_are_installed_and_start(name):
    script = BIN / name
    assert script.exists(), f"{name} is not installed; run `pip install -e .`"
    assert help_text(str(script)).startswith(f"usage: {name} ")


@pytest.mark.parametrize("name, choices", [
    ("nmmo-eval", {"--vs": "evader, fighter, forager, random"}),
    ("nmmo-render", {"--preset": "base, chaos, law",
                     "--policy": "evader, fighter, forager, random"}),
])
def test_every_flag_has_help_and_its_default(name, choices):
    table = flags(help_text(str(BIN / name)))
    for flag, text in table.items():
        if flag != "--help":
            assert "(default: " in text, f"{name} {flag}: {text!r}"
    for flag, listed in choices.items():
        assert listed in table[flag], f"{name} {flag}: {table[flag]!r}"


def test_the_module_forms_still_run():
    root = Path(__file__).resolve().parents[1]
    render = subprocess.run([sys.executable, "-m", "nmmo_jax.render", "--help"], cwd=root,
                            capture_output=True, text=True, timeout=120)
    assert render.returncode == 0 and render.stdout.startswith(
        "usage: python -m nmmo_jax.render "), render.stderr[-2000:]
    evaluate = subprocess.run([sys.executable, "-m", "train.evaluate", "--help"], cwd=root,
                              capture_output=True, text=True, timeout=120)
    assert evaluate.returncode == 0 and "--vs" in evaluate.stdout, evaluate.stderr[-2000:]
