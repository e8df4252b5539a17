"""docbroker: the document-interchange broker of a province (edXML, QCVN 102:2016)."""

__version__ = "0.1.0"
