"""The benchmarks run (in their --quick modes) and write JSON, so they cannot rot.

Timings are not asserted here (the machines are shared and noisy): the
benchmarks print ratios against baselines measured in the same run.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

QUICK = {
    "async.py": ["--quick"],
    "imports.py": ["--quick"],
    "primitives.py": ["--quick"],
    "privacy.py": ["--quick"],
    "he.py": ["--quick"],
    "secagg.py": ["--quick", "--no-flower", "--no-profile"],
    "flower_deployment.py": ["--quick"],
}


@pytest.mark.slow
@pytest.mark.parametrize("script", sorted(QUICK))
def test_benchmark_quick_mode_writes_json(script: str, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *QUICK[script], "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert isinstance(data, dict) and data
