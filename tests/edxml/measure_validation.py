"""Validate one file in a fresh process; print the problem codes and the peak RSS.

Used by test_hostile.py so that each hostile input's memory is measured alone.
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from broker.clock import utc_now
from broker.edxml.validator import EnvelopeValidator


def main() -> None:
    validator = EnvelopeValidator(clock=utc_now)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    verdict = validator.validate(Path(sys.argv[1]).read_bytes())
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"codes": [p.code for p in verdict.problems], "baseline_kib": before, "peak_kib": peak}
        )
    )


if __name__ == "__main__":
    main()
