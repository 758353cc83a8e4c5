"""Pass sources and named methods (pure)."""

from __future__ import annotations

import threading

import pytest

from imager.erase.methods import METHODS, make_plan, parse_pass
from imager.erase.patterns import Keystream, Repeating, source_for
from imager.errors import UsageError
from imager.host.blockdev import aligned_buffer
from imager.model import PassSpec


def test_repeating_pattern_is_anchored_at_device_offset_zero() -> None:
    src = Repeating(bytes.fromhex("abcdef"))
    whole = src.expected(30, 0)
    assert whole == bytes.fromhex("abcdef") * 10
    assert src.expected(7, 5) == whole[5:12]
    buf = aligned_buffer(64)
    assert bytes(src.fill(buf, 7, 5)) == whole[5:12]


def test_keystream_is_seekable_and_depends_on_seed() -> None:
    seed = bytes(range(32))
    ks = Keystream(seed)
    whole = ks.expected(1 << 16, 0)
    assert ks.expected(4096, 8192) == whole[8192:12288]
    buf = aligned_buffer(1 << 16)
    assert bytes(ks.fill(buf, 4096, 4096)) == whole[4096:8192]
    assert Keystream(bytes(32)).expected(64, 0) != whole[:64]
    assert whole.count(0) < len(whole) // 100  # looks random, not zeros


def test_sources_for_every_pass_kind() -> None:
    assert source_for(PassSpec("zero")).expected(4, 0) == b"\0" * 4
    assert source_for(PassSpec("ones")).expected(4, 0) == b"\xff" * 4
    assert source_for(PassSpec("pattern", pattern="55aa")).expected(4, 1) == b"\xaa\x55\xaa\x55"
    seed = "11" * 32
    assert source_for(PassSpec("random", seed=seed)).expected(32, 0) == \
        Keystream(bytes.fromhex(seed)).expected(32, 0)


@pytest.mark.parametrize("bad", ["pattern:abc", "pattern:zz", "pattern:", "twice", "random:1",
                                 "zero,,ones"])
def test_bad_pass_is_refused_with_the_fix(bad: str) -> None:
    with pytest.raises(UsageError, match="unknown method .*pattern:HEX"):
        make_plan(bad, "full")


def test_named_methods_and_custom_lists() -> None:
    assert [p.kind for p in make_plan("dod-3pass", "full").passes] == ["zero", "ones", "random"]
    assert [p.kind for p in make_plan("nist-clear", "full").passes] == ["zero"]
    custom = make_plan("zero,random,pattern:55AA", "sample")
    assert [p.describe() for p in custom.passes] == ["zero", "random", "pattern:55aa"]
    assert custom.verify_seed and len(custom.verify_seed) == 32
    assert all(len(p.seed or "") == 64 for p in custom.passes if p.kind == "random")
    assert set(METHODS) >= {"nist-clear", "dod-3pass", "random"}
    assert parse_pass("ones").kind == "ones"
    assert [p.kind for p in make_plan("ones", "full").passes] == ["ones"]
    assert make_plan("zero", "full").standard == "custom overwrite"


def test_pattern_cache_stays_small_for_awkward_lengths() -> None:
    src = Repeating(bytes(range(1, 256)) + bytes(254))  # 509 bytes: every phase differs
    for off in range(0, 600 * 4096, 4096):
        assert src.expected(4096, off)[:1] == bytes([src.pattern[off % 509]])
    assert len(src._slices) <= 4


def test_sources_are_safe_across_threads() -> None:
    from conftest import in_threads

    def hammer() -> None:
        ks, rep = Keystream(bytes(32)), Repeating(b"\x5a\xa5\x00")
        for i in range(200):
            n = (threading.get_ident() % 7 * 4096 + i * 512) % 65536 + 512
            assert len(ks.expected(n, 0)) == n and len(rep.expected(n, i)) == n

    assert in_threads(hammer, 6) == []
