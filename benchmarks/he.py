"""Benchmark the homomorphic building blocks against raw phe and raw TenSEAL, in one run.

    .venv/bin/python benchmarks/he.py [--json PATH] [--clients 10] [--dim 100000] [--quick]
    .venv/bin/python benchmarks/he.py --threshold-only [--th-clients 100] [--th-dim 10000]

Paillier (one 2048-bit key for everything): naive per-value ``phe`` encryption
(a few hundred values, extrapolated per value) against ours (packed, DJN
fixed-base randomizers, worker processes), per value and per byte; then
aggregation and decryption of ``--clients`` encrypted vectors.

CKKS (``--dim`` values, ``--clients`` clients): our defaults against TenSEAL's
tutorial parameters (bytes per value, max abs error of the sum), and the
end-to-end time (encrypt all clients + sum + decrypt) of our wrapper against
the same work written as raw TenSEAL calls, same parameters and data,
alternating runs and comparing medians.

Threshold Paillier (``--th-*``): one round of ``protocols.ThresholdPaillier``
(committee of 5, t = 3, the key from one ceremony) against one round of the
single-decryptor ``protocols.Paillier``, same clients, inputs and key size,
both driven in this process through serialized messages (every client and
member runs here, one after the other, ``--th-workers`` each, default 1). Reported: the
simulated round's wall time and its ratio, CPU per role and stage, bytes per
client and per committee member, and a deployment estimate of the round's
critical path (one client's encryption + the server + the slowest
decryptor, since devices work in parallel), plus the ceremony's time and the
single decryptor's per-round key generation.

The machine may be shared: the load average is recorded before and after
each section, and every comparison is a ratio of runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import phe
import tenseal as ts

import protocols
from protocols.driver import Delivery, drive
from protocols.messages import Message
from protocols.simulate import Stats
from protocols.threshold_paillier import ThresholdPaillier, simulated_setup
from secagg import ckks as C
from secagg import paillier as P
from secagg.encoding import FixedPointEncoder

RESULTS = Path(__file__).resolve().parent / "results" / "he.json"


def _load() -> float:
    return os.getloadavg()[0]


_LAST_CPU = [0.0]


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[float, Any]:
    """Wall-clock seconds of ``fn``; its CPU seconds in this process go to ``_LAST_CPU``.

    CPU time is what a loaded machine does not inflate; it misses work done in
    worker processes, so it is only reported for single-process runs.
    """
    cpu = time.process_time()
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    elapsed = time.perf_counter() - start
    _LAST_CPU[0] = time.process_time() - cpu
    return elapsed, out


# ---------------------------------------------------------------------- Paillier


def bench_paillier(dim: int, clients: int, naive_values: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": _load(), "key_bits": 2048, "dim": dim, "clients": clients}
    t_key, (pk, sk) = _timed(P.generate_keypair, 2048)
    out["keygen_s"] = t_key
    phe_pk = pk.to_phe()
    gen = np.random.default_rng(seed)

    # Naive: python-paillier's per-value encrypt (r^n mod n^2 for every value).
    values = [int(v) for v in gen.integers(-(2**31), 2**31, naive_values)]
    t_naive, naive_cts = _timed(lambda: [phe_pk.encrypt(v) for v in values])
    cpu_naive = _LAST_CPU[0]
    naive_per_value = t_naive / naive_values
    naive_bytes = pk.ciphertext_bytes  # one ciphertext (mod n^2) per value
    assert phe.paillier.PaillierPrivateKey.decrypt(sk.to_phe(), naive_cts[0]) == values[0]
    out["naive"] = {
        "values_timed": naive_values,
        "seconds_per_value": naive_per_value,
        "cpu_seconds_per_value": cpu_naive / naive_values,
        "bytes_per_value": naive_bytes,
    }

    # Ours: FixedPointEncoder(bits=32) values, packed, DJN encryption on all cores.
    enc = FixedPointEncoder(clip=1.0, bits=32, max_summands=clients)
    packer = P.Packer.for_encoder(enc, pk.key_bits)
    xs = [gen.uniform(-1.0, 1.0, dim) for _ in range(clients)]
    qs = [enc.quantize(x) for x in xs]
    workers = P.default_workers()
    P.shutdown_workers()
    t_cold, cts0 = _timed(P.encrypt_vector, pk, qs[0], packer)  # table build + pool start
    t_warm, cts0 = _timed(P.encrypt_vector, pk, qs[0], packer)
    t_one, _ = _timed(P.encrypt_vector, pk, qs[0], packer, workers=1)
    cpu_one = _LAST_CPU[0]
    short = P.MIN_EXPONENT_BITS
    # Warm up the 256-bit-exponent tables in this process and in the workers.
    P.encrypt_vector(pk, qs[0][: packer.slots * 256], packer, exponent_bits=short)
    t_short, _ = _timed(P.encrypt_vector, pk, qs[0], packer, exponent_bits=short)
    blobs = [P.ciphertexts_to_bytes(pk, cts0)]
    for q in qs[1:]:
        blobs.append(P.ciphertexts_to_bytes(pk, P.encrypt_vector(pk, q, packer)))
    ours_bytes = len(blobs[0]) / dim
    out["ours"] = {
        "slot_bits": packer.slot_bits,
        "values_per_ciphertext": packer.slots,
        "ciphertexts_per_client": len(cts0),
        "exponent_bits": P.default_exponent_bits(pk.key_bits),
        "workers": workers,
        "seconds_per_value_cold": t_cold / dim,
        "seconds_per_value_warm": t_warm / dim,
        "seconds_per_value_1_worker": t_one / dim,
        "cpu_seconds_per_value_1_worker": cpu_one / dim,
        "seconds_per_value_short_exponent_256": t_short / dim,
        "bytes_per_value": ours_bytes,
    }
    out["speedup_cold"] = naive_per_value / (t_cold / dim)
    out["speedup_warm"] = naive_per_value / (t_warm / dim)
    out["speedup_1_worker"] = naive_per_value / (t_one / dim)
    out["speedup_cpu_1_worker"] = (cpu_naive / naive_values) / (cpu_one / dim)
    out["bytes_ratio_naive_over_ours"] = naive_bytes / ours_bytes

    # Server: decode (with validation) and multiply; decryptor: CRT decryption + unpack.
    t_decode, vectors = _timed(lambda: [P.ciphertexts_from_bytes(pk, b) for b in blobs])
    t_sum, total = _timed(P.sum_encrypted, pk, vectors)
    t_dec1, _ = _timed(P.decrypt_sum, sk, total, packer, clients, dim, workers=1)
    cpu_dec1 = _LAST_CPU[0]
    t_dec, ints = _timed(P.decrypt_sum, sk, total, packer, clients, dim)
    out["aggregate_decode_s"] = t_decode
    out["aggregate_sum_s"] = t_sum
    out["decrypt_s"] = t_dec
    out["decrypt_1_worker_s"] = t_dec1
    out["decrypt_1_worker_cpu_s"] = cpu_dec1
    out["exact"] = bool(np.array_equal(ints, np.sum(qs, axis=0)))
    out["max_abs_error_real"] = float(
        np.max(np.abs(ints / enc.scale - np.sum([np.clip(x, -1, 1) for x in xs], axis=0)))
    )
    out["load_after"] = _load()
    return out


# -------------------------------------------------------------------------- CKKS


def _raw_tenseal_round(public: ts.Context, secret: ts.Context, xs: list[np.ndarray]) -> np.ndarray:
    """The same work as our wrapper, written directly against TenSEAL."""
    slots = public.seal_context().data.key_context_data().parms().poly_modulus_degree() // 2
    dim = xs[0].size
    cts = [
        [ts.ckks_vector(public, x[i : i + slots]).serialize() for i in range(0, dim, slots)]
        for x in xs
    ]
    total = []
    for j in range(len(cts[0])):
        acc = ts.ckks_vector_from(public, cts[0][j])
        for c in cts[1:]:
            acc.add_(ts.ckks_vector_from(public, c[j]))
        total.append(acc.serialize())
    return np.concatenate([np.asarray(ts.ckks_vector_from(secret, c).decrypt()) for c in total])


def _wrapper_round(public: ts.Context, secret: ts.Context, xs: list[np.ndarray]) -> np.ndarray:
    cts = [C.encrypt_vector(public, x) for x in xs]
    return C.decrypt_vector(secret, C.sum_encrypted(public, cts), xs[0].size)


def bench_ckks(dim: int, clients: int, repeats: int, seed: int) -> dict[str, Any]:
    out: dict[str, Any] = {"load_before": _load(), "dim": dim, "clients": clients}
    gen = np.random.default_rng(seed)
    clip = 1.0
    xs = [gen.uniform(-clip, clip, dim) for _ in range(clients)]
    exact = np.sum(xs, axis=0)
    configs = {
        "ours_default": C.CKKSParams(),
        "tenseal_tutorial": C.CKKSParams(8192, (60, 40, 40, 60), 2.0**40),
    }
    for name, params in configs.items():
        secret = C.make_context(params)
        wire = C.export_public_context(secret)
        public = C.load_public_context(wire, params)
        cts = [C.encrypt_vector(public, x) for x in xs]
        got = C.decrypt_vector(secret, C.sum_encrypted(public, cts), dim)
        out[name] = {
            "poly_modulus_degree": params.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(params.coeff_mod_bit_sizes),
            "log2_scale": float(np.log2(params.global_scale)),
            "log_q": sum(params.coeff_mod_bit_sizes),
            "he_standard_bound": C.HE_STANDARD_MAX_LOG_Q[params.poly_modulus_degree],
            "bytes_per_value": sum(len(c) for c in cts[0]) / dim,
            "public_context_bytes": len(wire),
            "max_abs_error": float(np.max(np.abs(got - exact))),
            "stated_bound": params.error_bound(clients, clip),
        }

    # End-to-end: our wrapper vs raw TenSEAL calls, default params, same data, alternating.
    params = configs["ours_default"]
    secret = C.make_context(params)
    public = C.load_public_context(C.export_public_context(secret), params)
    _raw_tenseal_round(public, secret, [x[: params.slots] for x in xs[:2]])  # warm-up
    _wrapper_round(public, secret, [x[: params.slots] for x in xs[:2]])
    raw_times, ours_times, raw_cpu, ours_cpu = [], [], [], []
    for rep in range(repeats):
        # Alternate which goes first, so neither always runs on a warmer machine.
        for which in ("raw", "ours") if rep % 2 == 0 else ("ours", "raw"):
            if which == "raw":
                t_raw, got_raw = _timed(_raw_tenseal_round, public, secret, xs)
                raw_times.append(t_raw)
                raw_cpu.append(_LAST_CPU[0])
            else:
                t_ours, got_ours = _timed(_wrapper_round, public, secret, xs)
                ours_times.append(t_ours)
                ours_cpu.append(_LAST_CPU[0])
    out["end_to_end"] = {
        "repeats": repeats,
        "raw_tenseal_s": raw_times,
        "wrapper_s": ours_times,
        "ratio_median": statistics.median(ours_times) / statistics.median(raw_times),
        "ratio_min": min(ours_times) / min(raw_times),
        "raw_tenseal_cpu_s": raw_cpu,
        "wrapper_cpu_s": ours_cpu,
        "cpu_ratio_median": statistics.median(ours_cpu) / statistics.median(raw_cpu),
        "raw_max_abs_error": float(np.max(np.abs(got_raw - exact))),
        "wrapper_max_abs_error": float(np.max(np.abs(got_ours - exact))),
    }
    out["load_after"] = _load()
    return out


# -------------------------------------------------------------------------- main


class _InProcessClients:
    """A driver transport hosting client sessions here; CPU per client and stage."""

    def __init__(self, sessions: dict[int, Any], inputs: dict[int, np.ndarray]) -> None:
        self.sessions = sessions
        self.cpu: dict[int, dict[str, float]] = {c: {} for c in sessions}
        self.bytes_in = dict.fromkeys(sessions, 0)
        self.bytes_out = dict.fromkeys(sessions, 0)
        for c, session in sessions.items():
            t0 = time.process_time()
            session.start()
            session.provide_input(inputs[c])
            self.cpu[c]["setup"] = time.process_time() - t0

    def exchange(self, batch: list[tuple[int, bytes]]) -> Delivery:
        out = Delivery()
        for cid, payload in batch:
            stage = Message.from_bytes(payload).STAGE
            self.bytes_in[cid] += len(payload)
            t0 = time.process_time()
            replies = self.sessions[cid].receive(payload)
            spent = time.process_time() - t0
            self.cpu[cid][stage] = self.cpu[cid].get(stage, 0.0) + spent
            out.client_seconds[stage] = out.client_seconds.get(stage, 0.0) + spent
            for m in replies:
                data = m.to_bytes()
                self.bytes_out[cid] += len(data)
                out.messages.append((cid, data))
        return out


def bench_threshold(
    clients: int, dim: int, key_bits: int, members: int, threshold: int, seed: int, workers: int
) -> dict[str, Any]:
    """One threshold round against one single-decryptor round (module docstring).

    ``workers``: processes/threads each party may use (both protocols alike).
    """
    insecure = key_bits < P.DEFAULT_KEY_BITS
    gen = np.random.default_rng(seed)  # benchmark data only
    inputs = {c: gen.uniform(-1, 1, dim) for c in range(clients)}
    exact = sum(inputs.values())
    single = protocols.Paillier(key_bits=key_bits, bits=32, workers=workers)
    t0 = time.perf_counter()
    agg = protocols.simulate(single, inputs)
    single_wall = time.perf_counter() - t0
    s_stats = agg.stats
    proto = ThresholdPaillier(
        key_bits=key_bits, bits=32, committee_size=members, threshold=threshold,
        workers=workers, insecure=insecure,
    )  # fmt: skip
    t0 = time.perf_counter()
    setup = simulated_setup(proto, range(clients))
    setup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, ceremony = _timed(P.generate_threshold_key, key_bits, members, threshold, insecure=insecure)
    ceremony_s = time.perf_counter() - t0
    del ceremony
    server = setup.server(range(clients), dim)
    transport = _InProcessClients({c: setup.client(c, dim) for c in inputs}, inputs)
    t_stats = Stats(clients=clients)
    t0 = time.perf_counter()
    drive(server, transport, t_stats, drop_refused=False)
    threshold_wall = time.perf_counter() - t0
    result = server.result
    committee = setup.proto.committee or ()
    others = [c for c in inputs if c not in committee]
    enc_per_client = {
        "single": s_stats.seconds_by_stage["client"]["masked_input"] / clients,
        "threshold": sum(transport.cpu[c].get("masked_input", 0.0) for c in inputs) / clients,
    }
    member_unmask = max(transport.cpu[c].get("unmasking", 0.0) for c in committee)
    decryptor_unmask = s_stats.seconds_by_stage["client"]["unmasking"]
    keygen_single = s_stats.seconds_by_stage["client"]["start"]
    critical = {
        "single": enc_per_client["single"] + s_stats.server_seconds + keygen_single
        + decryptor_unmask,
        "threshold": enc_per_client["threshold"] + t_stats.server_seconds + member_unmask,
    }  # fmt: skip
    per_client_bytes = {
        "single": (s_stats.bytes_up + s_stats.bytes_down) / clients,
        "threshold": (t_stats.bytes_up + t_stats.bytes_down) / clients,
        "threshold_non_member": statistics.mean(
            transport.bytes_in[c] + transport.bytes_out[c] for c in others
        )
        if others
        else 0.0,
        "threshold_member_max": max(
            transport.bytes_in[c] + transport.bytes_out[c] for c in committee
        ),
    }
    bound = proto.paillier.encoder.error_bound(clients)
    return {
        "clients": clients,
        "dim": dim,
        "key_bits": key_bits,
        "insecure_test_key": insecure,
        "committee": members,
        "threshold": threshold,
        "workers": workers,
        "values_per_ciphertext": P.Packer.for_range(
            proto.paillier.encoder.q_max, clients, key_bits
        ).slots,
        "max_abs_error": {
            "single": float(np.max(np.abs(agg.total - exact))),
            "threshold": float(np.max(np.abs(result.total - exact))),
            "stated_bound": bound,
        },
        "ceremony_s": ceremony_s,
        "simulated_setup_s": setup_s,
        "single_keygen_per_round_s": keygen_single,
        "wall_s": {"single": single_wall, "threshold": threshold_wall},
        "wall_ratio": threshold_wall / single_wall,
        "server_cpu_s": {"single": s_stats.server_seconds, "threshold": t_stats.server_seconds},
        "client_encrypt_cpu_s_per_client": enc_per_client,
        "encrypt_ratio": enc_per_client["threshold"] / enc_per_client["single"],
        "decryptor_cpu_s": {"single": decryptor_unmask, "threshold_slowest_member": member_unmask},
        "critical_path_s": critical,
        "critical_path_ratio": critical["threshold"] / critical["single"],
        "bytes_per_client": per_client_bytes,
        "bytes_per_client_ratio": per_client_bytes["threshold"] / per_client_bytes["single"],
        "bytes_non_member_ratio": per_client_bytes["threshold_non_member"]
        / per_client_bytes["single"],
        "bytes_up_ratio": t_stats.bytes_up / s_stats.bytes_up,
    }


def _print_table(res: dict[str, Any]) -> None:
    p, c = res["paillier"], res["ckks"]
    rows = [
        ("Paillier naive phe encrypt", f"{p['naive']['seconds_per_value'] * 1e3:.2f} ms/value"),
        (
            "Paillier ours, cold (table+pool)",
            f"{p['ours']['seconds_per_value_cold'] * 1e6:.1f} us/value",
        ),
        ("Paillier ours, warm", f"{p['ours']['seconds_per_value_warm'] * 1e6:.1f} us/value"),
        (
            "Paillier ours, 1 worker",
            f"{p['ours']['seconds_per_value_1_worker'] * 1e6:.1f} us/value",
        ),
        (
            "Paillier ours, 256-bit exponent",
            f"{p['ours']['seconds_per_value_short_exponent_256'] * 1e6:.1f} us/value",
        ),
        (
            "Paillier speedup cold / warm / 1-worker CPU",
            f"{p['speedup_cold']:.0f}x / {p['speedup_warm']:.0f}x / {p['speedup_cpu_1_worker']:.0f}x",
        ),
        (
            "Paillier bytes/value naive / ours",
            f"{p['naive']['bytes_per_value']} / {p['ours']['bytes_per_value']:.2f} ({p['bytes_ratio_naive_over_ours']:.1f}x)",
        ),
        (
            f"Paillier aggregate {p['clients']} x {p['dim']}",
            f"decode {p['aggregate_decode_s']:.2f} s, sum {p['aggregate_sum_s']:.2f} s",
        ),
        (
            "Paillier decrypt + unpack",
            f"{p['decrypt_s']:.2f} s ({p['decrypt_1_worker_s']:.2f} s on 1 thread), exact={p['exact']}",
        ),
    ]
    for name in ("ours_default", "tenseal_tutorial"):
        r = c[name]
        rows.append(
            (
                f"CKKS {name} N={r['poly_modulus_degree']} {r['coeff_mod_bit_sizes']}",
                f"{r['bytes_per_value']:.1f} B/value, max err {r['max_abs_error']:.2e} "
                f"(bound {r['stated_bound']:.1e})",
            )
        )
    e = c["end_to_end"]
    rows.append(
        (
            f"CKKS end-to-end {c['clients']} x {c['dim']}",
            f"wrapper/raw = {e['ratio_median']:.3f} (median), {e['ratio_min']:.3f} (min), "
            f"{e['cpu_ratio_median']:.3f} (CPU); "
            f"raw {statistics.median(e['raw_tenseal_s']):.2f} s",
        )
    )
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print(f"load average: {res['load_start']:.2f} at start, {res['load_end']:.2f} at end")


def _print_threshold(t: dict[str, Any]) -> None:
    w, c, b = t["wall_s"], t["critical_path_s"], t["bytes_per_client"]
    key = f"{t['key_bits']}-bit" + (" (insecure test key)" if t["insecure_test_key"] else "")
    rows = [
        (
            f"Threshold Paillier n={t['clients']} d={t['dim']} m={t['committee']} t={t['threshold']}",
            f"{key}, {t['values_per_ciphertext']} values/ciphertext, {t['workers']} worker(s)",
        ),
        ("  key ceremony (once, not per round)", f"{t['ceremony_s']:.2f} s"),
        ("  single decryptor keygen (per round)", f"{t['single_keygen_per_round_s']:.2f} s"),
        (
            "  simulated round wall single / threshold",
            f"{w['single']:.1f} s / {w['threshold']:.1f} s = {t['wall_ratio']:.2f}x",
        ),
        (
            "  critical path single / threshold",
            f"{c['single']:.2f} s / {c['threshold']:.2f} s = {t['critical_path_ratio']:.2f}x",
        ),
        (
            "  encryption per client single / threshold",
            f"{t['client_encrypt_cpu_s_per_client']['single']:.3f} s / "
            f"{t['client_encrypt_cpu_s_per_client']['threshold']:.3f} s = {t['encrypt_ratio']:.2f}x",
        ),
        (
            "  decryptor / slowest member CPU",
            f"{t['decryptor_cpu_s']['single']:.2f} s / "
            f"{t['decryptor_cpu_s']['threshold_slowest_member']:.2f} s",
        ),
        (
            "  bytes per client single / threshold (mean)",
            f"{b['single'] / 1e3:.1f} kB / {b['threshold'] / 1e3:.1f} kB = "
            f"{t['bytes_per_client_ratio']:.2f}x",
        ),
        (
            "  bytes non-member / committee member",
            f"{b['threshold_non_member'] / 1e3:.1f} kB ({t['bytes_non_member_ratio']:.2f}x) / "
            f"{b['threshold_member_max'] / 1e6:.2f} MB",
        ),
        (
            "  max abs error single / threshold",
            f"{t['max_abs_error']['single']:.2e} / {t['max_abs_error']['threshold']:.2e} "
            f"(bound {t['max_abs_error']['stated_bound']:.1e})",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", type=Path, default=RESULTS, help=f"output (default {RESULTS})")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--dim", type=int, default=100_000)
    ap.add_argument("--paillier-dim", type=int, default=None, help="default: --dim")
    ap.add_argument("--naive-values", type=int, default=300)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--threshold-only", action="store_true", help="only the threshold section")
    ap.add_argument("--th-clients", type=int, default=100)
    ap.add_argument("--th-dim", type=int, default=10_000)
    ap.add_argument("--th-key-bits", type=int, default=2048)
    ap.add_argument("--th-committee", type=int, default=5)
    ap.add_argument("--th-threshold", type=int, default=3)
    ap.add_argument("--th-workers", type=int, default=1, help="per party, both protocols")
    args = ap.parse_args(argv)
    if args.quick:
        args.dim, args.clients, args.naive_values, args.repeats = 10_000, 3, 30, 1
        # Small insecure keys: a smoke test, not a figure.
        args.th_clients, args.th_dim, args.th_key_bits = 8, 500, 512
    res: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "usable_cpus": P.default_workers(),
            "python": platform.python_version(),
            "phe": phe.__version__,
            "tenseal": ts.__version__,
        },
        "load_start": _load(),
        "command": " ".join(sys.argv),
    }
    if not args.threshold_only:
        res["paillier"] = bench_paillier(
            args.paillier_dim or args.dim, args.clients, args.naive_values, args.seed
        )
        res["ckks"] = bench_ckks(args.dim, args.clients, args.repeats, args.seed)
    res["threshold_paillier"] = bench_threshold(
        args.th_clients, args.th_dim, args.th_key_bits, args.th_committee, args.th_threshold,
        args.seed, args.th_workers,
    )  # fmt: skip
    res["load_end"] = _load()
    if not args.threshold_only:
        _print_table(res)
    _print_threshold(res["threshold_paillier"])
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(res, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
