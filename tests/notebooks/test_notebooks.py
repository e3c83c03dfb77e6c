"""Execute every tutorial notebook (notebooks/*.ipynb) so that none of them can rot.

Notebooks are committed without outputs (see notebooks/README.md); this test
runs each one top to bottom in a fresh kernel and fails on the first cell that
raises. It also checks a few values each tutorial prints (so a notebook that
runs but silently teaches something false fails too), and that the committed
file carries no outputs.

The kernel is the interpreter running pytest (``sys.executable``), declared in
a temporary kernelspec named ``python3`` that shadows any other: the
``python3`` spec that ipykernel installs says ``"python"``, which resolves on
``PATH`` and may be an interpreter without this project or ipykernel. The
kernel's working directory is the repository root and ``PYTHONPATH`` points
there too, so ``import protocols`` works without an install; matplotlib uses
the Agg backend (no display needed).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; a whole notebook takes well under a minute
KERNEL_NAME = "python3"

# Lines (substrings of a cell's text output) each tutorial must print. Notebooks
# not listed here are still executed and must not raise.
EXPECTED_OUTPUT: dict[str, list[str]] = {
    "01_secure_aggregation.ipynb": [
        "plaintext server sees client 0's input exactly: True",
        "masked words look uniform: True",
        "exact: True",
        "aborted: True",
        "bytes up per client grow slower for SecAgg+: True",
    ],
    "02_homomorphic_aggregation.ipynb": [
        "paillier exact: True",
        "ckks within its stated bound: True",
        "server context is private: False",
        "server can decrypt: False",
    ],
    "04_private_recommendation.ipynb": [
        "secagg+ matches plaintext: True",
        "federated beats the global mean: True",
        "budgets respected: True",
        "<= 3: True",
        "switched mid-run: [1.0, 1.0, 0.5",
        "after observing the cost: secagg+",
    ],
    "03_dp_accounting.ipynb": [
        "round trip equal: True",
        "PLD <= RDP at every step count: True",
        "calibrated epsilon <= target: True",
        "events accounted: True",
    ],
    "06_async_training.ipynb": [
        "async reaches the level sooner: True",
        "weights are 1/sqrt(1+tau): True",
        "refused: reported version 3 is older",
        "refused: staleness 36 exceeds",
        "(cap 4)",
        "budget respected: True",
    ],
    "05_custom_transport.ipynb": [
        "exact: True",
        "LocalProtocolError",
        "RemoteProtocolError",
        "WireFormatError",
        "server still usable: True",
        "spoofed message rejected by the transport: True",
    ],
}


@pytest.fixture(scope="module")
def kernel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for kernels: a kernelspec for this interpreter, repo on the path, Agg."""
    jupyter_dir = tmp_path_factory.mktemp("jupyter")
    spec_dir = jupyter_dir / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (secagg-fl tests)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    pythonpath = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "JUPYTER_PATH": os.pathsep.join(
            p for p in (str(jupyter_dir), os.environ.get("JUPYTER_PATH")) if p
        ),
        "PYTHONPATH": pythonpath,
        "MPLBACKEND": "Agg",
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",
    }


def _text_outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_notebooks_exist():
    names = {p.name for p in NOTEBOOKS}
    assert set(EXPECTED_OUTPUT) <= names, f"missing notebooks: {set(EXPECTED_OUTPUT) - names}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path: Path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert not cell.get("outputs"), f"{path.name}: cell {cell.get('id')} has outputs"
            assert cell.get("execution_count") is None, f"{path.name}: cell has an execution count"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path, kernel_env: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    # The kernelspec is looked up in this process, the kernel gets kernel_env.
    monkeypatch.setenv("JUPYTER_PATH", kernel_env["JUPYTER_PATH"])
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name=KERNEL_NAME,
        resources={"metadata": {"path": str(REPO)}},
    )
    start = time.perf_counter()
    client.execute(env=kernel_env)  # raises CellExecutionError on the first failing cell
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")

    text = "\n".join(_text_outputs(c) for c in nb.cells if c.cell_type == "code")
    for cell in nb.cells:
        if cell.cell_type == "code":
            errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
            assert not errors, f"{path.name}: cell {cell.get('id')} raised {errors[0].get('ename')}"
    missing = [s for s in EXPECTED_OUTPUT.get(path.name, []) if s not in text]
    assert not missing, f"{path.name} did not print {missing}"
