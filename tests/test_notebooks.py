"""The notebooks run top to bottom in a fresh kernel of this interpreter, started in the
notebooks folder as Jupyter would, install the package only where it is missing, and
write nothing into the repository (their files go to a temporary folder)."""

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
NAMES = ("quickstart.ipynb", "train.ipynb")


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs ipykernel in this test's interpreter (so the kernel sees
    the same installed packages), visible only through this test's JUPYTER_PATH. The
    kernel's temporary folder is `tmp_path`, so what the notebooks write lands there."""
    name = "nmmo-jax-test"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nmmo-jax test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return name


def files_near_the_notebooks() -> set[Path]:
    """Every file where a notebook's relative paths could land: the notebooks folder,
    the repository's top level and `runs/` (the rest of the tree is left out, so that
    files made meanwhile by other processes do not count)."""
    files = {path for path in ROOT.iterdir() if path.is_file()}
    for folder in (NOTEBOOKS, ROOT / "runs"):
        files.update(path for path in folder.rglob("*") if path.is_file())
    return files


def execute(name: str, kernel_name: str) -> nbformat.NotebookNode:
    """Runs a notebook in the notebooks folder; fails if it leaves a file there, at the
    repository's top level or in `runs/`."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    before = files_near_the_notebooks()
    client = NotebookClient(notebook, timeout=300, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()
    left = sorted(str(path.relative_to(ROOT)) for path in files_near_the_notebooks() - before)
    assert not left, f"{name} wrote into the repository: {left}"
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def printed(outs: list[dict]) -> str:
    return "".join(out.get("text", "") for out in outs if out.output_type == "stream")


def shown(outs: list[dict]) -> dict[str, list[str]]:
    """Every rich output by MIME type (display, update and result messages alike)."""
    by_type: dict[str, list[str]] = {}
    for out in outs:
        for mime, data in out.get("data", {}).items():
            by_type.setdefault(mime, []).append(data)
    return by_type


def check_clean_run(outs: list[dict]) -> None:
    errors = [f"{out.ename}: {out.evalue}" for out in outs if out.output_type == "error"]
    assert not errors, errors
    assert "IProgress" not in printed(outs)


@pytest.mark.parametrize("name", NAMES)
def test_notebooks_are_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("importable, repo, gpu, package", [
    (True, None, False, None),
    (False, None, False, "nmmo-jax[notebook] @ git+https://github.com/nmmo-jax/nmmo-jax"),
    (False, None, True, "nmmo-jax[notebook,cuda] @ git+https://github.com/nmmo-jax/nmmo-jax"),
    (False, "clone", False, "{clone}[notebook]"),
])
def test_the_first_cell_installs_the_package_only_where_it_is_missing(
        name, importable, repo, gpu, package, tmp_path, monkeypatch):
    source = nbformat.read(NOTEBOOKS / name, as_version=4).cells[1].source
    assert source.startswith("# Installs nmmo-jax") and "REPO_URL = " in source
    if repo:
        source = re.sub(r'REPO_URL = ".*"', f"REPO_URL = {str(tmp_path)!r}", source)
    calls = []
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda module, *rest: (
        None if module == "nmmo_jax" and not importable else find_spec(module, *rest)))
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/nvidia-smi" if gpu else None)
    monkeypatch.setattr(subprocess, "run", lambda command, check: calls.append(command))
    exec(source, {})
    if package is None:
        assert calls == []
    else:
        assert calls == [[sys.executable, "-m", "pip", "install", "-q",
                          package.format(clone=tmp_path)]]


def test_the_extras_the_install_cell_asks_for_exist():
    pyproject = (ROOT / "pyproject.toml").read_text()
    extras = dict(re.findall(r"^(\w+) = \[(.*)\]$", pyproject, re.M))
    assert {"notebook", "cuda"} <= set(extras)
    assert '"ipywidgets' in extras["notebook"]


def test_quickstart_runs_and_the_forager_outlives_random_agents(kernel_name, tmp_path):
    outs = outputs(execute("quickstart.ipynb", kernel_name))
    check_clean_run(outs)
    text = printed(outs)
    lifetimes = dict(re.findall(r"(random|forager)\s+mean lifetime\s+([\d.]+) ticks", text))
    assert set(lifetimes) == {"random", "forager"}
    assert float(lifetimes["forager"]) > float(lifetimes["random"])
    assert {"image/gif", "image/png"} <= set(shown(outs))
    (gif,) = tmp_path.glob("nmmo-jax-*/forager.gif")
    assert gif.stat().st_size > 0
    assert "live: [" in text
    assert re.search(r"\d+ agents at reset", text) and "episode over at tick" in text


def test_train_notebook_runs_on_its_smallest_setting(kernel_name, tmp_path, monkeypatch):
    monkeypatch.setenv("NMMO_NOTEBOOK_SMOKE", "1")
    outs = outputs(execute("train.ipynb", kernel_name))
    check_clean_run(outs)
    text = printed(outs)
    assert re.search(r"4 updates of 512 slot-steps", text), text
    assert "parameters restored exactly: True" in text
    (folder,) = tmp_path.glob("nmmo-jax-train-*")
    assert (folder / "checkpoint.msgpack").stat().st_size > 0
    assert sorted(p.name for p in folder.glob("*.gif")) == [
        "random.gif", "scripted_fighter.gif", "trained.gif"]
    rich = shown(outs)
    assert rich.get("image/png"), "no lifetime plot"
    (gifs,) = [html for html in rich.get("text/html", []) if "image/gif;base64" in html]
    assert gifs.count("<img") == 3
    for name in ("trained", "random", "scripted fighter"):
        assert re.search(rf"^{name}\s+[\d.]+ ticks$", text, re.M), name
    ranking = re.findall(r"^\d\. (trained|fighter)\s+[\d.]+ ticks \[", text, re.M)
    assert sorted(ranking) == ["fighter", "trained"]
