"""Building blocks for private aggregation: no protocol state, no I/O.

Submodules: :mod:`~secagg.randomness`, :mod:`~secagg.encoding`,
:mod:`~secagg.modular`, :mod:`~secagg.shamir`, :mod:`~secagg.robust`,
:mod:`~secagg.keys`, :mod:`~secagg.identity`, :mod:`~secagg.prg`,
:mod:`~secagg.aead`, :mod:`~secagg.paillier`, :mod:`~secagg.ckks` and
:mod:`~secagg.privacy`.
"""

__version__ = "0.1.0"
