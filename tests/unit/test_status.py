"""`docbroker status` and the size gauges: what the log and the read models hold."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from broker.cli import cli
from broker.core.logrecords import NewRecord
from broker.core.topics import Topics
from broker.log.embedded import EmbeddedLog
from broker.metrics import Metrics
from broker.views.sizes import measure
from tests.conftest import EXAMPLE_DIRECTORY_2024


def run(data: Path, *args: str):
    env = {"DOCBROKER_DATA_DIR": str(data)}
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


class TestStatusCommand:
    def test_records_and_bytes_per_topic(self, tmp_path: Path) -> None:
        """After an import, the directory topic holds records and bytes; the read models
        are not built yet; the log file's size is given; the text lists every topic."""
        data = tmp_path / "data"
        assert run(data, "agencies", "import", str(EXAMPLE_DIRECTORY_2024)).exit_code == 0
        result = run(data, "status", "--json")
        assert result.exit_code == 0, result.output
        status = json.loads(result.output)
        directory = status["topics"][Topics.with_prefix("docbroker.").directory]
        assert directory["records"] > 0 and directory["bytes"] > 1000
        assert directory["records_written"] >= directory["records"]
        assert status["topics"][Topics.with_prefix("docbroker.").inbound] == {
            "records": 0,
            "bytes": 0,
            "records_written": 0,
        }
        assert status["log_file_bytes"] >= (data / "log.sqlite").stat().st_size
        assert status["read_models"] == {"mailbox": None, "documents": None, "statistics": None}
        text = run(data, "status").output
        assert "backend: embedded" in text and "read model mailbox: not built" in text
        assert all(topic in text for topic in Topics.with_prefix("docbroker.").all())


class TestSizeGauges:
    async def test_measured_sizes_become_gauges(self, tmp_path: Path) -> None:
        """Records and bytes per topic and the files' sizes, as Prometheus gauges."""
        topics = Topics.with_prefix("docbroker.")
        (tmp_path / "mailbox.sqlite").write_bytes(b"x" * 4096)
        async with EmbeddedLog(tmp_path / "log.sqlite") as log:
            from broker.config import Settings
            from broker.log.topics import topic_specs

            await log.ensure_topics(topic_specs(Settings(), topics))
            await log.append([NewRecord(topics.inbound, b"v" * 1000, key=b"k")])
            sizes = await measure(log, topics, tmp_path, tmp_path / "log.sqlite")
        metrics = Metrics()
        for topic, size in sizes.topics.items():
            assert size is not None
            metrics.topic_size(topic, size.records, size.bytes)
        metrics.read_model_size("mailbox", sizes.read_models["mailbox"] or 0)
        text = metrics.render().decode()
        assert f'docbroker_log_bytes{{topic="{topics.inbound}"}} 1001.0' in text
        assert f'docbroker_log_records{{topic="{topics.inbound}"}} 1.0' in text
        assert 'docbroker_read_model_bytes{view="mailbox"} 4096.0' in text
