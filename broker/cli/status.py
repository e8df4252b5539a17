"""`docbroker status`: how much the log and the read models hold, to plan growth."""

from __future__ import annotations

import click

from broker.cli.base import cli, emit, json_option, run_with_log, settings_of


def human(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


@cli.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """The log's records and bytes per topic, and the read models' files."""
    from broker.logsetup import configure_logging
    from broker.views.sizes import measure

    settings = settings_of(ctx)
    configure_logging(settings.logging)  # log lines (an upgrade's) to stderr, not the JSON
    log_file = settings.embedded_path if settings.backend.type == "embedded" else None
    sizes = run_with_log(
        ctx, lambda log, topics: measure(log, topics, settings.data_path, log_file)
    )
    data = sizes.to_dict()
    lines = [f"backend: {sizes.backend}", f"{'topic':<40} {'records':>12} {'bytes':>12}"]
    for topic, size in sizes.topics.items():
        records = size.records if size else sizes.records_written.get(topic, 0)
        lines.append(f"{topic:<40} {records:>12,} {human(size.bytes if size else None):>12}")
    if sizes.log_file_bytes is not None:
        lines.append(f"log file: {human(sizes.log_file_bytes)} ({settings.embedded_path})")
    else:
        lines.append(
            "topic bytes: on Kafka, the brokers' log dirs (kafka-log-dirs.sh --describe); "
            "records: offsets written"
        )
    for view, size in sizes.read_models.items():
        lines.append(f"read model {view}: {human(size) if size is not None else 'not built'}")
    emit(data, as_json, "\n".join(lines))
