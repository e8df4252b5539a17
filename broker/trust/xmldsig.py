"""XML signatures on edXML packages: finding, verifying, and the broker's own.

Two places, two roles:
- the **sender's** signature sits in `edXMLEnvelope/edXMLHeader`: standard
  XML-DSig, or the edXML-namespace profile real senders use (the same
  Signature without its `xmlns="http://www.w3.org/2000/09/xmldsig#"`, which
  leaves it in the edXML namespace);
- the **broker's** signature is an XML-DSig `ds:Signature` appended as the last
  child of the root, after the envelope and the attachments, where edXML
  readers do not look; it covers the whole package (URI="", enveloped).

Verification is signxml's: one reference, URI="" (the whole document), the
signature location pinned, algorithms restricted (SHA-1 only where a policy
allows legacy), the certificate chain checked against our trust store first
and then handed to signxml as the only acceptable key. Only what verify()
returns is acted on. A signature anywhere else is reported, never trusted.

An edXML-profile signature is verified by giving it back its XML-DSig namespace
(as an unprefixed default namespace, the form .NET's SignedXml writes) in a
copy of the document; SignedInfo is canonicalized on its own, as signxml does.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from lxml import etree
from signxml import SignatureConfiguration, XMLSigner, XMLVerifier, methods
from signxml.algorithms import DigestAlgorithm, SignatureMethod
from signxml.exceptions import InvalidCertificate, InvalidDigest, InvalidInput, InvalidSignature

from broker.edxml.builder import XML_DECLARATION, add_trace_header
from broker.edxml.ns import DSIG_NS, NS, element_path, q
from broker.edxml.parser import _parser, parse_untrusted
from broker.trust.certs import KeyMaterial, fingerprint, subject_text, subject_uid
from broker.trust.store import TrustStore

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
SENDER_LOCATION = f"./{{{NS}}}edXMLEnvelope/{{{NS}}}edXMLHeader/"
BROKER_LOCATION = "./"

_SHA1_METHODS = frozenset(m for m in SignatureMethod if "SHA1" in m.name)
_SHA1_DIGESTS = frozenset(d for d in DigestAlgorithm if "SHA1" in d.name)
_STRONG_METHODS = frozenset(
    m for m in SignatureMethod if m not in _SHA1_METHODS and not m.name.startswith(("HMAC", "DSA"))
)
_STRONG_DIGESTS = frozenset(d for d in DigestAlgorithm if d not in _SHA1_DIGESTS)


class Role(StrEnum):
    SENDER = "sender"  # in edXMLHeader: the sending agency's
    BROKER = "broker"  # a direct child of the root: a broker's (this one's or another's)
    UNEXPECTED = "unexpected"  # anywhere else: never trusted


# Why a signature is not valid, as the problem code a refusal carries.
SIGNATURE_INVALID = "signature-invalid"  # malformed, tampered, misplaced
SIGNER_UNTRUSTED = "signer-untrusted"  # no chain to a trusted CA, expired, revoked
WEAK_ALGORITHM = "weak-algorithm"  # SHA-1 without a legacy policy


@dataclass(frozen=True)
class SignatureResult:
    """One signature: where, whose, which algorithm, valid or why not."""

    role: Role
    profile: str  # "xmldsig" or "edxml"
    path: str
    valid: bool
    reason: str = ""
    failure: str = ""  # the problem code when not valid
    algorithm: str = ""
    digest: str = ""
    signer: str = ""  # certificate subject
    signer_uid: str | None = None
    signer_fingerprint: str = ""
    signer_not_after: str = ""  # the certificate's notAfter (ISO 8601, UTC)
    revocation: str = ""  # good | unchecked | revoked | refused (ChainResult.revocation)
    revocation_detail: str = ""  # why unchecked, or what said good (crl, ocsp)
    signed_data: bytes | None = None  # what the signature covers, canonical (when valid)
    # signed_data as parsed by the verifier (in the verifying process only)
    signed_xml: etree._Element | None = field(default=None, compare=False, repr=False)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the parsed copy (an lxml tree does not cross processes)."""
        return {k: v for k, v in self.__dict__.items() if k != "signed_xml"}

    def to_dict(self) -> dict[str, Any]:
        return {
            "role": str(self.role),
            "profile": self.profile,
            "path": self.path,
            "valid": self.valid,
            "reason": self.reason,
            "algorithm": self.algorithm,
            "digest": self.digest,
            "signer": self.signer,
            "signer_uid": self.signer_uid,
            "signer_fingerprint": self.signer_fingerprint,
            "revocation": self.revocation,
            "revocation_detail": self.revocation_detail,
        }


