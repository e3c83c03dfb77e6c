"""CKKS (via TenSEAL) for sum-only aggregation: parameters, contexts, vectors, bounds.

The key holder makes a context with the secret key and hands out a *public*
context (public key only: no secret key, no relinearization or Galois keys,
which a sum never needs). Clients encrypt with it, the server adds
ciphertexts with it, and only the key holder decrypts the aggregate::

    params = CKKSParams()                            # 128-bit secure defaults
    secret_ctx = make_context(params)                # key holder
    wire = export_public_context(secret_ctx)         # -> server and clients
    public_ctx = load_public_context(wire, params)   # server, clients
    cts = encrypt_vector(public_ctx, x)              # client: list[bytes]
    total = sum_encrypted(public_ctx, [cts_1, ..., cts_n])           # server
    x_sum = decrypt_vector(secret_ctx, total, dim)                    # key holder

Vectors longer than ``N/2`` (the slot count) are split over several
ciphertexts and joined again on decryption.

Parameters and security
-----------------------
The defaults are ``N = 8192``, ``coeff_mod_bit_sizes = (60, 40)`` and scale
``2^40``: one 60-bit data prime and one 40-bit special prime (log q = 100).
By the HomomorphicEncryption.org security standard (Albrecht et al.,
"Homomorphic Encryption Security Standard", 2018, Table 1: classical 128-bit
security, uniform ternary secret, which is what SEAL samples) the bound for
``N = 8192`` is log q <= 218, so the defaults are comfortably secure (they
would even be secure at ``N = 4096``, bound 109). Sums need no rescaling, so
a single data prime suffices; the special prime is what SEAL divides out after
public-key encryption (so the encryption noise shrinks to a rounding error)
and what TenSEAL requires to build a context at all. (That it is smaller
than the data prime would hurt key switching, which sums never do.)
``CKKSParams(4096, (60, 40))`` is also 128-bit secure, with the same bytes
per value and a public context half the size; 8192 matches
``protocols.CKKS``'s default and leaves a wider security margin. A ciphertext is two
polynomials over the data prime: 2 * N * 8 bytes for N/2 values, i.e. about
32 bytes per value, against about 83 for TenSEAL's tutorial parameters
(``N = 8192``, ``[60, 40, 40, 60]``), whose two extra 40-bit primes only
serve multiplications. :class:`CKKSParams` rejects parameters above the
standard's bound unless ``allow_insecure=True`` (which is insecure, for
experiments only). SEAL, under TenSEAL, enforces the same 128-bit table when
it builds a context, so with the TenSEAL we ship, :func:`make_context` still
refuses such parameters; the override only relaxes our own validation (for
describing or costing parameters) and the loaders' checks.

Encryption randomness is drawn inside SEAL (its PRNG, seeded from the OS).

Publishing decryptions (IND-CPA^D)
----------------------------------
A CKKS decryption is the message *plus the encryption noise*, and the noise
is a linear function of the secret key. Li and Micciancio ("On the Security
of Homomorphic Encryption on Approximate Numbers", EUROCRYPT 2021) show that
an adversary who knows the messages, holds the ciphertexts (the server
does) and sees the decryptions can recover the secret key. Clients' inputs
are unknown to an honest-but-curious server, but colluding clients know
theirs, so do not rely on that: if decrypted sums are released, use a fresh
key pair per aggregate (one released decryption per key), or have the key
holder flood the released sum with noise far above
:meth:`CKKSParams.error_bound` (Li, Micciancio, Schultz, Sorrell, CRYPTO
2022). This module does neither on its own.

Precision (:meth:`CKKSParams.error_bound`)
------------------------------------------
For ``n`` fresh ciphertexts of vectors with entries in ``[-clip, clip]``, each
slot of the decrypted sum differs from the exact sum by at most::

    n * (N/2 + B_scale + B_clean / P) / scale  +  2 * N * log2(N) * 2^-53 * n * clip

* ``N/2`` bounds the encoder's rounding of ``scale * m`` to integer
  coefficients (each coefficient moves by at most 1/2; a slot is an
  evaluation at a root of unity, so it moves by at most ``N/2``). Rigorous.
* ``B_scale = sqrt(N/3) * (3 + 8 sqrt(h))`` with ``h = N`` is the rounding
  error of dividing by the special prime ``P`` after public-key encryption
  (Cheon, Kim, Kim, Song, "Homomorphic Encryption for Arithmetic of
  Approximate Numbers", ASIACRYPT 2017, Lemma 2; ``h`` is the secret's
  Hamming weight, ``N`` being the worst case for a ternary secret).
* ``B_clean = 8 sqrt(2) sigma N + 6 sigma sqrt(N) + 16 sigma sqrt(h N)``,
  ``sigma = 3.2``, is the fresh public-key encryption noise (same paper,
  Lemma 1), divided by ``P >= 2^(bits of the last prime - 1)``.
* The last term covers double-precision FFTs in encoding and decoding.
* Noises of different ciphertexts add (triangle inequality), hence ``n``.

``B_scale`` and ``B_clean`` are the paper's high-probability bounds (about
six standard deviations), not worst cases. At the defaults the bound is about
``3.8e-8`` per summand; measured maxima over 10^5 slots are 3-4x smaller per
ciphertext, and sums of independent noises grow like ``sqrt(n)``, not ``n``
(see ``benchmarks/he.py``). Decoding is only correct while the sum fits:
``n * clip <= params.max_abs_total`` (``2^17`` at the defaults).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

try:
    import tenseal as ts
except ImportError as exc:  # CKKS is an extra: the light install has no tenseal
    raise ImportError("CKKS needs tenseal: pip install 'secagg-fl[ckks]'", name=exc.name) from exc

from .encoding import check_finite

__all__ = [
    "HE_STANDARD_MAX_LOG_Q",
    "CKKSParams",
    "add_loaded",
    "context_params",
    "decrypt_vector",
    "encrypt_vector",
    "export_public_context",
    "export_secret_context",
    "load_encrypted",
    "load_public_context",
    "load_secret_context",
    "make_context",
    "sum_encrypted",
]

#: Largest log2(q) (all primes, special prime included) for 128-bit classical security
#: with a uniform ternary secret: HomomorphicEncryption.org standard (2018), Table 1.
HE_STANDARD_MAX_LOG_Q: dict[int, int] = {
    1024: 27,
    2048: 54,
    4096: 109,
    8192: 218,
    16384: 438,
    32768: 881,
}

# SEAL's primes are at most 60 bits; it needs a prime = 1 (mod 2N) of each size.
_MAX_PRIME_BITS = 60
_MIN_PRIME_BITS = 17
# SEAL's error distribution: centered, standard deviation 3.2 (clipped at 6 sigma).
_SIGMA = 3.2


@dataclass(frozen=True)
class CKKSParams:
    """CKKS parameters for sum-only workloads, validated against the HE standard.

    Args:
        poly_modulus_degree: ``N``, a power of two in 1024..32768; ``N/2``
            values per ciphertext.
        coeff_mod_bit_sizes: bit sizes of the primes; all but the last hold
            the data, the last is the special prime. At least two (TenSEAL
            needs a special prime), each 17..60 bits.
        global_scale: the encoding scale; precision is about ``1/scale``.
        allow_insecure: accept ``sum(coeff_mod_bit_sizes)`` above the
            standard's 128-bit bound. INSECURE: for experiments only (and
            SEAL itself still refuses to build such a context).

    Raises ValueError on anything else (in particular on insecure moduli).
    """

    poly_modulus_degree: int = 8192
    coeff_mod_bit_sizes: tuple[int, ...] = (60, 40)
    global_scale: float = 2.0**40
    allow_insecure: bool = False

    def __post_init__(self) -> None:
        n = self.poly_modulus_degree
        if isinstance(n, bool) or not isinstance(n, int) or n not in HE_STANDARD_MAX_LOG_Q:
            raise ValueError(
                f"poly_modulus_degree must be one of {sorted(HE_STANDARD_MAX_LOG_Q)}, got {n!r}"
            )
        sizes = tuple(self.coeff_mod_bit_sizes)
        object.__setattr__(self, "coeff_mod_bit_sizes", sizes)
        if len(sizes) < 2:
            raise ValueError("coeff_mod_bit_sizes needs a data prime and a special prime")
        for b in sizes:
            if isinstance(b, bool) or not isinstance(b, int):
                raise ValueError(f"prime bit sizes must be ints, got {b!r}")
            if not _MIN_PRIME_BITS <= b <= _MAX_PRIME_BITS:
                raise ValueError(
                    f"prime bit sizes must be in [{_MIN_PRIME_BITS}, {_MAX_PRIME_BITS}], got {b}"
                )
        if not isinstance(self.allow_insecure, bool):
            raise ValueError("allow_insecure must be a bool")
        bound = HE_STANDARD_MAX_LOG_Q[n]
        if sum(sizes) > bound and not self.allow_insecure:
            raise ValueError(
                f"insecure parameters: log q = {sum(sizes)} exceeds {bound}, the "
                f"HomomorphicEncryption.org bound for 128-bit security at N = {n} "
                f"(pass allow_insecure=True only for experiments)"
            )
        scale = self.global_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise ValueError(f"global_scale must be a number, got {scale!r}")
        if not (math.isfinite(scale) and scale > 1):
            raise ValueError(f"global_scale must be finite and > 1, got {scale!r}")
        object.__setattr__(self, "global_scale", float(scale))
        if self.max_abs_total < 1:
            raise ValueError(
                f"global_scale 2^{math.log2(scale):.1f} leaves no room in a "
                f"{self.data_modulus_bits}-bit data modulus"
            )

    @property
    def slots(self) -> int:
        """Values per ciphertext: ``N/2``."""
        return self.poly_modulus_degree // 2

    @property
    def data_modulus_bits(self) -> int:
        """Bits of the ciphertext modulus (all primes but the special one)."""
        return sum(self.coeff_mod_bit_sizes[:-1])

    @property
    def is_secure(self) -> bool:
        """Whether ``log q`` is within the HE standard's 128-bit bound."""
        return sum(self.coeff_mod_bit_sizes) <= HE_STANDARD_MAX_LOG_Q[self.poly_modulus_degree]

    @property
    def max_abs_total(self) -> float:
        """Largest ``|sum|`` per slot that still decodes: ``2^(data bits - 3) / scale``.

        The data modulus ``q >= 2^(bits-1)``; decoding needs ``|scale*sum + noise| < q/2``,
        and one more bit of margin absorbs the noise.
        """
        return 2.0 ** (self.data_modulus_bits - 3) / self.global_scale

    def error_bound(self, summands: int, clip: float) -> float:
        """Bound on ``|decrypted - exact|`` per slot for a sum of ``summands`` fresh encryptions.

        See the module docstring for the derivation. Raises ValueError if
        ``summands * clip`` exceeds :attr:`max_abs_total` (the sum would wrap).
        """
        if summands < 0 or not (math.isfinite(clip) and clip >= 0):
            raise ValueError("summands and clip must be non-negative")
        if summands * clip > self.max_abs_total:
            raise ValueError(
                f"a sum of {summands} values of magnitude {clip} exceeds "
                f"max_abs_total={self.max_abs_total:g}"
            )
        n = self.poly_modulus_degree
        h = n  # worst-case Hamming weight of a ternary secret
        b_scale = math.sqrt(n / 3) * (3 + 8 * math.sqrt(h))
        b_clean = 8 * math.sqrt(2) * _SIGMA * n + 6 * _SIGMA * math.sqrt(n)
        b_clean += 16 * _SIGMA * math.sqrt(h * n)
        special_prime_min = 2.0 ** (self.coeff_mod_bit_sizes[-1] - 1)
        per_ciphertext = (n / 2 + b_scale + b_clean / special_prime_min) / self.global_scale
        floating = 2 * n * math.log2(n) * 2.0**-53 * summands * clip
        return summands * per_ciphertext + floating

    @property
    def bytes_per_value(self) -> float:
        """Approximate serialized ciphertext bytes per value: 2 polynomials of 8-byte words."""
        return 2 * self.poly_modulus_degree * 8 * (len(self.coeff_mod_bit_sizes) - 1) / self.slots


