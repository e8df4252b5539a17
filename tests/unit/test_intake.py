"""The submission's SHA-256 is computed once (it was a property, recomputed two or
three times per submission on the event loop: issue 16)."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from broker.clock import utc_now
from broker.core.problems import Problem
from broker.core.records import H
from broker.core.topics import Topics
from broker.edxml.validator import EnvelopeValidator
from broker.pipeline import intake
from broker.pipeline.intake import Submission, door_refusal_record, inbound_record
from tests.edxml_samples import document

SHA256 = hashlib.sha256


class CountingSha256:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, data: bytes = b"") -> object:
        self.calls += 1
        return SHA256(data)


class TestSubmissionSha256:
    def test_computed_once_for_all_its_records(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """One hash for the submission, its copies (replace) and each record made of it."""
        data = document()
        env = EnvelopeValidator(clock=utc_now).check(data)
        counting = CountingSha256()
        monkeypatch.setattr(intake.hashlib, "sha256", counting)
        topics = Topics.with_prefix("t.")
        sub = Submission(data, "m-1", "t" * 32, 1, "http")
        again = replace(sub, authenticated="000.00.00.H35")
        records = [
            inbound_record(again, env, topics),
            door_refusal_record(again, [Problem("sender-mismatch", "y")], topics, env),
        ]
        assert counting.calls == 1
        expected = hashlib.sha256(data).hexdigest()
        assert sub.sha256 == again.sha256 == expected
        assert all(dict(r.headers)[H.SHA256] == expected.encode() for r in records)

    def test_a_given_digest_is_kept(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The door hashes a large body off the event loop and passes the digest in:
        nothing is hashed again here."""
        counting = CountingSha256()
        monkeypatch.setattr(intake.hashlib, "sha256", counting)
        sub = Submission(b"<x/>", "m-1", "t" * 32, 1, "http", sha256="ab" * 32)
        assert sub.sha256 == "ab" * 32 and counting.calls == 0
