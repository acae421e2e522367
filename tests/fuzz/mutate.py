"""Strategies shared by the fuzz targets: byte-level mutations of valid files, and JSON-like values."""

import re

from hypothesis import event
from hypothesis import strategies as st

from difflab.errors import DifflabError

# values that tend to break parsers: zero, sign bits, all ones, quotes and braces of text formats
INTERESTING = [0x00, 0x01, 0x7F, 0x80, 0xFF, ord("{"), ord("}"), ord('"'), ord(","), ord("\n"), 0xE9]


@st.composite
def mutated(draw, base: bytes, max_edits: int = 8) -> bytes:
    """`base` with up to `max_edits` bit flips, byte overwrites, insertions, deletions or a truncation."""
    data = bytearray(base)
    for _ in range(draw(st.integers(0, max_edits))):
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        kind = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]))
        if kind == "flip":
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            data[i] = draw(st.sampled_from(INTERESTING) | st.integers(0, 255))
        elif kind == "insert":
            data[i:i] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del data[i:i + draw(st.integers(1, 16))]
        else:
            del data[i:]
    return bytes(data)


def file_bytes(*bases: bytes) -> st.SearchStrategy[bytes]:
    """Mostly mutations of valid files, sometimes arbitrary bytes."""
    return st.one_of(*(mutated(b) for b in bases), st.binary(max_size=256))


scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=4), max_leaves=20)


def loads_or_refuses(read, *args):
    """The property of every target: `read(*args)` returns, or raises DifflabError (one line). Anything
    else propagates and fails the test. Returns the result, or None when refused; the outcome is recorded
    as a hypothesis event (`pytest --hypothesis-show-statistics` shows the mix of refusals)."""
    try:
        result = read(*args)
    except DifflabError as e:
        text = str(e)
        assert "\n" not in text, text
        text = re.sub(r"^\w+\.py: |\S*/\S*", "", text).strip(" :")  # module prefixes, paths: vary per run
        reason = re.split(r"[(\d'\[]", text)[0].strip()
        event(f"refused: {reason[:50]}")
        return None
    event("loaded")
    return result
