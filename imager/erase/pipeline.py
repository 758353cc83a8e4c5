"""A background producer filling a ring of aligned buffers, consumed in order.

The write pass uses it to prepare the next chunks (pattern or keystream)
while the current one is written; verification uses it to keep a read always
in flight while the previous chunk is compared. The consumer owns a buffer
until it asks for the next item.
"""

from __future__ import annotations

import mmap
import queue
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Generic, TypeVar

from imager.host.blockdev import aligned_buffer

T = TypeVar("T")


class Item(Generic[T]):
    __slots__ = ("offset", "length", "buf", "value")

    def __init__(self, offset: int, length: int, buf: mmap.mmap, value: T) -> None:
        self.offset, self.length, self.buf, self.value = offset, length, buf, value


def prefetch(pieces: Iterable[tuple[int, int]],
             produce: Callable[[mmap.mmap, int, int], T], *, chunk: int,
             depth: int = 3, name: str = "prefetch") -> Generator[Item[T], None, None]:
    """Yield Item(offset, length, buf, produce(buf, offset, length)) in order;
    closing the generator ends the producer thread."""
    bufs = [aligned_buffer(chunk) for _ in range(depth)]
    free: queue.Queue[mmap.mmap | None] = queue.Queue()
    ready: queue.Queue[Item[T] | BaseException | None] = queue.Queue()  # None: the end
    for b in bufs:
        free.put(b)
    stopped = threading.Event()

    def work() -> None:
        try:
            for off, n in pieces:
                buf = free.get()
                if buf is None or stopped.is_set():
                    return
                ready.put(Item(off, n, buf, produce(buf, off, n)))
        except BaseException as exc:  # handed to the consumer, raised there
            ready.put(exc)
            return
        ready.put(None)

    thread = threading.Thread(target=work, name=name, daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
            free.put(item.buf)
    finally:
        stopped.set()
        free.put(None)
        thread.join()
