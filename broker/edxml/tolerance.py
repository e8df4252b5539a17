"""edXML elements the schema does not expect: which are tolerated, which refuse. Pure.

Vendors add elements of their own in the edXML namespace, and some put known
elements where the schema does not list them. Refusing those refuses real mail;
letting them anywhere would let a package be read two ways. So:

- an unexpected element inside From, To, ResponseFor or Bussiness, or one that
  is (or holds) a field routing or trust reads (OrganId, DocumentId, StatusCode,
  BussinessDocType, Signature, a header block...), stays a problem
  (`schema-invalid`): it could make the sender, the recipients, the document or
  its signature ambiguous;
- any other one is a warning (`unknown-element`), and the schema checks the
  package without it. Nothing is lost: docbroker forwards the sender's bytes.

Why strip and validate rather than loosen the schema with wildcards: XSD 1.0
cannot allow "any other edXML element" beside the named ones (a
##targetNamespace wildcard in the same choice breaks the Unique Particle
Attribution rule), and a lax wildcard for every namespace would also let a
misplaced `From` through unchecked. Stripping keeps the schema exactly as strict
for everything that remains, and it costs nothing for a regular package: the
walk runs only after the schema has refused the package as it came.

What a container may hold is read from the schema itself (`SchemaIndex`), so
the two cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from lxml import etree

from broker.edxml.ns import NS, local

XS = "http://www.w3.org/2001/XMLSchema"

# Blocks whose every part routing or trust reads: nothing unexpected is tolerated inside.
ROUTING_BLOCKS = frozenset({"From", "To", "ResponseFor", "Bussiness"})
# Names routing or trust reads: out of place, or inside an unexpected element, they refuse.
ROUTING_NAMES = frozenset(
    {
        "edXMLEnvelope",
        "edXMLHeader",
        "MessageHeader",
        "Status",
        "From",
        "To",
        "OrganId",
        "DocumentId",
        "ResponseFor",
        "StatusCode",
        "TraceHeaderList",
        "Bussiness",
        "BussinessDocType",
        "Signature",
    }
)


@dataclass(frozen=True, slots=True)
class SchemaIndex:
    """What the schema lets each edXML container hold, read from the schema itself."""

    declared: frozenset[str]  # every element name the schema declares
    children: dict[str, frozenset[str]]  # container -> the edXML names it may hold
    open: frozenset[str]  # containers that take any element (Signature, free blocks)

    @classmethod
    def of(cls, schema: etree._ElementTree) -> SchemaIndex:
        xs = {"xs": XS}
        top = schema.getroot()
        named_types = {t.get("name"): t for t in top.findall("xs:complexType", xs)}
        declared: set[str] = set()
        children: dict[str, frozenset[str]] = {}
        open_: set[str] = set()
        for el in top.findall("xs:element", xs):
            name = el.get("name", "")
            declared.add(name)
            complex_type = el.find("xs:complexType", xs)
            if complex_type is None:
                complex_type = named_types.get(el.get("type", "").removeprefix("e:"))
            if complex_type is None:
                continue  # a simple type: the schema itself refuses child elements
            parts = complex_type.findall(".//xs:element", xs)
            children[name] = frozenset(
                (p.get("ref") or p.get("name", "")).removeprefix("e:") for p in parts
            )
            declared |= {p.get("name", "") for p in parts}  # local declarations
            if any(
                a.get("namespace", "##any") == "##any"
                for a in complex_type.iterfind(".//xs:any", xs)
            ):
                open_.add(name)
        declared.discard("")
        return cls(frozenset(declared), children, frozenset(open_))


@dataclass(frozen=True, slots=True)
class Unexpected:
    """An edXML element where the schema does not expect it, and whether it refuses."""

    element: etree._Element
    message: str
    refuses: bool


def unexpected_elements(root: etree._Element, index: SchemaIndex) -> list[Unexpected]:
    """The outermost unexpected edXML elements, in document order."""
    return [_judge(el, index) for el in _walk(root, index)]


def _walk(root: etree._Element, index: SchemaIndex) -> Iterator[etree._Element]:
    stack = [root]
    while stack:
        el = stack.pop()
        name = local(el)
        allowed = index.children.get(name)
        if allowed is None or name in index.open:
            continue  # a value, or a block that takes anything: not ours to judge
        found: list[etree._Element] = []
        for c in el.iterchildren(tag=etree.Element):
            if etree.QName(c).namespace != NS:
                continue  # other namespaces are allowed everywhere
            if local(c) in allowed:
                found.append(c)
            else:
                yield c
        stack.extend(reversed(found))


def _judge(el: etree._Element, index: SchemaIndex) -> Unexpected:
    name, parent = local(el), local(el.getparent())
    what = (
        f"edXML:{name} is not expected in {parent}"
        if name in index.declared
        else f"edXML:{name} is not an element of the schema"
    )
    block = next((local(a) for a in el.iterancestors() if local(a) in ROUTING_BLOCKS), None)
    if block is not None:
        return Unexpected(el, f"{what}, inside {block}, which routing reads", True)
    if name in ROUTING_NAMES:
        return Unexpected(el, f"{what}: a field routing or trust reads, out of its place", True)
    held = next(
        (local(d) for d in el.iterdescendants(tag=f"{{{NS}}}*") if local(d) in ROUTING_NAMES),
        None,
    )
    if held is not None:
        return Unexpected(el, f"{what}, and holds edXML:{held}, a field routing reads", True)
    return Unexpected(el, f"{what}; ignored (forwarded unchanged)", False)


def strip(elements: list[Unexpected]) -> None:
    """Take the elements out of their tree, keeping the text that follows each."""
    for u in elements:
        el = u.element
        parent = el.getparent()
        if parent is None:
            continue
        if el.tail:
            before = el.getprevious()
            if before is not None:
                before.tail = (before.tail or "") + el.tail
            else:
                parent.text = (parent.text or "") + el.tail
        parent.remove(el)
