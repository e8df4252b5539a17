"""Making sender signatures the way real senders do, for the tests."""

from __future__ import annotations

from lxml import etree
from signxml import XMLSigner, methods

from broker.edxml.ns import DSIG_NS, NS
from broker.trust.certs import KeyMaterial

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"


class _LegacySigner(XMLSigner):
    """Real senders still sign with SHA-1 (the official samples do); tests must too."""

    def check_deprecated_methods(self) -> None:
        return None

    # A large attachment is one text node over lxml's default limit of 10 MB; the
    # senders' tools read such packages (and so does the broker's parser).
    _default_parser = etree.XMLParser(resolve_entities=False, huge_tree=True)


def sign_as_sender(
    data: bytes,
    material: KeyMaterial,
    *,
    profile: str = "xmldsig",
    algorithm: str = "rsa-sha256",
    digest: str = "sha256",
    certs: list | None = None,
) -> bytes:
    """An enveloped signature in edXMLHeader, as a sending agency's system makes it.

    profile "edxml": the same signature without its xmlns, so that it lands in
    the edXML namespace (what the official SDK's samples look like)."""
    root = etree.fromstring(data, etree.XMLParser(huge_tree=True))
    header = root.find(f"{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader")
    placeholder = etree.SubElement(header, f"{{{DSIG_NS}}}Signature", nsmap={None: DSIG_NS})
    placeholder.set("Id", "placeholder")
    signer = _LegacySigner(
        method=methods.enveloped,
        signature_algorithm=algorithm,
        digest_algorithm=digest,
        c14n_algorithm=EXC_C14N,
    )
    signer.namespaces = {None: DSIG_NS}
    signed = signer.sign(
        root, key=material.key, cert=certs if certs is not None else [material.certificate]
    )
    out = etree.tostring(signed, encoding="UTF-8", xml_declaration=True)
    if profile == "edxml":
        out = out.replace(f'<Signature xmlns="{DSIG_NS}">'.encode(), b"<Signature>", 1)
    return out