def _short(uri: str) -> str:
    return uri.rsplit("#", 1)[-1] if uri else ""


def role_of(sig: etree._Element) -> Role:
    parent = sig.getparent()
    if parent is None:
        return Role.UNEXPECTED
    if (
        parent.tag == q("edXMLHeader")
        and parent.getparent() is not None
        and (parent.getparent().tag == q("edXMLEnvelope"))
    ):
        return Role.SENDER
    if parent.getparent() is None and etree.QName(sig).namespace == DSIG_NS:
        return Role.BROKER
    return Role.UNEXPECTED


def find_signatures(root: etree._Element) -> list[etree._Element]:
    return list(root.iter(q("Signature"), f"{{{DSIG_NS}}}Signature"))


def _as_xmldsig(sig: etree._Element) -> etree._Element:
    """A copy of an edXML-namespace Signature, back in the XML-DSig namespace."""
    out = etree.Element(f"{{{DSIG_NS}}}Signature", nsmap={None: DSIG_NS})

    def copy(src: etree._Element, dst: etree._Element) -> None:
        dst.text = src.text
        for k, v in src.attrib.items():
            dst.set(k, v)
        for c in src:
            if not isinstance(c.tag, str):  # comments and processing instructions
                continue
            qn = etree.QName(c)
            tag = f"{{{DSIG_NS}}}{qn.localname}" if qn.namespace == NS else c.tag
            new = etree.SubElement(dst, tag)
            copy(c, new)
            new.tail = c.tail

    copy(sig, out)
    out.tail = sig.tail
    return out


class _Verifier(XMLVerifier):
    """signxml's verifier with docbroker's hardened parser (large attachments)."""

    @property
    def parser(self) -> etree.XMLParser:  # type: ignore[override]
        return _parser()


class _Signer(XMLSigner):
    @property
    def parser(self) -> etree.XMLParser:  # type: ignore[override]
        return _parser()


