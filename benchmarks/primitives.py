"""Benchmark of the secagg building blocks on this machine.

    python benchmarks/primitives.py [--json PATH] [--quick]

Times (time.perf_counter, median over repeats, after a warm-up call):

* Shamir split of two 32-byte secrets to n = 100 points with t = 50
  (what one SecAgg client does per round with 100 neighbours), and
  reconstruction from exactly t shares and from all n shares (the latter
  includes the consistency check of every extra share);
* PRG expansion of 100,000 words (32-bit and 64-bit);
* key agreement per pair (X25519 + HKDF-SHA256) and key-pair generation;
* AES-256-GCM seal and open of one share envelope;
* robust Shamir reconstruction (``secagg.robust.decode_many``, Reed-Solomon
  decoding that names lying shares) of 943 secrets from a SecAgg+ sharing
  group at n = 943 (t = 17 of n' = 29 shares), with no liar, with the same 6
  liars on every secret, and with a random pattern of 0-6 liars per secret,
  against ``shamir.combine_many`` (consistency-checked) on the honest shares;
* Ed25519 identities: signing and verifying a statement, validating an
  identity key, and the X25519 public-key check.

If Flower (``flwr``) is importable, its own Shamir sharing
(``flwr.common.secure_aggregation.crypto.shamir``: pycryptodome over
GF(2^128), 16-byte chunks) is timed in the same run on the same two secrets
and the ratios are printed; otherwise that part is reported as skipped.

Results are printed as a table and written as JSON (default
benchmarks/results/primitives.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# First on the path, even if REPO is already on it further down (Ray, for one,
# exports PYTHONPATH): otherwise this directory's secagg.py would shadow the package.
sys.path.insert(0, str(REPO))

from secagg import aead, identity, keys, prg, robust, shamir  # noqa: E402
from secagg.framing import length_prefixed  # noqa: E402
from secagg.randomness import DeterministicRandom, random_below  # noqa: E402

N_CLIENTS = 100
THRESHOLD = 50
SECRET_BYTES = 32
PRG_WORDS = 100_000
# Robust reconstruction workload: the SecAgg+ sharing group at n = 943.
GROUP_THRESHOLD = 17
GROUP_SHARES = 29
GROUP_SECRETS = 943
GROUP_LIARS = 6
# Figures quoted in the project's issue for Flower's Shamir (n=100, t=50, two
# 32-byte secrets). Only used when flwr is not importable, and labelled as quoted.
QUOTED_FLOWER_SPLIT_S = 2.5
QUOTED_FLOWER_COMBINE_S = 3.4


def measure(fn: Callable[[], object], *, repeats: int, number: int = 1) -> dict[str, float]:
    """Median/min/max seconds per call over ``repeats`` timings of ``number`` calls each."""
    fn()  # warm-up (imports, caches, first allocation)
    per_call = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        per_call.append((time.perf_counter() - start) / number)
    return {
        "median_s": statistics.median(per_call),
        "min_s": min(per_call),
        "max_s": max(per_call),
        "repeats": repeats,
        "calls_per_repeat": number,
    }


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("numpy", "cryptography", "gmpy2", "flwr", "Crypto"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except Exception:  # not installed (or broken): simply not reported
            continue
    return out


def _git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def bench_ours(scale: int) -> dict[str, dict]:
    secrets_ = [os.urandom(SECRET_BYTES) for _ in range(2)]
    xs = list(range(1, N_CLIENTS + 1))
    shares = shamir.split_many(secrets_, THRESHOLD, xs)
    first_t = {x: shares[x] for x in xs[:THRESHOLD]}
    assert shamir.combine_many(first_t, THRESHOLD) == secrets_
    assert shamir.combine_many(shares, THRESHOLD) == secrets_

    results: dict[str, dict] = {}
    results["shamir.split_many"] = measure(
        lambda: shamir.split_many(secrets_, THRESHOLD, xs), repeats=20 * scale
    ) | {"params": f"2 x {SECRET_BYTES} B secrets, n={N_CLIENTS}, t={THRESHOLD}"}
    results["shamir.combine_many (t shares)"] = measure(
        lambda: shamir.combine_many(first_t, THRESHOLD), repeats=20 * scale
    ) | {"params": f"2 secrets from t={THRESHOLD} shares"}
    results["shamir.combine_many (n shares)"] = measure(
        lambda: shamir.combine_many(shares, THRESHOLD), repeats=20 * scale
    ) | {"params": f"2 secrets from n={N_CLIENTS} shares, consistency-checked"}

    seed = os.urandom(32)
    label = length_prefixed(b"pairwise", os.urandom(32))
    out = prg.expand(seed, label, PRG_WORDS, 32)
    assert out.shape == (PRG_WORDS,)
    results["prg.expand 32-bit"] = measure(
        lambda: prg.expand(seed, label, PRG_WORDS, 32), repeats=50 * scale
    ) | {"params": f"{PRG_WORDS} words, AES-256-CTR"}
    results["prg.expand 64-bit"] = measure(
        lambda: prg.expand(seed, label, PRG_WORDS, 64), repeats=50 * scale
    ) | {"params": f"{PRG_WORDS} words, AES-256-CTR"}

    a, b = keys.KeyPair.generate(), keys.KeyPair.generate()
    sid = keys.session_id(a.public_bytes, b.public_bytes)
    assert keys.agree(a, b.public_bytes, label=b"mask", session_id=sid) == keys.agree(
        b, a.public_bytes, label=b"mask", session_id=sid
    )
    results["keys.agree (X25519+HKDF)"] = measure(
        lambda: keys.agree(a, b.public_bytes, label=b"mask", session_id=sid),
        repeats=20 * scale,
        number=100,
    ) | {"params": "per pair"}
    results["keys.KeyPair.generate"] = measure(
        keys.KeyPair.generate, repeats=20 * scale, number=100
    ) | {"params": "X25519"}

    # One share envelope: sender, receiver and the two Shamir shares (b_u, s_u^SK).
    channel_key = os.urandom(32)
    row = shares[1]
    envelope = length_prefixed(
        (0).to_bytes(8, "big"), (1).to_bytes(8, "big"), row[0], row[1]
    )
    ad = aead.associated_data(sender=0, receiver=1, round=1, session_id=sid)
    blob = aead.encrypt(channel_key, envelope, associated_data=ad)
    assert aead.decrypt(channel_key, blob, associated_data=ad) == envelope
    results["aead.encrypt (envelope)"] = measure(
        lambda: aead.encrypt(channel_key, envelope, associated_data=ad),
        repeats=20 * scale,
        number=200,
    ) | {"params": f"{len(envelope)} B plaintext -> {len(blob)} B"}
    results["aead.decrypt (envelope)"] = measure(
        lambda: aead.decrypt(channel_key, blob, associated_data=ad),
        repeats=20 * scale,
        number=200,
    ) | {"params": f"{len(blob)} B blob"}
    return results


def _corrupted(
    shares: dict[int, list[bytes]], pattern: list[list[int]], rng: DeterministicRandom
) -> dict[int, list[bytes]]:
    """``shares`` with the share of secret s at each x in pattern[s] moved to another field element."""
    out = {x: list(row) for x, row in shares.items()}
    p = shamir.FIELD_PRIME
    for s, liars in enumerate(pattern):
        for x in liars:
            value = (int.from_bytes(out[x][s], "big") + 1 + random_below(p - 1, rng)) % p
            out[x][s] = value.to_bytes(shamir.SHARE_BYTES, "big")
    return out


def _sample(xs: list[int], count: int, rng: DeterministicRandom) -> list[int]:
    """``count`` distinct elements of ``xs`` drawn with ``rng``."""
    pool = list(xs)
    return [pool.pop(random_below(len(pool), rng)) for _ in range(count)]


def bench_robust(scale: int) -> dict[str, dict]:
    """Robust Shamir reconstruction vs today's consistency-checked combine (same secrets)."""
    rng = DeterministicRandom("benchmarks/primitives robust")
    t, n, w = GROUP_THRESHOLD, GROUP_SHARES, GROUP_SECRETS
    secrets_ = [rng.bytes(SECRET_BYTES) for _ in range(w)]
    xs = list(range(1, n + 1))
    honest = shamir.split_many(secrets_, t, xs, rng=rng)
    fixed = _sample(xs, GROUP_LIARS, rng)
    same_liars = _corrupted(honest, [fixed] * w, rng)
    patterns = [_sample(xs, random_below(GROUP_LIARS + 1, rng), rng) for _ in range(w)]
    mixed = _corrupted(honest, patterns, rng)

    # Correctness of every timed call, checked once before timing.
    assert shamir.combine_many(honest, t) == secrets_
    assert list(robust.decode_many(honest, t).secrets) == secrets_
    decoded = robust.decode_many(same_liars, t)
    assert list(decoded.secrets) == secrets_ and decoded.all_liars == set(fixed)
    decoded = robust.decode_many(mixed, t)
    assert list(decoded.secrets) == secrets_
    assert [set(x) for x in decoded.liars] == [set(p) for p in patterns]

    group = f"{w} secrets, t={t} of n'={n}"
    repeats = 3 * scale
    return {
        "shamir.combine_many (group, honest)": measure(
            lambda: shamir.combine_many(honest, t), repeats=repeats
        )
        | {"params": f"{group}, consistency-checked"},
        "robust.decode_many (0 liars)": measure(
            lambda: robust.decode_many(honest, t), repeats=repeats
        )
        | {"params": group},
        "robust.decode_many (6 liars, all secrets)": measure(
            lambda: robust.decode_many(same_liars, t), repeats=repeats
        )
        | {"params": f"{group}, the same {GROUP_LIARS} liars on every secret"},
        "robust.decode_many (0-6 liars per secret)": measure(
            lambda: robust.decode_many(mixed, t), repeats=repeats
        )
        | {"params": f"{group}, a random set of 0-{GROUP_LIARS} liars per secret"},
    }


