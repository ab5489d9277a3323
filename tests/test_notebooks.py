"""The notebooks run top to bottom on a CPU, from where Jupyter starts them (notebooks/), and are
committed without outputs."""

import os

import nbformat
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOKS = sorted(f for f in os.listdir(os.path.join(ROOT, "notebooks")) if f.endswith(".ipynb"))


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_without_outputs(name):
    notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, (
                f"{name}: strip outputs before committing"
            )


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # reward_hacking.ipynb: a seconds-long smoke sweep in tmp_path instead of loading runs/.
    monkeypatch.setenv("PUREJAX_NOTEBOOK_SMOKE", "1")
    monkeypatch.setenv("PUREJAX_NOTEBOOK_WORKDIR", str(tmp_path / "sweep"))

    notebook = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    os.environ.setdefault("MPLBACKEND", "Agg")
    # The kernel starts in notebooks/, as Jupyter starts it: the notebook must find configs/ itself.
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": os.path.join(ROOT, "notebooks")}}
    ).execute()
    errors = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"
    ]
    assert not errors
