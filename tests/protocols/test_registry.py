"""The protocol registry: one table of names that plans, the CLI, build_protocol, the
Flower example and the README read; protocols state their own facts and cost model;
a new protocol is its own module plus one registration."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import protocols
from protocols import registry
from protocols.cost import CostEstimate
from protocols.dp_modes import DP_MODES, dp_mode

README = Path(__file__).parents[2] / "README.md"
BUILTIN = ("plaintext", "secagg", "secagg+", "paillier", "ckks")


def _readme_table() -> list[list[str]]:
    text = README.read_text(encoding="utf-8")
    marker = text.index("<!-- protocol table:")
    lines = text[marker:].splitlines()[1:]
    rows = []
    for line in lines[2:]:  # header and separator
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def test_builtin_protocols_are_registered():
    assert set(BUILTIN) <= set(registry.names())


def test_readme_table_lists_exactly_the_registry():
    rows = _readme_table()
    assert [re.sub(r"`", "", r[0]) for r in rows] == list(registry.names())
    for (name, description), row in zip(registry.describe(), rows):
        cls = registry.config_class(name)
        bits = cls.QUANTIZATION_BITS
        assert row[1] == description
        assert row[2] == (f"{bits[0]}–{bits[1]}" if bits else "")
        assert row[3] == ("yes" if cls.INTEGER_RING else "no")
        assert row[4] == ("yes" if cls.SECURE_SUM else "no")
        assert row[5] == ", ".join(cls.DROPOUT_STAGES)


@pytest.mark.parametrize("name", registry.names())
def test_every_protocol_describes_itself(name):
    cls = registry.config_class(name)
    assert cls.NAME == name
    assert cls.INPUT_STAGE in cls.DROPOUT_STAGES
    proto = registry.create(name, registry.ProtocolOptions(clip=2.0, bits=16, key_bits=2048))
    assert isinstance(proto, cls) and proto.required_accountant is None
    if hasattr(proto, "clip"):
        assert proto.clip == 2.0
    small, large = proto.cost(10, 1000), proto.cost(10, 100_000)
    assert small.source == "prior"
    assert large.upload_bytes > small.upload_bytes > 0
    assert all(math.isfinite(v) and v >= 0 for v in vars(small).values() if isinstance(v, float))


def test_options_map_onto_fields_and_defaults_stay():
    assert registry.create("plaintext", registry.ProtocolOptions(clip=3.0, bits=8)) == (
        protocols.Plaintext()
    )
    assert registry.create("secagg", registry.ProtocolOptions(clip=3.0)) == protocols.SecAgg(
        clip=3.0
    )  # threshold None leaves SecAgg its variant's default
    assert registry.create(
        "paillier", registry.ProtocolOptions(bits=20, key_bits=3072, workers=1)
    ) == protocols.Paillier(key_bits=3072, bits=20, workers=1)
    with pytest.raises(ValueError, match="bits"):
        registry.create("paillier", registry.ProtocolOptions(bits=53))


def test_cost_models_by_hand():
    # SecAgg, n=100, d=1000, 16 bits: 99 neighbours; 2 bytes per value + 250 per neighbour.
    est = protocols.SecAgg(bits=16).cost(100, 1000)
    assert est.upload_bytes == 2 * 1000 + 250 * 99
    assert est.download_bytes == 250 * 99
    # Paillier, 2048-bit keys, 16 bits + ceil(log2 101) = 7 + 1 headroom = 24-bit slots:
    # 2046 // 24 = 85 values per 512-byte ciphertext, ceil(1000 / 85) = 12 ciphertexts.
    assert protocols.Paillier(bits=16).cost(100, 1000).upload_bytes == 12 * 512
    assert protocols.Plaintext().cost(100, 1000).upload_bytes == 8 * 1000
    # SecAgg+ pays for its graph degree, not n - 1.
    plus = protocols.SecAggPlus(bits=16)
    k = plus.degree(100)
    assert plus.cost(100, 1000).upload_bytes == 2 * 1000 + 250 * k < est.upload_bytes


def test_dp_modes_listed_once_with_their_accountant():
    from protocols import dp
    from recsys import cli, plan

    assert dp.DP_MODES is DP_MODES and plan.DP_MODES is DP_MODES
    parser = cli.build_parser()
    train = parser._subparsers._group_actions[0].choices["train"]
    (dp_action,) = [a for a in train._actions if a.dest == "dp_mode"]
    assert tuple(dp_action.choices) == DP_MODES
    assert [dp_mode(m).accountant for m in DP_MODES] == [None, None, "rdp", "rdp"]
    inner = protocols.SecAgg()
    for mode in DP_MODES:
        wrapped = protocols.DifferentiallyPrivate(inner, mode=mode, expected_clients=10)
        assert wrapped.required_accountant == dp_mode(mode).accountant
        assert wrapped.INPUT_STAGE == inner.INPUT_STAGE
    with pytest.raises(ValueError, match="integer secure aggregation"):
        protocols.DifferentiallyPrivate(protocols.Paillier(), mode="skellam")
    with pytest.raises(ValueError, match="dp mode must be one of"):
        dp_mode("laplace")


def test_entries_are_lazy_and_checked():
    registry.register("lazy-test", "no_such_module_xyz:Proto", "never loaded")
    try:
        assert "lazy-test" in registry.names()  # listing imports nothing
        with pytest.raises(ModuleNotFoundError):
            registry.config_class("lazy-test")
    finally:
        registry.unregister("lazy-test")
    with pytest.raises(ValueError, match="already registered"):
        registry.register("secagg", "protocols.secagg.config:SecAgg", "again")
    with pytest.raises(ValueError, match="protocol must be one of"):
        registry.get("secagg++")
    registry.register("misnamed-test", protocols.Plaintext, "NAME says plaintext")
    try:
        with pytest.raises(TypeError, match="registered as 'misnamed-test'"):
            registry.config_class("misnamed-test")
    finally:
        registry.unregister("misnamed-test")


# -- a new protocol: this module plus one registration, nothing else edited -------------------


@dataclass(frozen=True)
class Relay(protocols.Plaintext):
    """Test-only: the plaintext sessions under a new name, with its own cost model
    (every value relayed twice, so its upload differs from plaintext's)."""

    NAME: ClassVar[str] = "relay-test"

    def cost(self, n_clients: float, dim: int) -> CostEstimate:
        return CostEstimate(16.0 * dim, 0.0, 0.0, 0.0)


@pytest.fixture
def relay():
    registry.register(Relay.NAME, Relay, "test-only relay of plaintext inputs")
    yield Relay.NAME
    registry.unregister(Relay.NAME)


def test_a_new_protocol_runs_everywhere_after_one_registration(relay):
    from recsys.cli import build_parser
    from recsys.data import random_split, synthetic
    from recsys.federated import FederatedTrainer, build_protocol
    from recsys.ledger import Ledger, RunInfo
    from recsys.policy import CostAwarePolicy, Plan

    inputs = {c: np.full(3, 0.25 * c) for c in range(4)}
    agg = protocols.simulate(registry.create(relay), inputs, dropout={2: Relay.INPUT_STAGE}, seed=0)
    np.testing.assert_allclose(agg.total, np.full(3, 0.25 * (0 + 1 + 3)))
    assert agg.survivors == [0, 1, 3]

    plan = Plan(relay, local_epochs=1)
    assert build_protocol(plan, n_invited=4) == Relay()
    assert plan.quantization_bits is None
    with pytest.raises(ValueError, match="relies on the server seeing only the sum"):
        Plan(relay, clip=1.0, noise_multiplier=1.0, dp_mode="distributed")

    train, test = random_split(synthetic(20, 12, 6, seed=0), 0.2, seed=0)
    runs = {
        name: FederatedTrainer(train, test, plan.replace(protocol=name), rounds=2, n_factors=2).run()
        for name in (relay, "plaintext")
    }
    assert [r.protocol for r in runs[relay]] == [relay, relay]
    # Same sessions, same inputs, same summation order: the same model, round by round.
    assert runs[relay].column("rmse") == runs["plaintext"].column("rmse")
    assert runs[relay].column("bytes_up") == runs["plaintext"].column("bytes_up")

    ledger = Ledger(1e-5, info=RunInfo(n_clients=100, upload_dim=1000, model_bytes=0))
    policy = CostAwarePolicy([plan, Plan("plaintext")], max_upload_bytes=10_000)
    assert policy(1, ledger) == Plan("plaintext")  # relay's own model: 16 kB > 10 kB
    assert policy.estimate(plan, ledger).upload_bytes == 16_000

    args = build_parser().parse_args(["train", "--data", "synthetic", "--out", "x", "--protocol", relay])
    assert args.protocol == relay