class SignatureVerifier:
    """Verifies the signatures of a package against a trust store."""

    def __init__(self, trust: TrustStore) -> None:
        self.trust = trust

    def verify_all(
        self,
        data: bytes,
        *,
        at: datetime,
        allow_sha1: bool = False,
        enforce_revocation: bool = True,
    ) -> list[SignatureResult]:
        """Every signature, checked at time `at` (certificate validity, revocation:
        `enforce_revocation` as in TrustStore.verify)."""
        tree = parse_untrusted(data)
        root = tree.getroot()
        return [
            self._verify(root, sig, allow_sha1, at, enforce_revocation)
            for sig in find_signatures(root)
        ]

    def verify_sender(
        self,
        data: bytes,
        *,
        at: datetime,
        allow_sha1: bool = False,
        root: etree._Element | None = None,
        enforce_revocation: bool = True,
    ) -> tuple[SignatureResult | None, list[SignatureResult]]:
        """The sender's signature (None if absent) and any signature in a place where
        no signature belongs (a wrapping attempt). `root`: `data` already parsed (by
        the validator, unchanged), read only. `enforce_revocation`: a revocation that
        could not be checked makes the signature not valid under a refusing policy
        (else it is recorded in the result)."""
        if root is None:
            root = parse_untrusted(data).getroot()
        sigs = find_signatures(root)
        senders = [s for s in sigs if role_of(s) is Role.SENDER]
        stray = [
            SignatureResult(
                Role.UNEXPECTED,
                _profile(s),
                element_path(s),
                False,
                "a signature outside the places signatures go",
                failure=SIGNATURE_INVALID,
            )
            for s in sigs
            if role_of(s) is Role.UNEXPECTED
        ]
        if not senders:
            return None, stray
        if len(senders) > 1:
            extra = [
                SignatureResult(
                    Role.SENDER,
                    _profile(s),
                    element_path(s),
                    False,
                    "more than one signature in edXMLHeader",
                    failure=SIGNATURE_INVALID,
                )
                for s in senders
            ]
            return extra[0], stray + extra[1:]
        return self._verify(root, senders[0], allow_sha1, at, enforce_revocation), stray

    def _verify(
        self,
        root: etree._Element,
        sig: etree._Element,
        allow_sha1: bool,
        at: datetime,
        enforce_revocation: bool,
    ) -> SignatureResult:
        role = role_of(sig)
        base = SignatureResult(role, _profile(sig), element_path(sig), False)
        if role is Role.UNEXPECTED:
            return replace(
                base,
                reason="a signature outside the places signatures go",
                failure=SIGNATURE_INVALID,
            )
        # Work on a copy in which this signature is standard XML-DSig.
        doc = etree.fromstring(etree.tostring(root), _parser())
        target = next(s for s in find_signatures(doc) if element_path(s) == base.path)
        if etree.QName(target).namespace == NS:
            converted = _as_xmldsig(target)
            target.getparent().replace(target, converted)
            target = converted
        ns = {"ds": DSIG_NS}
        method = target.find("ds:SignedInfo/ds:SignatureMethod", ns)
        digest = target.find("ds:SignedInfo/ds:Reference/ds:DigestMethod", ns)
        refs = target.findall("ds:SignedInfo/ds:Reference", ns)
        base = replace(
            base,
            algorithm=_short(method.get("Algorithm", "")) if method is not None else "",
            digest=_short(digest.get("Algorithm", "")) if digest is not None else "",
        )
        if len(refs) != 1 or refs[0].get("URI") != "":
            return replace(
                base,
                reason='the signature must have one reference, URI="" (the whole document)',
                failure=SIGNATURE_INVALID,
            )
        certs, problem = _certificates(target)
        if problem:
            return replace(base, reason=problem, failure=SIGNATURE_INVALID)
        leaf = certs[0]
        base = replace(
            base,
            signer=subject_text(leaf),
            signer_uid=subject_uid(leaf),
            signer_fingerprint=fingerprint(leaf),
            signer_not_after=leaf.not_valid_after_utc.isoformat(),
        )
        if not allow_sha1 and ("sha1" in base.algorithm or "sha1" in base.digest):
            return replace(
                base,
                reason=f"SHA-1 ({base.algorithm}, {base.digest}) is refused "
                "unless the sender's policy allows legacy algorithms",
                failure=WEAK_ALGORITHM,
            )
        return self._chain_checked(doc, target, certs, base, allow_sha1, at, enforce_revocation)

    def _chain_checked(
        self,
        doc: etree._Element,
        target: etree._Element,
        certs: list[x509.Certificate],
        base: SignatureResult,
        allow_sha1: bool,
        at: datetime,
        enforce_revocation: bool,
    ) -> SignatureResult:
        """The signer's chain and revocation (recorded either way), then the value."""
        leaf = certs[0]
        chain = self.trust.verify(leaf, certs[1:], at=at, enforce_revocation=enforce_revocation)
        base = replace(base, revocation=chain.revocation, revocation_detail=chain.revocation_detail)
        if not chain.ok:
            return replace(base, reason=chain.reason, failure=SIGNER_UNTRUSTED)
        return _value_checked(doc, target, leaf, base, allow_sha1, at)


