"""The edXML schema, docbroker's own XSD shipped as package data (broker.schemas).

The one module of the edXML core that reads a file: the schema is part of the code
(installed with it, never configured), read once and cached.
"""

from __future__ import annotations

from functools import lru_cache
from importlib import resources

from lxml import etree


@lru_cache(maxsize=1)
def schema_document() -> etree._ElementTree:
    """The edXML schema as parsed XML (it is our own file: no hardening needed)."""
    with (resources.files("broker.schemas") / "edxml.xsd").open("rb") as fh:
        return etree.parse(fh)
