"""Reading and writing directory files: TOML ([[agency]] tables) and CSV. Pure."""

from __future__ import annotations

import csv
import io
import json
import tomllib
from collections.abc import Callable, Iterable

from broker.core.problems import Problem
from broker.directory.model import CSV_FIELDS, FIELDS, Agency, agencies_from_records


def parse_toml(text: str, where: str) -> tuple[list[Agency], list[Problem]]:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return [], [Problem("invalid-value", f"{where}: not valid TOML: {exc}")]
    unknown = set(data) - {"agency"}
    if unknown:
        return [], [
            Problem(
                "invalid-value", f"{where}: unknown tables {sorted(unknown)}; expected [[agency]]"
            )
        ]
    rows = data.get("agency", [])
    if not isinstance(rows, list):
        return [], [Problem("invalid-value", f"{where}: agency must be an array of tables")]
    return agencies_from_records(rows, where)


def parse_csv(text: str, where: str) -> tuple[list[Agency], list[Problem]]:
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "code" not in reader.fieldnames:
        return [], [
            Problem("invalid-value", f"{where}: the header must name at least code and name")
        ]
    rows = [{k: v for k, v in row.items() if k is not None and v not in (None,)} for row in reader]
    return agencies_from_records(rows, where)


def parse_file(name: str, text: str) -> tuple[list[Agency], list[Problem]]:
    if name.lower().endswith(".csv"):
        return parse_csv(text, name)
    return parse_toml(text, name)


def check_unique(agencies: Iterable[Agency]) -> list[Problem]:
    """Codes and code102s named twice in one file."""
    problems: list[Problem] = []
    seen: dict[str, str] = {}
    for a in agencies:
        for c in a.codes():
            if c in seen and seen[c] != a.code:
                problems.append(Problem("invalid-value", f"{c} names both {seen[c]} and {a.code}"))
            elif c in seen and c == a.code:
                problems.append(Problem("invalid-value", f"agency {a.code} appears twice"))
            seen[c] = a.code
    return problems


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)  # a JSON string is a TOML basic string


def to_toml(agencies: Iterable[Agency]) -> str:
    blocks = []
    for a in agencies:
        data = a.to_dict()
        blocks.append(
            "[[agency]]\n"
            + "".join(f"{k} = {_toml_value(data[k])}\n" for k in FIELDS if data[k] is not None)
        )
    return "\n".join(blocks)


def to_csv(agencies: Iterable[Agency]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(CSV_FIELDS), lineterminator="\n")
    writer.writeheader()
    for a in agencies:
        data = a.to_dict()
        writer.writerow(
            {
                k: ";".join(v)
                if isinstance(v, list)
                else ("true" if v is True else "false" if v is False else v)
                for k, v in data.items()
                if k in CSV_FIELDS
            }
        )
    return out.getvalue()


def axis_listing(
    agencies: Iterable[Agency], parent_of: Callable[[Agency], Agency | None], *, qd20: bool
) -> list[dict[str, str]]:
    """Agencies as the national axis lists them: getAgenciesListQD20 in QĐ 20 codes,
    getAgenciesList in QCVN 102 codes (an agency without one keeps its QĐ 20 code),
    each with its parent's code in the same form (`pid`)."""
    out = []
    for a in agencies:
        parent = parent_of(a)
        if qd20:
            code, pid = a.code, a.parent
        else:
            code = a.code102 or a.code
            pid = (parent.code102 or parent.code) if parent else a.parent
        out.append(
            {
                "code": code,
                "name": a.name,
                "pid": pid,
                "level": a.level,
                "mail": a.email,
                "phone": a.telephone,
                "address": a.address,
                "website": a.website,
                "status": str(a.status),
            }
        )
    return out