def _value_checked(
    doc: etree._Element,
    target: etree._Element,
    leaf: x509.Certificate,
    base: SignatureResult,
    allow_sha1: bool,
    at: datetime,
) -> SignatureResult:
    """signxml's verdict on the signature value, pinned to its place and certificate;
    trust only what it returns (signed_data)."""
    methods_ok = _STRONG_METHODS | (_SHA1_METHODS if allow_sha1 else frozenset())
    digests_ok = _STRONG_DIGESTS | (_SHA1_DIGESTS if allow_sha1 else frozenset())
    role = base.role
    location = SENDER_LOCATION if role is Role.SENDER else BROKER_LOCATION
    config = SignatureConfiguration(
        location=location,
        expect_references=1,
        signature_methods=methods_ok,
        digest_algorithms=digests_ok,
        verification_time=at,
    )
    # Only this signature may sit at the pinned place in the copy we verify.
    for other in find_signatures(doc):
        if other is not target and other.getparent() is target.getparent():
            other.getparent().remove(other)
    try:
        result = _Verifier().verify(etree.tostring(doc), x509_cert=leaf, expect_config=config)
    except InvalidDigest as exc:
        return replace(
            base,
            reason=f"the content was changed after signing ({exc})",
            failure=SIGNATURE_INVALID,
        )
    except InvalidCertificate as exc:
        return replace(base, reason=str(exc), failure=SIGNER_UNTRUSTED)
    except (InvalidSignature, InvalidInput) as exc:
        return replace(
            base,
            reason=f"{exc}".strip() or "the signature value does not verify",
            failure=SIGNATURE_INVALID,
        )
    except (ValueError, etree.LxmlError) as exc:
        return replace(base, reason=f"unreadable signature: {exc}", failure=SIGNATURE_INVALID)
    return replace(base, valid=True, signed_data=result.signed_data, signed_xml=result.signed_xml)


def _profile(sig: etree._Element) -> str:
    return "edxml" if etree.QName(sig).namespace == NS else "xmldsig"


def _certificates(sig: etree._Element) -> tuple[list[x509.Certificate], str]:
    """The certificates in KeyInfo/X509Data, or why they cannot be read."""
    ns = {"ds": DSIG_NS}
    texts = [t.text or "" for t in sig.findall("ds:KeyInfo/ds:X509Data/ds:X509Certificate", ns)]
    if not texts:
        return [], "the signature carries no X509Certificate"
    certs = []
    for i, text in enumerate(texts):
        try:
            der = base64.b64decode("".join(text.split()), validate=True)
            certs.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError) as exc:
            return [], f"certificate {i + 1} in KeyInfo is malformed: {exc}"
    return certs, ""


class BrokerSigner:
    """Signs forwarded packages with the broker's key (loaded once).

    A package arriving from another broker carries that hop's signature as the
    root's last child; it is replaced, as each hop signs what it forwards (the
    TraceHeaders record the path, the original bytes stay in `inbound`).
    """

    def __init__(self, material: KeyMaterial) -> None:
        self.material = material

    def sign(self, data: bytes) -> bytes:
        """`data` with an enveloped ds:Signature as the root's last child."""
        return self._sign(parse_untrusted(data).getroot())

    def stamp_and_sign(
        self,
        data: bytes,
        organ_id: str,
        timestamp: datetime,
        *,
        root: etree._Element | None = None,
    ) -> bytes:
        """Append this hop's TraceHeader (at `timestamp`, the standard's form), then sign:
        what a forwarded envelope gets. `root`: `data` already parsed, which this
        changes (the caller's last use of it)."""
        if root is None:
            root = parse_untrusted(data).getroot()
        add_trace_header(root, organ_id, timestamp)
        return self._sign(root)

    def _sign(self, root: etree._Element) -> bytes:
        for previous in root.findall(f"{{{DSIG_NS}}}Signature"):
            root.remove(previous)
        signer = _Signer(
            method=methods.enveloped,
            signature_algorithm=self.material.algorithm,
            digest_algorithm="sha256",
            c14n_algorithm=EXC_C14N,
        )
        signed = signer.sign(
            root,
            key=self.material.key,
            cert=[self.material.certificate, *self.material.chain],
        )
        return XML_DECLARATION + etree.tostring(signed, encoding="UTF-8")
