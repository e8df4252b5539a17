"""A report as text: a console table, CSV, an Excel workbook. Pure functions over a
`Report` (the CLI and the console call them)."""

from __future__ import annotations

import csv
import io
from typing import Any

from broker.views.report import Report, Table


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def table_text(report: Report) -> str:
    """Every table, as aligned columns under its title, then the totals."""
    q = report.query
    lines = [
        f"Report {q.first_day} .. {q.last_day} by {q.period} ({report.zone})"
        + (f", agency {q.agency}" if q.agency else "")
        + (f", level {q.level}" if q.level else ""),
        "totals: " + ", ".join(f"{k} {v}" for k, v in report.totals.items()),
    ]
    for table in report.tables:
        lines += ["", f"{table.vi} ({table.en})", *_aligned(table)]
    return "\n".join(lines)


def _aligned(table: Table) -> list[str]:
    head = [c.key for c in table.columns]
    body = [[_cell(v) for v in row] for row in table.rows]
    if not body:
        return ["  (none)"]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    numeric = [all(isinstance(row[i], int | float) or row[i] is None for row in table.rows)
               for i in range(len(head))]  # fmt: skip
    out = []
    for r in [head, *body]:
        out.append(
            "  ".join(
                (v.rjust(w) if num else v.ljust(w))
                for v, w, num in zip(r, widths, numeric, strict=True)
            ).rstrip()
        )
    return out


def csv_text(report: Report) -> str:
    """One CSV: a `table` column then each table's own columns, a header row per table."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    for table in report.tables:
        writer.writerow(["table", *(c.key for c in table.columns)])
        for row in table.rows:
            writer.writerow([table.name, *("" if v is None else v for v in row)])
    return buf.getvalue()


def xlsx_bytes(report: Report) -> bytes:
    """An Excel workbook: a summary sheet, then one sheet per table, headers in
    Vietnamese with the English beside."""
    from openpyxl import Workbook  # imported lazily: only exports need it
    from openpyxl.styles import Font

    book = Workbook()
    summary = book.active
    summary.title = "Tong hop"
    q = report.query
    summary.append(["Báo cáo thống kê (report)", f"{q.first_day} .. {q.last_day}", q.period])
    summary.append(["Múi giờ (time zone)", report.zone])
    for key, value in report.totals.items():
        summary.append([key, value])
    summary["A1"].font = Font(bold=True)
    for table in report.tables:
        sheet = book.create_sheet(table.name[:31])
        sheet.append([f"{c.vi} ({c.en})" for c in table.columns])
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in table.rows:
            sheet.append(list(row))
        for i, column in enumerate(table.columns):
            width = max(len(column.vi) + len(column.en) + 3, 10)
            sheet.column_dimensions[cell_letter(i)].width = min(width, 40)
        sheet.freeze_panes = "A2"
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def cell_letter(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        letters = chr(65 + rem) + letters
    return letters
