"""The light install: ``pip install secagg-fl`` with no extras gives working protocols.

The package is built and installed (no ``-e``, no extras) into a fresh venv,
where a SecAgg+ round is simulated; its total is compared with a plain numpy
sum computed here. The extras' packages (torch, matplotlib, tqdm for recsys;
tenseal for CKKS) must not have come along, and importing what needs them must
say which extra to install.

pip may reach the package index for the crypto dependencies (numpy, scipy,
cryptography, phe, gmpy2) and the build backend; its cache makes later runs
quicker.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]

# Runs inside the fresh venv. Reads the inputs as JSON on stdin and prints a
# JSON report on stdout; everything it checks is compared in the test.
_PROBE = r"""
import importlib, importlib.metadata, importlib.util, json, sys

import numpy as np
import protocols

inputs = {int(c): np.array(v) for c, v in json.load(sys.stdin).items()}
agg = protocols.simulate(protocols.SecAggPlus(threshold=0.5, bits=32, clip=1.0), inputs, seed=0)

errors = {}
for module in ("recsys", "secagg.ckks"):
    try:
        importlib.import_module(module)
    except ImportError as exc:
        errors[module] = str(exc)
try:
    protocols.CKKS
except ImportError as exc:
    errors["protocols.CKKS"] = str(exc)

print(json.dumps({
    "protocols_file": protocols.__file__,
    "total": np.asarray(agg.total).tolist(),
    "survivors": list(agg.survivors),
    "found": {m: importlib.util.find_spec(m) is not None
              for m in ("torch", "tenseal", "matplotlib", "tqdm")},
    "import_errors": errors,
    "distributions": sorted(d.metadata["Name"].lower().replace("_", "-") for d in importlib.metadata.distributions()),
}))
"""


# What a fresh clone holds, less what a developer's tree adds (the .gitignore'd).
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
    "build",
    "dist",
    "runs",
    "results",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "u.data",
    "ratings.dat",
)


def _copy_source(dest: Path) -> Path:
    # Build from a copy: setuptools writes build/ and *.egg-info next to
    # pyproject.toml, which must not land in the developer's (or CI's) tree.
    shutil.copytree(REPO, dest, ignore=_NOT_SOURCE)
    return dest


def test_bare_install_runs_secagg_plus_without_the_extras(tmp_path: Path) -> None:
    src = _copy_source(tmp_path / "src")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / ("Scripts" if os.name == "nt" else "bin") / "python"
    # Nothing of the running test environment may leak into the fresh one.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(src)], check=True, env=env, cwd=tmp_path
    )

    rng = np.random.default_rng(7)
    inputs = {c: rng.uniform(-1.0, 1.0, size=16) for c in range(6)}
    probe = subprocess.run(
        [str(python), "-c", _PROBE],
        input=json.dumps({c: v.tolist() for c, v in inputs.items()}),
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    report = json.loads(probe.stdout)

    # The installed copy ran, not the source tree.
    assert Path(report["protocols_file"]).is_relative_to(venv)
    assert report["survivors"] == list(range(6))
    # 32-bit fixed point over 6 clients rounds each coordinate by ~1e-8.
    np.testing.assert_allclose(report["total"], sum(inputs.values()), rtol=0, atol=1e-6)

    assert report["found"] == {"torch": False, "tenseal": False, "matplotlib": False, "tqdm": False}
    assert "secagg-fl[recsys]" in report["import_errors"]["recsys"]
    assert "secagg-fl[ckks]" in report["import_errors"]["secagg.ckks"]
    assert "secagg-fl[ckks]" in report["import_errors"]["protocols.CKKS"]
    for light in ("secagg-fl", "numpy", "scipy", "cryptography", "phe", "gmpy2"):
        assert light in report["distributions"]
