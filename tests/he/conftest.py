"""Shared keys for the homomorphic-encryption tests (generated once per session: keygen is slow)."""

from __future__ import annotations

import pytest

from secagg import paillier


@pytest.fixture(scope="session")
def keypair_1024() -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    """A 1024-bit key: for tests only (real use needs 2048 bits or more)."""
    return paillier.generate_keypair(1024)


@pytest.fixture(scope="session")
def keypair_2048() -> tuple[paillier.PaillierPublicKey, paillier.PaillierPrivateKey]:
    return paillier.generate_keypair(2048)
