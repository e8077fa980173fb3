"""The notebooks run top to bottom in a fresh kernel of this interpreter."""

import json
import re
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.fixture
def kernel_name(tmp_path, monkeypatch) -> str:
    """A kernelspec that runs ipykernel in this test's interpreter (so the kernel sees
    the same installed packages), visible only through this test's JUPYTER_PATH."""
    name = "nmmo-jax-test"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "nmmo-jax test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return name


def execute(path: Path, kernel_name: str, workdir: Path) -> nbformat.NotebookNode:
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=120, kernel_name=kernel_name,
                            resources={"metadata": {"path": str(workdir)}})
    client.execute()
    return notebook


def outputs(notebook: nbformat.NotebookNode) -> list[dict]:
    return [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]


def test_quickstart_is_committed_without_outputs():
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def test_quickstart_runs_and_the_forager_outlives_random_agents(kernel_name, tmp_path):
    notebook = execute(NOTEBOOKS / "quickstart.ipynb", kernel_name, tmp_path)
    outs = outputs(notebook)
    assert not [out for out in outs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outs if out.output_type == "stream")
    lifetimes = dict(re.findall(r"(random|forager)\s+mean lifetime\s+([\d.]+) ticks", text))
    assert set(lifetimes) == {"random", "forager"}
    assert float(lifetimes["forager"]) > float(lifetimes["random"])
    shown = {mime for out in outs if out.output_type in ("display_data", "execute_result")
             for mime in out.get("data", {})}
    assert {"image/gif", "image/png"} <= shown
    assert (tmp_path / "forager.gif").stat().st_size > 0
    assert "live: [" in text
