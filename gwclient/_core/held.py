"""How many bytes a received event holds once decoded: what a subscription's byte bound
(``max_bytes``, ``config.max_queue_bytes``) counts.

An event frame is JSON text; decoded, every object, array, number and short string is a
Python object of its own, so an object-heavy frame takes 10-30 times its size in memory
(CPython 3.11: ``[{}, {}, ...]`` 24x, ``[[[]], ...]`` 30x, ``{"k1": 1, ...}`` 9x; a long
string about 1x).  Counting wire bytes let one never-reading subscriber hold ~1 GB at the
64 MiB default.  The estimate, computed from the frame text at C speed (three
``str.count`` scans, no walk over the decoded objects):

    held = len(frame) + PER_EVENT + PER_ELEMENT * (number of "{", "[" and ",")

Each ``{``/``[``/``,`` starts a JSON value or member, and :data:`PER_ELEMENT` is the most a
decoded element was measured to cost beyond its text (``scripts/bench_held.py`` prints
estimate/actual per shape), so the estimate is an upper bound for the shapes measured:
the queue holds at most about ``max_bytes`` of memory, and at worst (many small numbers)
about a third of it.  Commas inside strings count too: prose is over-counted a little.
"""

from __future__ import annotations

__all__ = ["PER_ELEMENT", "PER_EVENT", "held_size"]

#: Bytes a decoded JSON element may take beyond its own text (a dict entry with a new
#: key string: ~92 measured; a small int in a list: ~30).
PER_ELEMENT = 96
#: The Event wrapper, its name and its seq.
PER_EVENT = 256


def held_size(data: str | bytes) -> int:
    """The estimated bytes the decoded event of frame ``data`` holds (see the module)."""
    if isinstance(data, str):
        elements = data.count(",") + data.count("{") + data.count("[")
    else:
        elements = data.count(b",") + data.count(b"{") + data.count(b"[")
    return len(data) + PER_EVENT + PER_ELEMENT * elements