# --------------------------------------------------------------------- contexts


def make_context(params: CKKSParams | None = None) -> ts.Context:
    """A CKKS context holding the secret key (for the key holder only)."""
    params = params or CKKSParams()
    if not isinstance(params, CKKSParams):
        raise TypeError("params must be a CKKSParams")
    try:
        ctx = ts.context(
            ts.SCHEME_TYPE.CKKS,
            poly_modulus_degree=params.poly_modulus_degree,
            coeff_mod_bit_sizes=list(params.coeff_mod_bit_sizes),
        )
    except Exception as exc:  # SEAL rejects e.g. prime sizes with no prime = 1 mod 2N
        raise ValueError(f"TenSEAL rejected the parameters: {exc}") from exc
    ctx.global_scale = params.global_scale
    return ctx


def export_public_context(ctx: ts.Context) -> bytes:
    """Serialize the public part of ``ctx``: public key only, no secret/relin/Galois keys."""
    data: bytes = ctx.serialize(  # tenseal ships no type hints
        save_public_key=True, save_secret_key=False, save_galois_keys=False, save_relin_keys=False
    )
    return data


def export_secret_context(ctx: ts.Context) -> bytes:
    """Serialize ``ctx`` *with* its secret key, for the key holder's own storage only."""
    if not ctx.is_private():
        raise ValueError("context has no secret key")
    data: bytes = ctx.serialize(  # tenseal ships no type hints
        save_public_key=True, save_secret_key=True, save_galois_keys=False, save_relin_keys=False
    )
    return data


