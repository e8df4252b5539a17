"""The one hardened XML parser for untrusted input.

No DTD is loaded, no entity is resolved, nothing is fetched from the network,
and any DOCTYPE is refused. Every failure becomes a `Problem` with a location.
"""

from __future__ import annotations

import re

from lxml import etree

from broker.errors import InputRefused
from broker.problems import Location, Problem

_POSITION_SUFFIX = re.compile(r",? line \d+, column \d+$")


def _parser() -> etree.XMLParser:
    # A parser object is not safe to share between threads: make one per call
    # (cheap) rather than a module-level one used from the worker pool.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        collect_ids=False,
        remove_comments=False,
    )


_PROLOG_WINDOW = 64 * 1024


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
            end = text.find("?>", pos)
        elif text.startswith("<!--", pos):
            end = text.find("-->", pos)
        else:
            return text.count("\n", 0, pos) + 1 if text.startswith("<!DOCTYPE", pos) else None
        if end < 0:
            return None
        pos = end + 2


def parse_untrusted(data: bytes) -> etree._ElementTree:
    """Parse bytes from outside; raise InputRefused with located problems."""
    if not data or not data.strip():
        raise InputRefused([Problem("empty-input", "the document is empty")])
    line = doctype_line(data)
    if line is not None:
        raise InputRefused(
            [Problem("dtd-forbidden", "DOCTYPE declarations are not accepted", Location(line=line))]
        )
    try:
        root = etree.fromstring(data, parser=_parser())
    except etree.XMLSyntaxError as exc:
        line, column = exc.position if exc.position else (None, None)
        message = _POSITION_SUFFIX.sub("", exc.msg or str(exc))
        raise InputRefused(
            [Problem("not-well-formed", message, Location(line=line, column=column))]
        ) from None
    tree = root.getroottree()
    if tree.docinfo.doctype or tree.docinfo.internalDTD is not None:
        raise InputRefused(
            [Problem("dtd-forbidden", "DOCTYPE declarations are not accepted", Location(line=1))]
        )
    return tree