def bench_identity(scale: int) -> dict[str, dict]:
    """Ed25519 statements (RFC 8032) and the public-key checks."""
    signer = identity.IdentityKeyPair.generate()
    statement = identity.Statement(
        identity.ADVERTISE_CONTEXT, os.urandom(32), 1, os.urandom(32), os.urandom(64)
    )
    signature = signer.sign_statement(statement)
    signer.public_key.verify_statement(signature, statement)
    x25519_public = keys.KeyPair.generate().public_bytes
    return {
        "identity.sign_statement": measure(
            lambda: signer.sign_statement(statement), repeats=20 * scale, number=100
        )
        | {"params": "Ed25519, 64 B payload"},
        "identity.verify_statement": measure(
            lambda: signer.public_key.verify_statement(signature, statement),
            repeats=20 * scale,
            number=100,
        )
        | {"params": "Ed25519, 64 B payload"},
        "identity.check_identity_key": measure(
            lambda: identity.check_identity_key(signer.public_key.raw),
            repeats=20 * scale,
            number=100,
        )
        | {"params": "decode + small-order check, pure Python"},
        "keys.check_public_key": measure(
            lambda: keys.check_public_key(x25519_public), repeats=20 * scale, number=1000
        )
        | {"params": "X25519 canonical + small-order"},
    }


