"""Data package: the edXML XSDs and the OpenAPI document (installed as broker.schemas)."""
