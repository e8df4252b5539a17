"""edXML (QCVN 102:2016) packages: hardened parsing and the envelope view. Pure: no I/O."""
