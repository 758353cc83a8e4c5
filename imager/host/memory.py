"""Zero-copy comparison of I/O buffers with expected bytes.

libc's memcmp through ctypes: no copy of the buffer, and ctypes releases the
GIL during the call, so comparing one chunk overlaps with reading the next.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
from collections.abc import Callable

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
_libc.memcmp.restype = ctypes.c_int
_libc.memcmp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
# memcmp(address, bytes or a ctypes array, length) -> int, as restype/argtypes say
_memcmp: Callable[[int, bytes | ctypes.Array[ctypes.c_char], int], int] = _libc.memcmp


def equal(buf: mmap.mmap, expected: bytes) -> bool:
    """True when the first len(expected) bytes of `buf` equal `expected`."""
    if len(expected) > len(buf):
        raise ValueError("expected data is longer than the buffer")
    view = ctypes.c_char.from_buffer(buf)  # the export ends with `view`
    try:
        return _memcmp(ctypes.addressof(view), expected, len(expected)) == 0
    finally:
        del view


def same(a: memoryview, b: memoryview) -> bool:
    """True when the two (writable, contiguous) views hold the same bytes."""
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    first = (ctypes.c_char * len(a)).from_buffer(a)
    try:
        second = (ctypes.c_char * len(b)).from_buffer(b)
        try:
            return _memcmp(ctypes.addressof(first), second, len(a)) == 0
        finally:
            del second
    finally:
        del first
