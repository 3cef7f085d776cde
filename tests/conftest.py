"""Shared fixtures and helpers of the test suite."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

#: dtypes every core function is tested with
DTYPES = [np.uint8, np.uint16, np.float32, np.float64]


def random_data(shape, dtype, seed=0) -> np.ndarray:
    """Random test data of `dtype` spanning a good part of its range."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        high = min(np.iinfo(dtype).max, 2**20)
        low = max(np.iinfo(dtype).min, -(2**20))
        return rng.integers(low, high, size=shape, endpoint=True).astype(dtype)
    return (rng.standard_normal(shape) * 10 + 3).astype(dtype)


def checksum(array: np.ndarray) -> str:
    """Digest of an array's values, shape and dtype (to prove inputs are unchanged)."""
    array = np.asarray(array)
    digest = hashlib.sha256(np.ascontiguousarray(array).tobytes())
    digest.update(repr((array.shape, array.dtype.str)).encode())
    return digest.hexdigest()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(params=[1, 2], ids=["1-worker", "2-workers"])
def workers(request):
    """Run a test with the inline path and with the thread pool."""
    return request.param