def bench_flower(repeats: int) -> dict[str, dict] | str:
    """Flower's own Shamir on the same workload, or the reason it was skipped."""
    try:
        from flwr.common.secure_aggregation.crypto.shamir import combine_shares, create_shares
    except Exception as exc:  # flwr absent or incompatible
        return f"flwr not importable ({type(exc).__name__}: {exc})"

    secrets_ = [os.urandom(SECRET_BYTES) for _ in range(2)]
    per_secret = [create_shares(s, THRESHOLD, N_CLIENTS) for s in secrets_]
    for s, shares in zip(secrets_, per_secret, strict=True):
        assert combine_shares(list(shares[:THRESHOLD])) == s
        assert combine_shares(list(shares)) == s

    def split() -> None:
        for s in secrets_:
            create_shares(s, THRESHOLD, N_CLIENTS)

    def combine_t() -> None:
        for shares in per_secret:
            combine_shares(list(shares[:THRESHOLD]))

    def combine_n() -> None:
        for shares in per_secret:
            combine_shares(list(shares))

    return {
        "flwr shamir split": measure(split, repeats=repeats)
        | {"params": "create_shares x 2 secrets"},
        "flwr shamir combine (t shares)": measure(combine_t, repeats=repeats)
        | {"params": "combine_shares x 2 secrets"},
        "flwr shamir combine (n shares)": measure(combine_n, repeats=repeats)
        | {"params": "combine_shares x 2 secrets"},
    }