def context_params(ctx: ts.Context) -> tuple[int, int, int, float]:
    """``(N, total modulus bits, data modulus bits, global scale)`` read back from a context."""
    seal = ctx.seal_context().data
    key_data = seal.key_context_data()
    first = seal.first_context_data()
    return (
        int(key_data.parms().poly_modulus_degree()),
        int(key_data.total_coeff_modulus_bit_count()),
        int(first.total_coeff_modulus_bit_count()),
        float(ctx.global_scale),
    )


def _load_context(data: bytes) -> ts.Context:
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"context must be bytes, got {type(data).__name__}")
    try:
        ctx = ts.context_from(bytes(data))
        if ctx.seal_context().data.key_context_data().parms().scheme() != ts.SCHEME_TYPE.CKKS.value:
            raise ValueError("not a CKKS context")
        if not ctx.has_public_key():
            raise ValueError("context has no public key")
    except ValueError as exc:
        raise ValueError(f"invalid CKKS context: {exc}") from exc
    except Exception as exc:  # TenSEAL/SEAL raise RuntimeError and others on garbage
        raise ValueError(f"invalid CKKS context: {exc}") from exc
    return ctx


def _check_context_params(ctx: ts.Context, params: CKKSParams | None) -> None:
    n, total_bits, _, scale = context_params(ctx)
    bound = HE_STANDARD_MAX_LOG_Q.get(n)
    allow = params is not None and params.allow_insecure
    if bound is None or (total_bits > bound and not allow):
        raise ValueError(f"context parameters are insecure: N={n}, log q={total_bits}")
    if params is not None:
        # Bit sizes of individual primes are not exposed; N, log q and scale are.
        if n != params.poly_modulus_degree or total_bits != sum(params.coeff_mod_bit_sizes):
            raise ValueError(
                f"context has N={n}, log q={total_bits}; expected N={params.poly_modulus_degree}, "
                f"log q={sum(params.coeff_mod_bit_sizes)}"
            )
        if scale != params.global_scale:
            raise ValueError(f"context scale {scale} != expected {params.global_scale}")


