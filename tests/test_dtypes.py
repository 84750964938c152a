import ml_dtypes
import numpy as np
import pytest

from parentage.dtypes import DTYPES, decode
from parentage.synthetic import encode


@pytest.mark.parametrize("name, oracle", [("F8_E4M3", ml_dtypes.float8_e4m3fn), ("F8_E5M2", ml_dtypes.float8_e5m2)])
def test_fp8_decoding_matches_ml_dtypes_on_all_256_codes(name, oracle):
    codes = np.arange(256, dtype=np.uint8)
    ours = decode(name, codes)
    theirs = codes.view(oracle).astype(np.float32)
    np.testing.assert_array_equal(ours, theirs)  # NaNs compare equal in assert_array_equal


def test_bf16_decoding_matches_ml_dtypes_bit_for_bit():
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 1 << 16, size=4096, dtype=np.uint16)
    ours = decode("BF16", bits.view(np.uint8))
    theirs = bits.view(ml_dtypes.bfloat16).astype(np.float32)
    np.testing.assert_array_equal(ours.view(np.uint32), theirs.view(np.uint32))


def test_bf16_encoding_rounds_to_nearest_even_like_ml_dtypes():
    values = np.random.default_rng(1).standard_normal(4096).astype(np.float32)
    ours = np.frombuffer(encode(values, "BF16"), dtype=np.uint16)
    theirs = values.astype(ml_dtypes.bfloat16).view(np.uint16)
    np.testing.assert_array_equal(ours, theirs)


def test_every_dtype_decodes_its_own_itemsize():
    for name, dt in DTYPES.items():
        out = decode(name, np.zeros(dt.itemsize * 3, dtype=np.uint8))
        assert out.shape == (3,) and out.dtype == np.float32, name


def test_large_arrays_decode_identically_when_split_across_threads():
    from parentage import dtypes

    n = dtypes._PARALLEL_MIN + 12345  # not a multiple of the chunk or of the worker count
    bits = np.random.default_rng(3).integers(0, 1 << 16, size=n, dtype=np.uint16)
    ours = decode("BF16", bits.view(np.uint8))
    np.testing.assert_array_equal(ours.view(np.uint32), bits.view(ml_dtypes.bfloat16).astype(np.float32).view(np.uint32))
    codes = np.random.default_rng(4).integers(0, 256, size=n, dtype=np.uint8)
    np.testing.assert_array_equal(decode("F8_E4M3", codes), codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32))
