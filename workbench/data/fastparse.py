"""The fast path of JSON ingestion: orjson where it provably gives the stdlib parser's result, and the
garbage collector paused while millions of records are built. Both are swapped out by tests and by
``benchmarks/ingest.py`` (through ``workbench.data.read``'s names) to compare against the reference path.
"""

from __future__ import annotations

import contextlib
import gc
import re
from typing import Any, Iterator

import orjson

_KEY_BEFORE_WS_COLON = re.compile(rb'"[ \t\r\n]+:')
_DIGITS_AS_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGIT_RUN = b"0" * 19  # integers of 19+ digits may exceed 64 bits: orjson would return them as floats


def _fast_loads(raw: bytes) -> Any:
    """Parse with orjson when that provably gives what the stdlib parser with duplicate-key detection gives.

    orjson (C/Rust, ~5x faster here) keeps the last value of a repeated key silently, so a parse is accepted
    only when the document's key tokens can be counted and equal the keys parsed: with no whitespace between a
    key's closing quote and its colon, every key token contributes one ``":`` byte pair, so
    ``raw.count(b'":')`` is at least the number of key tokens, and equality with the parsed keys (which can
    only be fewer when a key repeats) proves there is no repeat. Records must be flat objects (a nested object
    or a non-object record makes the count differ). Anything else - an orjson error (NaN literals, integers
    beyond 64 bits, lone surrogates, UTF-16/32, deep nesting), whitespace before a colon, a ``":`` inside a
    string, a repeated key - returns None and the caller takes the stdlib path, so messages and results are
    exactly the stdlib's. So does any run of 19 or more digits: orjson turns an integer beyond 64 bits into a
    float, where the stdlib keeps the integer (and the quarantine message shows it). Returns the document or
    None.
    """
    if _LONG_DIGIT_RUN in raw.translate(_DIGITS_AS_ZERO):
        return None
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if type(doc) is not dict or _KEY_BEFORE_WS_COLON.search(raw) is not None:
        return None
    prices = doc.get("prices")
    n_keys = len(doc)
    if type(prices) is list and prices:
        if set(map(type, prices)) != {dict}:
            return None
        n_keys += sum(map(len, prices))
    if raw.count(b'":') != n_keys:
        return None
    return doc


@contextlib.contextmanager
def _bulk_allocation() -> Iterator[None]:
    """Pause the cyclic garbage collector while millions of small containers are built.

    Parsing allocates a dict per record and a float per field; CPython's generational collector then runs
    every 2,000 allocations and re-traverses the young objects, which cost a quarter of the reading time.
    The records hold no reference cycles, so nothing is left for the collector; the previous state is
    restored on exit (also on error).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
