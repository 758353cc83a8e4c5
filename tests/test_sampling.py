"""Sampled verification layout (NIST SP 800-88 Rev.1 §4.7): pure checks."""

from __future__ import annotations

import pytest

from imager.erase.verify import EDGE_BYTES, sample_ranges

GiB = 1 << 30


@pytest.mark.parametrize("size", [64 << 20, 2 * GiB, 500 * 10**9 // 4096 * 4096, 3 * GiB + 4096])
def test_sample_meets_nist_sampling_rules(size: int) -> None:
    seed = bytes(16)
    ranges = sample_ranges(size, 4096, seed)
    covered = sum(ln for _, ln in ranges)
    assert covered >= 0.10 * size
    assert ranges[0][0] == 0 and ranges[0][1] >= min(EDGE_BYTES, size) // 2
    last_off, last_len = ranges[-1]
    assert last_off + last_len == size
    for (a, la), (b, _) in zip(ranges, ranges[1:], strict=False):
        assert a + la < b  # merged, sorted, non-overlapping
    assert all(off % 4096 == 0 and ln % 4096 == 0 for off, ln in ranges[:-1])
    sub = size // 1000 // 4096 * 4096
    for s in range(1000):  # every subsection is sampled for at least 10 % of it
        lo, hi = s * sub, (s + 1) * sub
        inside = sum(max(0, min(o + ln, hi) - max(o, lo)) for o, ln in ranges)
        assert inside >= 0.10 * sub


def test_sample_is_reproducible_from_the_seed_and_changes_with_it() -> None:
    a = sample_ranges(GiB, 4096, b"\x01" * 16)
    assert a == sample_ranges(GiB, 4096, b"\x01" * 16)
    assert a != sample_ranges(GiB, 4096, b"\x02" * 16)


def test_tiny_medium_is_read_whole() -> None:
    assert sample_ranges(1 << 20, 4096, bytes(16)) == [(0, 1 << 20)]
