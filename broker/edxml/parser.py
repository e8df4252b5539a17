"""The one hardened XML parser for untrusted input.

No DTD is loaded, no entity is resolved, nothing is fetched from the network,
and any DOCTYPE is refused before libxml2 reads it. `huge_tree` is on because
edXML attachments are base64 text nodes of tens of MB (libxml2 refuses text
nodes over 10 MB otherwise); what huge_tree would loosen is bounded here
instead: the input size is checked by the caller before parsing, entities
cannot be declared (no DOCTYPE), and nesting is bounded by libxml2 (2048) and
by `max_depth` after the parse. Every failure becomes a located `Problem`.
"""

from __future__ import annotations

import re

from lxml import etree

from broker.core.errors import InputRefused
from broker.core.problems import Location, Problem

_POSITION_SUFFIX = re.compile(r",? line \d+, column \d+$")


def _parser() -> etree.XMLParser:
    # A parser object is not safe to share between threads: make one per call
    # (cheap) rather than a module-level one used from the worker pool.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=True,
        collect_ids=False,
        remove_comments=False,
    )


_PROLOG_WINDOW = 64 * 1024
_BLANK = re.compile(rb"\s*\Z")


def _prolog_text(data: bytes) -> str:
    """The start of the document as text, in the encoding its first bytes announce."""
    head = data[:_PROLOG_WINDOW]
    if head.startswith(b"\xef\xbb\xbf"):
        return head[3:].decode("utf-8", "replace")
    if head.startswith((b"\xff\xfe", b"<\x00")):
        return head.decode("utf-16-le", "replace").lstrip("\ufeff")
    if head.startswith((b"\xfe\xff", b"\x00<")):
        return head.decode("utf-16-be", "replace").lstrip("\ufeff")
    return head.decode("utf-8", "replace")


def doctype_line(data: bytes) -> int | None:
    """The line of a DOCTYPE that comes before the root element, or None.

    Checked before parsing: libxml2 reads the internal subset (entity
    declarations) before any callback could refuse it.
    """
    text = _prolog_text(data)
    pos = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if text.startswith("<?", pos):
            closing = "?>"
        elif text.startswith("<!--", pos):
            closing = "-->"
        else:
            return text.count("\n", 0, pos) + 1 if text.startswith("<!DOCTYPE", pos) else None
        end = text.find(closing, pos)
        if end < 0:
            return None
        pos = end + len(closing)


def _junk_before_markup(data: bytes) -> bytes | None:
    """Bytes before the first '<' of a UTF-8 document (real traffic: `1212<?xml`)."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff", b"\x00", b"<\x00")):
        return None  # UTF-16: libxml2 reads its own encoding
    body = data[3:] if data.startswith(b"\xef\xbb\xbf") else data
    head = body[:_PROLOG_WINDOW].lstrip(b" \t\r\n")
    if not head or head.startswith(b"<"):
        return None
    end = head.find(b"<")
    return head[:end] if end > 0 else head[:16]


def parse_untrusted(
    data: bytes, *, max_depth: int = 2048, max_elements: int = 1_000_000
) -> etree._ElementTree:
    """Parse bytes from outside; raise InputRefused with located problems.

    `max_elements` bounds the tree before it is built: every element costs
    libxml2 a few hundred bytes, so 30 MB of `<a/>` would otherwise take 650 MB.
    The count of '<' bytes is an upper bound on the number of elements.
    """
    refused = _refused_before_parsing(data, max_elements)
    if refused is not None:
        raise InputRefused([refused])
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        message = _POSITION_SUFFIX.sub("", exc.msg or str(exc))
        code = "too-deep" if message.startswith("Excessive depth") else "not-well-formed"
        if code == "too-deep":
            message = f"elements are nested deeper than {max_depth} levels"
        raise InputRefused([Problem(code, message, Location(line=line, column=column))]) from None
    tree = root.getroottree()
    deep = first_too_deep(root, max_depth)
    if deep is not None:
        raise InputRefused(
            [
                Problem(
                    "too-deep",
                    f"elements are nested deeper than {max_depth} levels",
                    Location(line=deep.sourceline),
                )
            ]
        )
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise InputRefused(
            [Problem("dtd-forbidden", "DOCTYPE declarations are not accepted", Location(line=1))]
        )
    return tree


def _refused_before_parsing(data: bytes, max_elements: int) -> Problem | None:
    """What refuses the bytes before libxml2 sees them: empty, a DOCTYPE, too many
    elements to build, junk before the prolog."""
    if _BLANK.match(data):
        return Problem("empty-input", "the document is empty")
    line = doctype_line(data)
    if line is not None:
        return Problem(
            "dtd-forbidden", "DOCTYPE declarations are not accepted", Location(line=line)
        )
    markup = data.count(b"<")
    if markup > 2 * max_elements:
        return Problem(
            "too-many-elements", f"about {markup // 2} elements; the limit is {max_elements}"
        )
    junk = _junk_before_markup(data)
    if junk is not None:
        return Problem(
            "not-well-formed",
            f"{len(junk)} stray byte(s) {junk[:16]!r} before the XML prolog: the document "
            "must start with '<' (or a byte order mark)",
            Location(line=1, column=1),
        )
    return None


def first_too_deep(root: etree._Element, max_depth: int) -> etree._Element | None:
    """The first element below `max_depth` levels (the root is level 1), or None."""
    depth = 0
    for event, el in etree.iterwalk(root, events=("start", "end")):
        if event == "start":
            depth += 1
            if depth > max_depth:
                return el
        else:
            depth -= 1
    return None
