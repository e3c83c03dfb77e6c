"""The integer pipeline shared by the distributed discrete Gaussian and Skellam mechanisms.

Kairouz, Liu, Steinke, "The Distributed Discrete Gaussian Mechanism for
Federated Learning with Secure Aggregation", ICML 2021 (KLS below; arXiv
2102.06387), Algorithm 1; Agarwal, Kairouz, Liu, "The Skellam Mechanism for
Differentially Private Federated Learning", NeurIPS 2021, use the same
pipeline with another noise. Each client turns its real update into an integer
vector, adds integer noise per coordinate and reduces modulo 2^bits, so that
secure aggregation (which sums in Z_{2^bits}) reveals only the noisy sum.
Noise lives in the integers end to end: no floating-point noise ever touches
the data (cf. Mironov, CCS 2012).

Client, for an update ``x`` in R^dim:

1. clip: ``x ← x · min(1, c / ||x||₂)`` (L2 clip ``c = l2_clip``);
2. scale by ``1/γ`` (``γ`` = granularity, real units per integer unit);
3. rotate: ``y = H D pad(x)/γ`` (:class:`~secagg.privacy.rotation.RandomizedHadamard`,
   public seed, padded dimension ``D``), which flattens the vector;
4. conditional randomized rounding: round every coordinate stochastically
   (unbiased), and redraw until ``||ỹ||₂ <= Δ₂`` where (KLS Theorem 1)

   ``Δ₂ = min( c/γ + √D,  sqrt( (c/γ)² + D/4 + √(2 ln(1/β)) · (c/γ + √D/2) ) )``;

   each draw passes with probability >= 1 - β, and the bound, not the data,
   is the sensitivity;
5. add the subclass's integer noise (:meth:`RotatedIntegerMechanism._noise`);
6. reduce modulo ``2^bits``.

Server: reduce the modular sum mod ``2^bits``, map to signed integers in
``[-2^(bits-1), 2^(bits-1))`` (modular clipping), multiply by ``γ``, unrotate
and drop the padding. Any protocol modulus ``2^B`` with ``B >= bits`` works,
since reducing mod ``2^bits`` commutes with the sum.

A mechanism here only describes itself: its :meth:`~RotatedIntegerMechanism.event`
states the integer-domain sensitivities ``Δ₂`` and ``Δ₁ = min(√D·Δ₂, Δ₂²)``
and the noise; the RDP of that event is in :mod:`secagg.privacy.rdp_formulas`.

Wrap-around: ``γ`` is chosen so that the aggregate fits ``2^bits`` with high
probability. Over the random signs, every coordinate of the rotated sum of
``n`` clipped updates is sub-Gaussian with variance proxy ``(n c/γ)² / D``
(Hoeffding; needs the inputs independent of the public seed), the summed
noise has the subclass's moment generating function bound
(:meth:`~RotatedIntegerMechanism._noise_log_mgf`), and rounding moves the sum
by less than ``n``; a Chernoff and a union bound over the ``D`` coordinates
give the wrap probability. For Gaussian noise this is KLS's "k standard
deviations" rule with ``k = sqrt(2 ln(2D / p))`` for a target probability
``p`` (:func:`choose_gamma`). A wrap costs accuracy, never privacy (the noise
is added before the modulus).

Unbiasedness: stochastic rounding is unbiased, but conditioning on the norm
bound biases it slightly (KLS discuss this). The bias is tiny: with ``e`` the
rounding error and ``A`` the acceptance event, ``E[e | A] = -E[e·1{not A}] / P(A)``,
and for any unit vector ``u``, Cauchy–Schwarz gives
``|<E[e | A], u>| <= sqrt(E<e,u>²)·sqrt(P(not A)) / P(A) <= sqrt(β) / (2(1-β))``,
so ``||E[ỹ | A] - y||₂ <= sqrt(β)/(2(1-β))`` integer units per client (≈ 0.99
for the default β): at most ≈ ``n·γ`` in L2 norm over the whole decoded sum,
against noise of L2 norm ≈ ``sqrt(n D)·σγ``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy import optimize

from secagg import modular
from secagg.encoding import stochastic_round
from secagg.privacy.events import Event
from secagg.privacy.mechanisms import clip_l2, noise_clients
from secagg.privacy.rotation import RandomizedHadamard
from secagg.randomness import RandomSource, default_rng

__all__ = [
    "DEFAULT_BETA",
    "DEFAULT_WRAP_PROBABILITY",
    "RotatedIntegerMechanism",
    "choose_gamma",
    "conditional_randomized_round",
    "rounded_l1_bound",
    "rounded_l2_bound",
]

#: KLS's default bias parameter of conditional rounding: each draw passes with
#: probability >= 1 - e^{-1/2} ≈ 0.39, and the norm inflation term is
#: sqrt(2 ln(1/β)) = 1.
DEFAULT_BETA = math.exp(-0.5)

#: Default target for the probability that any coordinate of the aggregate wraps.
DEFAULT_WRAP_PROBABILITY = 1e-6

# Float64 has 53 bits of mantissa: scaled values must be exact integers-plus-fraction.
_MAX_BITS = 52


# --------------------------------------------------------------------------
# Sensitivity bounds after rounding
# --------------------------------------------------------------------------


def rounded_l2_bound(scaled_norm: float, dim: int, beta: float = DEFAULT_BETA) -> float:
    """L2 norm bound of a conditionally rounded vector (KLS Theorem 1, eq. for Δ₂).

    For ``y`` in R^dim with ``||y||₂ <= scaled_norm`` (= c/γ), randomized
    rounding gives ``||ỹ||₂ < scaled_norm + √dim`` always (triangle
    inequality, ``|ỹ_i - y_i| < 1``), and
    ``||ỹ||₂² <= scaled_norm² + dim/4 + √(2 ln(1/β))·(scaled_norm + √dim/2)``
    with probability >= 1 - β. Returns the min of the two: conditional
    rounding enforces it, so it is the L2 sensitivity in integer units.
    ``beta = 0`` means plain rounding (first bound only).
    """
    scaled_norm = float(scaled_norm)
    if not math.isfinite(scaled_norm) or scaled_norm < 0:
        raise ValueError(f"scaled_norm must be finite and >= 0, got {scaled_norm!r}")
    if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
        raise ValueError(f"dim must be a positive int, got {dim!r}")
    beta = float(beta)
    if not 0 <= beta < 1:
        raise ValueError(f"beta must be in [0, 1), got {beta!r}")
    root_d = math.sqrt(dim)
    bound_1 = scaled_norm + root_d
    if beta == 0:
        return bound_1
    bound_2 = math.sqrt(
        scaled_norm**2 + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (scaled_norm + root_d / 2)
    )
    return min(bound_1, bound_2)


def rounded_l1_bound(l2_bound: float, dim: int) -> float:
    """L1 sensitivity of an integer vector of L2 norm <= ``l2_bound`` in ``dim`` coordinates.

    ``||v||₁ <= √dim·||v||₂`` (Cauchy–Schwarz) and, for integer vectors,
    ``||v||₁ <= ||v||₂²`` (``|v_i| <= v_i²``); KLS use the minimum.
    """
    l2_bound = float(l2_bound)
    return l2_bound * min(math.sqrt(dim), l2_bound)


def conditional_randomized_round(
    y: np.ndarray, l2_bound: float, rng: RandomSource | None = None, *, max_tries: int = 10_000
) -> np.ndarray:
    """Round ``y`` stochastically to integers, redrawing until ``||ỹ||₂ <= l2_bound`` (int64).

    KLS Algorithm 1, step 3. Each coordinate goes to floor or ceil with the
    probabilities that make it unbiased (:func:`secagg.encoding.stochastic_round`);
    with ``l2_bound = rounded_l2_bound(||y||-bound, len(y), β)`` a draw passes
    with probability >= 1 - β.

    The norm is checked in float64 with a relative safety margin of
    ``4·len(y)·2^-53`` (the worst-case error of summing the squares), so the
    exact integer norm is guaranteed ``<= l2_bound``. Raises ``RuntimeError``
    after ``max_tries`` failures (which means ``l2_bound`` is below what the
    input admits, not bad luck).
    """
    arr = np.asarray(y, dtype=np.float64)
    if arr.ndim != 1 or not np.all(np.isfinite(arr)):
        raise ValueError("y must be a finite 1-D vector")
    if np.any(np.abs(arr) >= 2.0**_MAX_BITS):
        raise ValueError("|y| must be < 2^52 for exact float64 rounding")
    bound_sq = float(l2_bound) ** 2 * (1.0 - 4.0 * max(arr.size, 1) * 2.0**-53)
    source = default_rng(rng)
    for _ in range(max_tries):
        rounded = stochastic_round(arr, source)
        as_float = rounded.astype(np.float64)
        if float(np.dot(as_float, as_float)) <= bound_sq:
            return rounded
    raise RuntimeError(
        f"conditional rounding failed {max_tries} times: l2_bound={l2_bound} is too small "
        f"for a vector of norm {np.linalg.norm(arr):.6g} in {arr.size} dimensions"
    )


# --------------------------------------------------------------------------
# Granularity: how to fit the aggregate in 2^bits
# --------------------------------------------------------------------------


def _check_bits(bits: int) -> int:
    bits = modular.check_bits(bits)
    if not 2 <= bits <= _MAX_BITS:
        raise ValueError(
            f"bits must be in [2, {_MAX_BITS}] (scaled values must be exact in float64), got {bits}"
        )
    return bits


def choose_gamma(
    *,
    l2_clip: float,
    bits: int,
    num_clients: int,
    padded_dim: int,
    local_stddev: float,
    wrap_probability: float = DEFAULT_WRAP_PROBABILITY,
) -> float:
    """The granularity γ that keeps the sum of ``num_clients`` encodings inside ``2^bits``.

    Closed form for discrete Gaussian noise of real-valued per-client std
    ``local_stddev`` (so ``σ = local_stddev / γ`` in integer units), following
    KLS Section 4 (the "k standard deviations" heuristic of their code), made
    rigorous as explained in the module docstring: with ``n = num_clients``,
    ``A = 2^(bits-1) - n`` and ``k = sqrt(2 ln(2·padded_dim / wrap_probability))``,

    ``γ = k · sqrt(n² c² / padded_dim + n · local_stddev²) / A``

    makes ``P[some coordinate wraps] <= wrap_probability`` for inputs chosen
    independently of the rotation seed. Larger ``bits`` → smaller γ → finer
    quantization and less rounding inflation of the sensitivity.

    Raises ValueError if ``2^(bits-1) <= n`` (no room even for rounding).
    """
    bits = _check_bits(bits)
    if not (math.isfinite(l2_clip) and l2_clip > 0):
        raise ValueError(f"l2_clip must be positive and finite, got {l2_clip!r}")
    if not (math.isfinite(local_stddev) and local_stddev >= 0):
        raise ValueError(f"local_stddev must be finite and >= 0, got {local_stddev!r}")
    if not 0 < wrap_probability < 1:
        raise ValueError(f"wrap_probability must be in (0, 1), got {wrap_probability!r}")
    n = int(num_clients)
    headroom = 2.0 ** (bits - 1) - n
    if n < 1 or headroom <= 0:
        raise ValueError(f"bits={bits} leaves no room for {n} clients")
    k = math.sqrt(2.0 * math.log(2.0 * padded_dim / wrap_probability))
    spread = math.sqrt(n * n * l2_clip * l2_clip / padded_dim + n * local_stddev**2)
    return k * spread / headroom


# --------------------------------------------------------------------------
# The pipeline; subclasses add the noise (ddg.py, skellam.py)
# --------------------------------------------------------------------------


class RotatedIntegerMechanism:
    """Clip, scale, rotate, conditionally round, add integer noise, reduce mod 2^bits.

    Subclasses provide the noise (:meth:`_noise`), its log-MGF bound for the
    wrap analysis (:meth:`_noise_log_mgf`) and the event (:meth:`event`).
    """

    def __init__(
        self,
        dim: int,
        l2_clip: float,
        bits: int,
        expected_clients: int,
        noise_multiplier: float | None = None,
        *,
        rotation_seed: bytes | int | str,
        sigma: float | None = None,
        beta: float = DEFAULT_BETA,
        gamma: float | None = None,
        dropout_rate: float = 0.0,
        max_clients: int | None = None,
        wrap_probability: float = DEFAULT_WRAP_PROBABILITY,
    ) -> None:
        self._rotation = RandomizedHadamard(dim, rotation_seed)
        self._bits = _check_bits(bits)
        l2_clip = float(l2_clip)
        if not (math.isfinite(l2_clip) and l2_clip > 0):
            raise ValueError(f"l2_clip must be positive and finite, got {l2_clip!r}")
        self._clip = l2_clip
        self._noise_clients = noise_clients(expected_clients, dropout_rate)
        self._expected = int(expected_clients)
        self._max_clients = self._expected if max_clients is None else int(max_clients)
        if self._max_clients < 1:
            raise ValueError(f"max_clients must be >= 1, got {max_clients!r}")
        beta = float(beta)
        if not 0 <= beta < 1:
            raise ValueError(f"beta must be in [0, 1), got {beta!r}")
        self._beta = beta
        if not 0 < wrap_probability < 1:
            raise ValueError(f"wrap_probability must be in (0, 1), got {wrap_probability!r}")
        if (noise_multiplier is None) == (sigma is None):
            raise ValueError("give exactly one of noise_multiplier (real units) or sigma (integer units)")
        if gamma is not None:
            gamma = float(gamma)
            if not (math.isfinite(gamma) and gamma > 0):
                raise ValueError(f"gamma must be positive and finite, got {gamma!r}")
        padded = self._rotation.padded_dim
        if noise_multiplier is not None:
            z = float(noise_multiplier)
            if not (math.isfinite(z) and z > 0):
                raise ValueError(f"noise_multiplier must be positive and finite, got {z!r}")
            # Per-client real std so that m = noise_clients shares sum to z·c.
            local_real = z * l2_clip / math.sqrt(self._noise_clients)
            if gamma is None:
                guess = choose_gamma(
                    l2_clip=l2_clip, bits=self._bits, num_clients=self._max_clients,
                    padded_dim=padded, local_stddev=local_real, wrap_probability=wrap_probability,
                )
                gamma = self._solve_gamma(lambda g: local_real / g, wrap_probability, guess)
                # A coarser grid if the sampler cannot produce noise this wide exactly
                # (a larger gamma only lowers the wrap probability).
                gamma = max(gamma, local_real / self._MAX_SIGMA)
            self._sigma = local_real / gamma
        else:
            assert sigma is not None
            s = float(sigma)
            if not (math.isfinite(s) and s > 0):
                raise ValueError(f"sigma must be positive and finite, got {s!r}")
            if gamma is None:
                guess = choose_gamma(
                    l2_clip=l2_clip, bits=self._bits, num_clients=self._max_clients,
                    padded_dim=padded, local_stddev=0.0, wrap_probability=wrap_probability,
                )
                gamma = self._solve_gamma(lambda g: s, wrap_probability, guess)
            self._sigma = s
        self._gamma = float(gamma)
        self._scaled_clip = l2_clip / self._gamma
        if self._scaled_clip >= 2.0 ** (_MAX_BITS - 1):
            raise ValueError("gamma is too small: scaled values would exceed float64 precision")
        self._l2_bound = rounded_l2_bound(self._scaled_clip, padded, beta)
        self._l1_bound = rounded_l1_bound(self._l2_bound, padded)

    # ---- hooks ------------------------------------------------------------

    _MAX_SIGMA: float = math.inf
    """Largest per-client noise std (integer units) the sampler draws faithfully."""

    def _noise(self, n: int, rng: RandomSource) -> np.ndarray:
        raise NotImplementedError

    def _noise_log_mgf(self, t: float, sigma: float, clients: int) -> float:
        """An upper bound on log E[exp(t · noise)] of one coordinate of ``clients`` summed shares."""
        raise NotImplementedError

    def event(self, num_clients: int, *, sampling_probability: float | None = None) -> Event:
        raise NotImplementedError

    # ---- wrap analysis ------------------------------------------------------

    def _wrap_bound(self, gamma: float, sigma: float, clients: int) -> float:
        """Chernoff + union bound on P[any coordinate of the aggregate leaves the signed range]."""
        padded = self._rotation.padded_dim
        headroom = 2.0 ** (self._bits - 1) - clients  # rounding moves the sum by < clients
        if headroom <= 0:
            return 1.0
        signal_proxy = (clients * self._clip / gamma) ** 2 / padded

        def log_tail(t: float) -> float:
            return -t * headroom + 0.5 * t * t * signal_proxy + self._noise_log_mgf(t, sigma, clients)

        # log_tail is convex in t with log_tail'(0) = -headroom < 0; minimise on (0, hi].
        hi = 1.0
        while log_tail(2 * hi) < log_tail(hi) and hi < 1e12:
            hi *= 2
        best = optimize.minimize_scalar(log_tail, bounds=(0.0, 2 * hi), method="bounded",
                                        options={"xatol": 1e-12 * hi})
        value = min(float(best.fun), log_tail(hi), 0.0)
        return min(1.0, 2.0 * padded * math.exp(value))

    def _solve_gamma(
        self, sigma_of: Callable[[float], float], target: float, guess: float
    ) -> float:
        """Smallest γ (to 1e-9 relative) whose wrap bound with ``max_clients`` is <= target.

        ``sigma_of(γ)`` is the per-client integer std at granularity γ. The
        bound decreases in γ, so a doubling search and a geometric bisection
        find the threshold; ``guess`` (the Gaussian closed form) is a start.
        """
        n = self._max_clients
        if 2.0 ** (self._bits - 1) <= n:
            raise ValueError(f"bits={self._bits} leaves no room for {n} clients")

        def ok(g: float) -> bool:
            return self._wrap_bound(g, sigma_of(g), n) <= target

        hi = guess
        for _ in range(200):
            if ok(hi):
                break
            hi *= 2
        else:
            raise ValueError("no granularity keeps the aggregate inside 2^bits; use more bits")
        lo = hi / 2
        for _ in range(200):
            if not ok(lo):
                break
            hi, lo = lo, lo / 2
        for _ in range(100):
            if hi / lo < 1 + 1e-9:
                break
            mid = math.sqrt(lo * hi)
            if ok(mid):
                hi = mid
            else:
                lo = mid
        return hi

    def wrap_probability_bound(self, num_clients: int | None = None) -> float:
        """Upper bound on P[the sum of ``num_clients`` encodings wraps in some coordinate].

        Default ``num_clients`` = ``max_clients``. Valid over the choice of the
        rotation seed for inputs independent of it (see the module docstring).
        """
        k = self._max_clients if num_clients is None else int(num_clients)
        if k < 1:
            raise ValueError("num_clients must be >= 1")
        return self._wrap_bound(self._gamma, self._sigma, k)

    # ---- properties ----------------------------------------------------------

    @property
    def dim(self) -> int:
        """Dimension of the client updates."""
        return self._rotation.dim

    @property
    def padded_dim(self) -> int:
        """Length of the encoded vectors (next power of two >= dim)."""
        return self._rotation.padded_dim

    @property
    def bits(self) -> int:
        """Modulus exponent: encodings live in Z_{2^bits}."""
        return self._bits

    @property
    def l2_clip(self) -> float:
        """L2 clip of the real updates."""
        return self._clip

    @property
    def gamma(self) -> float:
        """Granularity: real units per integer unit."""
        return self._gamma

    @property
    def sigma(self) -> float:
        """Per-client noise std in integer units."""
        return self._sigma

    @property
    def beta(self) -> float:
        """Conditional-rounding parameter β."""
        return self._beta

    @property
    def expected_clients(self) -> int:
        """Number of clients the noise is planned for (before dropout over-provisioning)."""
        return self._expected

    @property
    def max_clients(self) -> int:
        """Number of summands the modulus was sized for."""
        return self._max_clients

    @property
    def noise_multiplier(self) -> float:
        """Aggregate noise std / l2_clip in real units when ``noise_clients`` shares arrive."""
        return self._sigma * self._gamma * math.sqrt(self._noise_clients) / self._clip

    @property
    def l2_sensitivity(self) -> float:
        """Δ₂ in integer units: the norm bound enforced by conditional rounding."""
        return self._l2_bound

    @property
    def sensitivity_inflation(self) -> float:
        """Δ₂ / (c/γ): how much rounding inflates the L2 sensitivity (KLS Theorem 1).

        Close to 1 when ``(c/γ)² >> D/4``; if it is well above 1 (too few bits
        for the dimension), epsilon grows by about its square: add bits.
        """
        return self._l2_bound / self._scaled_clip

    @property
    def l1_sensitivity(self) -> float:
        """Δ₁ = min(√D·Δ₂, Δ₂²) in integer units."""
        return self._l1_bound

    @property
    def rotation(self) -> RandomizedHadamard:
        """The public rotation."""
        return self._rotation

    # ---- client and server ---------------------------------------------------

    def client_encode_signed(self, x: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
        """Steps 1–5 of the client: the noised integer vector before the modulus (int64, length D)."""
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape != (self.dim,):
            raise ValueError(f"expected a vector of shape ({self.dim},), got {arr.shape}")
        source = default_rng(rng)
        scaled = self._rotation.forward(clip_l2(arr, self._clip)) / self._gamma
        rounded = conditional_randomized_round(scaled, self._l2_bound, source)
        return rounded + self._noise(self.padded_dim, source)

    def client_encode(self, x: np.ndarray, rng: RandomSource | None = None) -> np.ndarray:
        """The client's message for secure aggregation: uint64 residues mod 2^bits, length D.

        ``rng`` drives rounding and noise; default the OS CSPRNG (pass a
        :class:`~secagg.randomness.DeterministicRandom` only in tests).
        """
        signed = self.client_encode_signed(x, rng)
        return signed.view(np.uint64) & modular.mask(self._bits)

    def server_decode(self, total: np.ndarray, num_clients: int) -> np.ndarray:
        """Decode the modular sum of ``num_clients`` encodings to a float64 vector of length dim.

        ``total`` may be reduced modulo any ``2^B`` with ``B >= bits`` (it is
        reduced mod 2^bits here). ``num_clients`` is validated only; decoding
        does not depend on it, but sums of more than ``max_clients`` encodings
        are more likely to wrap (:meth:`wrap_probability_bound`).
        """
        arr = np.asarray(total)
        if arr.dtype != np.uint64 or arr.shape != (self.padded_dim,):
            raise ValueError(
                f"total must be a uint64 vector of shape ({self.padded_dim},), got {arr.dtype} {arr.shape}"
            )
        if isinstance(num_clients, bool) or not isinstance(num_clients, (int, np.integer)) or num_clients < 1:
            raise ValueError(f"num_clients must be a positive int, got {num_clients!r}")
        signed = modular.to_signed(arr, self._bits)  # modular clipping (KLS server step)
        return self._rotation.inverse(signed.astype(np.float64) * self._gamma)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dim={self.dim}, l2_clip={self._clip}, bits={self._bits}, "
            f"expected_clients={self._expected}, gamma={self._gamma:.6g}, sigma={self._sigma:.6g}, "
            f"beta={self._beta:.6g})"
        )

