"""What Java does, bit for bit: String.hashCode, java.util.HashMap's iteration order,
gson's JSON writing. The SDK's signed header depends on all three."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def java_string_hash(text: str) -> int:
    """`String.hashCode()`: over UTF-16 code units, as a signed 32-bit int."""
    h = 0
    units = text.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + (units[i] << 8 | units[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def _bucket_hash(key: str) -> int:
    h = java_string_hash(key) & 0xFFFFFFFF
    return h ^ (h >> 16)  # HashMap.hash(): the high bits spread into the low ones


def java_hashmap_order(keys: Sequence[str]) -> list[str]:
    """The iteration order of a `java.util.HashMap` into which `keys` were put in this
    order (each once): by bucket, then by insertion within a bucket. A resize splits
    buckets preserving that relative order, so only the final capacity matters
    (16, doubled while the size exceeds 3/4 of it)."""
    capacity = 16
    while len(keys) > capacity * 3 // 4:
        capacity *= 2
    indexed = list(enumerate(keys))
    indexed.sort(key=lambda item: (_bucket_hash(item[1]) & (capacity - 1), item[0]))
    return [k for _, k in indexed]


_GSON_ESCAPES = {'"': '\\"', "\\": "\\\\", "\t": "\\t", "\b": "\\b", "\n": "\\n", "\r": "\\r"}
_GSON_ESCAPES |= {"\f": "\\f", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def gson_string(text: str) -> str:
    """A JSON string literal as gson's JsonWriter writes it (not HTML-safe): quotes,
    backslashes and control characters escaped, everything else as it is."""
    out = ['"']
    for ch in text:
        if ch in _GSON_ESCAPES:
            out.append(_GSON_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def gson_object(pairs: Iterable[tuple[str, str]]) -> str:
    """`JsonObject.toString()` of string properties, in the order given."""
    return "{" + ",".join(f"{gson_string(k)}:{gson_string(v)}" for k, v in pairs) + "}"