def _fmt(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:8.3f} s "
    if seconds >= 1e-3:
        return f"{seconds * 1e3:8.3f} ms"
    return f"{seconds * 1e6:8.2f} us"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--json",
        type=Path,
        default=REPO / "benchmarks" / "results" / "primitives.json",
        help="where to write the results (default: benchmarks/results/primitives.json)",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (smoke run)")
    parser.add_argument("--flower-repeats", type=int, default=None, help="repeats for flwr")
    args = parser.parse_args(argv)

    scale = 1 if args.quick else 5
    ours = bench_ours(scale) | bench_robust(scale) | bench_identity(scale)
    flower = bench_flower(args.flower_repeats or (1 if args.quick else 5))

    rows = dict(ours)
    if isinstance(flower, dict):
        rows |= flower
    width = max(len(k) for k in rows)
    print(f"{'operation':<{width}}  {'median':>11}  {'min':>11}  {'calls':>6}  params")
    print("-" * (width + 60))
    for name, r in rows.items():
        n = r["repeats"] * r["calls_per_repeat"]
        print(f"{name:<{width}}  {_fmt(r['median_s'])}  {_fmt(r['min_s'])}  {n:>6}  {r['params']}")

    comparisons: dict[str, float] = {}
    print()
    if isinstance(flower, dict):
        pairs = [
            ("split", "flwr shamir split", "shamir.split_many"),
            ("combine (t shares)", "flwr shamir combine (t shares)", "shamir.combine_many (t shares)"),
            ("combine (n shares)", "flwr shamir combine (n shares)", "shamir.combine_many (n shares)"),
        ]
        for label, theirs, mine in pairs:
            ratio = flower[theirs]["median_s"] / ours[mine]["median_s"]
            comparisons[f"flwr/ours {label}"] = ratio
            print(f"Flower Shamir {label}: {ratio:,.0f}x slower than secagg.shamir (same run)")
    else:
        print(f"Flower comparison skipped: {flower}")
        split_ratio = QUOTED_FLOWER_SPLIT_S / ours["shamir.split_many"]["median_s"]
        comb_ratio = QUOTED_FLOWER_COMBINE_S / ours["shamir.combine_many (t shares)"]["median_s"]
        comparisons["quoted flwr/ours split"] = split_ratio
        comparisons["quoted flwr/ours combine (t shares)"] = comb_ratio
        print(
            f"Against the figures quoted in the issue for Flower ({QUOTED_FLOWER_SPLIT_S} s split, "
            f"{QUOTED_FLOWER_COMBINE_S} s combine; NOT measured here, other machine): "
            f"split {split_ratio:,.0f}x, combine {comb_ratio:,.0f}x"
        )
    combine_s = ours["shamir.combine_many (group, honest)"]["median_s"]
    for label, key in (
        ("0 liars", "robust.decode_many (0 liars)"),
        ("6 liars on every secret", "robust.decode_many (6 liars, all secrets)"),
        ("0-6 liars per secret", "robust.decode_many (0-6 liars per secret)"),
    ):
        ratio = ours[key]["median_s"] / combine_s
        comparisons[f"robust/combine_many {label}"] = ratio
        print(
            f"Robust decoding, {label}: {ours[key]['median_s'] * 1e3:.1f} ms, "
            f"{ratio:.2f}x combine_many on honest shares ({combine_s * 1e3:.1f} ms)"
        )
    prg_ms = ours["prg.expand 32-bit"]["median_s"] * 1e3
    print(f"PRG: {PRG_WORDS:,} 32-bit words in {prg_ms:.3f} ms (target < 1 ms)")

    report = {
        "benchmark": "secagg primitives",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "git_commit": _git_commit(),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(),
        },
        "versions": _versions(),
        "workload": {
            "n": N_CLIENTS,
            "t": THRESHOLD,
            "secrets": 2,
            "secret_bytes": SECRET_BYTES,
            "prg_words": PRG_WORDS,
            "robust": {
                "t": GROUP_THRESHOLD,
                "shares": GROUP_SHARES,
                "secrets": GROUP_SECRETS,
                "liars": GROUP_LIARS,
            },
        },
        "results": ours,
        "flower": flower if isinstance(flower, dict) else {"skipped": flower},
        "comparisons": comparisons,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
