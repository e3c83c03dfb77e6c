"""Adapters that run the sans-I/O protocols over other FL stacks.

- :mod:`protocols.adapters.flower`: Flower's Message API (``pip install
  'secagg-fl[flower]'``). Import it explicitly; this package itself imports
  no FL framework, so ``import protocols`` never needs one.
"""

__all__: list[str] = []
