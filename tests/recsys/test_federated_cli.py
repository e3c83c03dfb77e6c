"""The ``recsys train`` / ``compare`` command line on small synthetic data."""

from __future__ import annotations

import math

from recsys.cli import main
from recsys.ledger import read_jsonl

SMALL = [
    "--data",
    "synthetic",
    "--synthetic-users",
    "30",
    "--synthetic-items",
    "20",
    "--synthetic-ratings",
    "8",
    "--factors",
    "2",
    "--no-progress",
]


def test_train_writes_ledger_and_plot(tmp_path, capsys):
    out = tmp_path / "plain"
    assert (
        main(["train", *SMALL, "--protocol", "plaintext", "--rounds", "3", "--out", str(out)]) == 0
    )
    rows = read_jsonl(out / "ledger.jsonl")
    assert [r.round for r in rows] == [1, 2, 3] and all(math.isinf(r.epsilon) for r in rows)
    assert (out / "ledger.png").stat().st_size > 0 and (out / "run.json").exists()
    printed = capsys.readouterr().out
    assert printed.count("round ") >= 3 and "ledger.jsonl" in printed


def test_train_with_epsilon_spends_at_most_the_budget(tmp_path, capsys):
    out = tmp_path / "dp"
    argv = [
        "train",
        *SMALL,
        "--protocol",
        "secagg",
        "--rounds",
        "3",
        "--epsilon",
        "4",
        "--delta",
        "1e-4",
        "--q",
        "0.5",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    rows = read_jsonl(out / "ledger.jsonl")
    assert len(rows) == 3 and 3.5 < rows[-1].epsilon <= 4.0 + 1e-9
    assert all(r.protocol == "secagg" and r.sigma for r in rows)
    out2 = tmp_path / "inf"
    argv = [
        "train",
        *SMALL,
        "--protocol",
        "plaintext",
        "--rounds",
        "2",
        "--epsilon",
        "inf",
        "--out",
        str(out2),
    ]
    assert main(argv) == 0
    assert all(r.sigma is None for r in read_jsonl(out2 / "ledger.jsonl"))
    assert main(["compare", str(out), str(out2), "--out", str(tmp_path / "cmp.png")]) == 0
    assert (tmp_path / "cmp.png").stat().st_size > 0