def load_public_context(data: bytes, params: CKKSParams | None = None) -> ts.Context:
    """Decode :func:`export_public_context` output for the server or a client.

    Raises ValueError on garbage, a non-CKKS context, insecure parameters,
    parameters different from ``params`` (if given), or a context that
    carries a secret key (a public context must not).
    """
    ctx = _load_context(data)
    if ctx.has_secret_key():
        raise ValueError("a public context must not contain the secret key")
    _check_context_params(ctx, params)
    return ctx


def load_secret_context(data: bytes, params: CKKSParams | None = None) -> ts.Context:
    """Decode :func:`export_secret_context` output (key holder). ValueError on garbage."""
    ctx = _load_context(data)
    if not ctx.has_secret_key():
        raise ValueError("context has no secret key")
    _check_context_params(ctx, params)
    return ctx


# ---------------------------------------------------------------------- vectors


def _slots(ctx: ts.Context) -> int:
    return int(ctx.seal_context().data.key_context_data().parms().poly_modulus_degree()) // 2


def _load_vector(ctx: ts.Context, data: bytes, expected_size: int | None) -> ts.CKKSVector:
    """Deserialize one CKKS vector and check it is a fresh-level ciphertext for ``ctx``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"ciphertext must be bytes, got {type(data).__name__}")
    try:
        vec = ts.ckks_vector_from(ctx, bytes(data))
        size = vec.size()
        cts = vec.ciphertext()
    except Exception as exc:  # TenSEAL raises ValueError, RuntimeError, ... on garbage
        raise ValueError(f"invalid CKKS ciphertext: {exc}") from exc
    if expected_size is not None and size != expected_size:
        raise ValueError(f"ciphertext holds {size} values, expected {expected_size}")
    if not 1 <= size <= _slots(ctx):
        raise ValueError(f"ciphertext size {size} out of range")
    if len(cts) != 1:
        raise ValueError("a CKKS vector must hold exactly one ciphertext")
    ct = cts[0]
    seal = ctx.seal_context().data
    if ct.size() != 2 or ct.parms_id() != seal.first_parms_id() or not ct.is_ntt_form():
        raise ValueError("ciphertext is not a fresh ciphertext for this context")
    if ct.scale != ctx.global_scale:
        raise ValueError(f"ciphertext scale {ct.scale} != context scale {ctx.global_scale}")
    return vec


def _chunk_sizes(dim: int, slots: int) -> list[int]:
    return [min(slots, dim - start) for start in range(0, dim, slots)]


def encrypt_vector(public_ctx: ts.Context, x: np.ndarray) -> list[bytes]:
    """Encrypt a real vector as ``ceil(len(x) / (N/2))`` serialized CKKS vectors.

    Works with a public or a secret context (the public key is used either
    way). Raises ValueError on an empty, non-1-D or non-finite ``x``, or on
    entries beyond the context's ``max_abs_total`` (they would wrap).
    Keeping ``n * max|x| <= max_abs_total`` for a sum of ``n`` vectors is the
    caller's job (clip first).
    """
    arr = check_finite(x)
    if arr.size == 0:
        raise ValueError("cannot encrypt an empty vector")
    _, _, data_bits, scale = context_params(public_ctx)
    limit = 2.0 ** (data_bits - 3) / scale
    if float(np.max(np.abs(arr))) > limit:
        raise ValueError(f"values exceed the representable range +-{limit:g}")
    slots = _slots(public_ctx)
    # TenSEAL takes numpy slices directly; one C++ call per ciphertext, none per value.
    return [
        ts.ckks_vector(public_ctx, arr[start : start + slots]).serialize()
        for start in range(0, arr.size, slots)
    ]


def sum_encrypted(public_ctx: ts.Context, vectors: Sequence[Sequence[bytes]]) -> list[bytes]:
    """Add encrypted vectors (each a :func:`encrypt_vector` output) ciphertext by ciphertext.

    Needs only the public context. Raises ValueError on an empty list,
    vectors of different lengths or chunk sizes, or invalid ciphertexts.
    """
    if len(vectors) == 0:
        raise ValueError("nothing to sum")
    count = len(vectors[0])
    if count == 0:
        raise ValueError("empty encrypted vector")
    if any(len(v) != count for v in vectors):
        raise ValueError("encrypted vectors differ in the number of ciphertexts")
    slots = _slots(public_ctx)
    out = []
    for j in range(count):
        acc = _load_vector(public_ctx, vectors[0][j], None)
        size = acc.size()
        if j < count - 1 and size != slots:
            raise ValueError("only the last ciphertext of a vector may be partly filled")
        for v in vectors[1:]:
            acc.add_(_load_vector(public_ctx, v[j], size))
        out.append(acc.serialize())
    return out


def decrypt_vector(secret_ctx: ts.Context, ciphertexts: Sequence[bytes], dim: int) -> np.ndarray:
    """Decrypt and join :func:`encrypt_vector` / :func:`sum_encrypted` output (float64, ``dim``).

    Raises ValueError if ``secret_ctx`` has no secret key, if the number or
    sizes of the ciphertexts do not match ``dim``, or on invalid ciphertexts.
    """
    if not secret_ctx.is_private():
        raise ValueError("decryption needs the context with the secret key")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    sizes = _chunk_sizes(int(dim), _slots(secret_ctx))
    if len(ciphertexts) != len(sizes):
        raise ValueError(f"dim={dim} needs {len(sizes)} ciphertexts, got {len(ciphertexts)}")
    parts = [
        np.asarray(_load_vector(secret_ctx, c, size).decrypt(), dtype=np.float64)
        for c, size in zip(ciphertexts, sizes, strict=True)
    ]
    return np.concatenate(parts)


def load_encrypted(
    public_ctx: ts.Context, ciphertexts: Sequence[bytes], dim: int
) -> list[ts.CKKSVector]:
    """Deserialize and validate one :func:`encrypt_vector` output of length ``dim``.

    For aggregators that add vectors as they arrive (:func:`add_loaded`):
    every ciphertext is checked once, on arrival. Raises ValueError on a
    wrong count, wrong sizes or invalid ciphertexts.
    """
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    sizes = _chunk_sizes(int(dim), _slots(public_ctx))
    if len(ciphertexts) != len(sizes):
        raise ValueError(f"dim={dim} needs {len(sizes)} ciphertexts, got {len(ciphertexts)}")
    return [_load_vector(public_ctx, c, size) for c, size in zip(ciphertexts, sizes, strict=True)]


def add_loaded(vectors: Sequence[Sequence[ts.CKKSVector]]) -> list[bytes]:
    """Sum :func:`load_encrypted` outputs ciphertext by ciphertext; serialized result.

    The inputs are not modified. Raises ValueError on an empty list or on
    vectors that differ in the number or sizes of their ciphertexts.
    """
    if not vectors:
        raise ValueError("nothing to sum")
    totals = [v.copy() for v in vectors[0]]
    for vector in vectors[1:]:
        if len(vector) != len(totals):
            raise ValueError("encrypted vectors differ in the number of ciphertexts")
        for acc, part in zip(totals, vector, strict=True):
            if part.size() != acc.size():
                raise ValueError("encrypted vectors differ in ciphertext sizes")
            acc.add_(part)
    return [t.serialize() for t in totals]
