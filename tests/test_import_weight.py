"""Which heavy libraries each entry point loads (issue 12: a light ``import protocols``).

Every case runs in a fresh interpreter and reports the heavy modules it ended
up with. ``import secagg``, ``import protocols`` and rounds of the protocols
that need none of them (SecAgg+, SecAgg, Plaintext, with a snapshot and a
restore) load none; CKKS, Paillier and DP load what they need when they are
used, and only then. No timing is asserted here: benchmarks/imports.py
measures it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# tenseal: CKKS; phe and gmpy2: Paillier; scipy: the DP accountants;
# secagg.privacy: every DP mechanism; torch, matplotlib: recsys only.
HEAVY = ("tenseal", "phe", "gmpy2", "scipy", "secagg.privacy", "torch", "matplotlib")

ROUND = """
import numpy as np
x = {c: np.full(8, 0.1) for c in range(6)}
agg = protocols.simulate(PROTO, x, dropout={5: "masked_input"}, seed=0)
assert agg.survivors == [0, 1, 2, 3, 4], agg.survivors
"""


def loaded_after(code: str) -> list[str]:
    """The HEAVY modules present after running ``code`` in a fresh interpreter."""
    probe = textwrap.dedent(code) + (
        f"\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_import_secagg_is_light():
    assert loaded_after("import secagg") == []


def test_import_protocols_is_light():
    assert loaded_after("import protocols") == []


def test_protocols_names_and_configs_need_no_heavy_library():
    # Every light name resolves, and a DP config alone draws no noise yet.
    code = """
    import protocols
    from protocols import SecAggPlus, Plaintext, DifferentiallyPrivate, simulate
    assert "CKKS" in protocols.__all__ and "Paillier" in protocols.__all__
    assert "CKKS" in dir(protocols)
    DifferentiallyPrivate(SecAggPlus(), mode="ddg", clip=1.0, noise_multiplier=1.0, expected_clients=6)
    try:
        protocols.NoSuchProtocol
    except AttributeError:
        pass
    else:
        raise AssertionError("protocols.NoSuchProtocol resolved")
    """
    assert loaded_after(code) == []


@pytest.mark.parametrize(
    "proto",
    ["protocols.SecAggPlus()", "protocols.SecAgg()", "protocols.SecAgg(threshold=0.5, semi_honest=True)", "protocols.Plaintext()"],
)
def test_light_protocol_rounds_load_no_heavy_library(proto):
    assert loaded_after(f"import protocols\nPROTO = {proto}\n{ROUND}") == []


def test_secaggplus_snapshot_and_restore_load_no_heavy_library():
    code = """
    import numpy as np, protocols
    proto = protocols.SecAggPlus(k=2, semi_honest=True)
    client = proto.client(0, 4)
    client.start()
    restored = proto.restore_client(client.snapshot())
    assert restored.snapshot() == client.snapshot()
    """
    assert loaded_after(code) == []


def test_ckks_loads_tenseal_when_used():
    code = "import protocols\nPROTO = protocols.CKKS(clip=1.0)\n" + ROUND
    loaded = loaded_after(code)
    assert "tenseal" in loaded
    assert not {"phe", "gmpy2", "scipy", "secagg.privacy"} & set(loaded)


def test_paillier_loads_phe_and_gmpy2_when_used():
    code = "from protocols import Paillier\nimport protocols\nPROTO = Paillier(key_bits=1024)\n"
    loaded = loaded_after(code + ROUND)
    assert {"phe", "gmpy2"} <= set(loaded)
    assert not {"tenseal", "scipy", "secagg.privacy"} & set(loaded)


@pytest.mark.parametrize("mode", ["central", "ddg"])
def test_dp_loads_the_privacy_package_when_used(mode):
    code = (
        "import protocols\n"
        "PROTO = protocols.DifferentiallyPrivate(protocols.SecAggPlus(), "
        f"mode={mode!r}, clip=1.0, noise_multiplier=1.0, expected_clients=6)\n" + ROUND
    )
    loaded = loaded_after(code)
    assert "secagg.privacy" in loaded
    assert not {"tenseal", "phe", "gmpy2"} & set(loaded)
