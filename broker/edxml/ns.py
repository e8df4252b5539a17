"""Namespaces and element paths. Read by namespace, never by prefix."""

from __future__ import annotations

from lxml import etree

NS = "http://www.mic.gov.vn/TBT/QCVN_102_2016"
DSIG_NS = "http://www.w3.org/2000/09/xmldsig#"
PREFIX = "edXML"


def q(name: str) -> str:
    """Clark notation of an edXML element name: q("From") -> "{NS}From"."""
    return f"{{{NS}}}{name}"


def local(el: etree._Element) -> str:
    return etree.QName(el).localname


def element_path(el: etree._Element) -> str:
    """A readable path: /edXML/edXMLEnvelope/edXMLHeader/MessageHeader/To[2]/OrganId.

    Local names for edXML elements, `ds:` for XML-DSig, `{namespace}name` for others; a position is
    given where siblings share the name.
    """
    parts: list[str] = []
    node: etree._Element | None = el
    while node is not None:
        qn = etree.QName(node)
        if qn.namespace == NS:
            name = qn.localname
        elif qn.namespace == DSIG_NS:
            name = f"ds:{qn.localname}"
        else:
            name = f"{{{qn.namespace}}}{qn.localname}"
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name += f"[{same.index(node) + 1}]"
        parts.append(name)
        node = parent
    return "/" + "/".join(reversed(parts))
