"""The files that run docbroker as a service, checked where they can be.

The systemd unit goes through `systemd-analyze verify` (the unit as written, with
ExecStart pointed at this installation's own `docbroker` console script: verify
wants the binary to exist) and `systemd-analyze security`; a unit with a typo is
shown to fail the same check.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from broker.cli import cli
from broker.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config" / "systemd" / "docbroker.service"
SYSUSERS = ROOT / "config" / "systemd" / "docbroker.sysusers"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
CONSOLE_SCRIPT = Path(sys.executable).parent / "docbroker"
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed on this machine"
)


def directives(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file or a Containerfile's instructions (continuation
    lines joined)."""
    found: dict[str, list[str]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=" if "=" in line.split()[0] else " ")
        found.setdefault(key.strip(), []).append(value.strip())
    return found


def unit_values() -> dict[str, list[str]]:
    return directives(UNIT.read_text())


def verify(unit_text: str, tmp_path: Path) -> list[str]:
    """What `systemd-analyze verify` says of the unit: its exit status when not 0, and
    each line it prints about the unit (unknown keys and bad values are only warned
    about, with exit status 0)."""
    exec_start = unit_values()["ExecStart"][0].split()[0]
    path = tmp_path / UNIT.name
    path.write_text(unit_text.replace(f"ExecStart={exec_start}", f"ExecStart={CONSOLE_SCRIPT}"))
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60
    )
    said = [line for line in (done.stdout + done.stderr).splitlines() if UNIT.name in line]
    return said + ([f"exit status {done.returncode}"] if done.returncode else [])


def console_scripts() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[0].strip() for line in lines}


class TestSystemdUnit:
    @needs_systemd_analyze
    def test_the_unit_verifies(self, tmp_path: Path) -> None:
        """systemd-analyze verify finds nothing to say about the unit."""
        assert CONSOLE_SCRIPT.exists()
        assert verify(UNIT.read_text(), tmp_path) == []

    @needs_systemd_analyze
    @pytest.mark.parametrize(
        ("right", "wrong"),
        [
            ("ProtectSystem=strict", "ProtectSytem=strict"),
            ("KillMode=mixed", "KillMode=mixd"),
            ("[Service]", "[Servce]"),
        ],
        ids=["misspelt-key", "bad-value", "misspelt-section"],
    )
    def test_a_broken_unit_fails_the_same_check(
        self, tmp_path: Path, right: str, wrong: str
    ) -> None:
        """The check is not blind: one typo in the unit and it reports the unit."""
        text = UNIT.read_text()
        broken = re.sub(f"^{re.escape(right)}$", wrong, text, count=1, flags=re.MULTILINE)
        assert broken != text
        assert verify(broken, tmp_path) != []

    @needs_systemd_analyze
    def test_the_exposure_is_low(self, tmp_path: Path) -> None:
        """systemd-analyze security rates the unit's hardening "OK" (below 2.0 of 10)."""
        path = tmp_path / UNIT.name
        path.write_text(UNIT.read_text())
        assert SYSTEMD_ANALYZE is not None
        done = subprocess.run(
            [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        found = re.search(r"Overall exposure level for \S+: ([0-9.]+)", done.stdout)
        if found is None:
            pytest.skip(f"systemd-analyze security --offline is not supported: {done.stderr}")
        assert float(found.group(1)) < 2.0, done.stdout

    def test_it_runs_the_console_script_as_its_own_user(self) -> None:
        """ExecStart is `docbroker --config FILE serve` by absolute path, under the
        user docbroker, with the directories it needs."""
        unit = unit_values()
        (exec_start,) = unit["ExecStart"]
        program, *args = shlex.split(exec_start)
        assert program == "/opt/docbroker/bin/docbroker"
        assert Path(program).name in console_scripts()
        assert args == ["--config", "/etc/docbroker/docbroker.toml", "serve"]
        assert CliRunner().invoke(cli, ["serve", "--help"]).exit_code == 0
        assert unit["User"] == ["docbroker"] and unit["Group"] == ["docbroker"]
        assert unit["StateDirectory"] == ["docbroker"]
        assert unit["ConfigurationDirectory"] == ["docbroker"]
        assert unit["Type"] == ["notify"] and unit["NotifyAccess"] == ["main"]

    def test_the_stop_and_the_hardening(self) -> None:
        """SIGTERM to the daemon alone (it stops its workers), a restart on failure,
        and the hardening options; TimeoutStopSec leaves the HTTP drain and the
        pipeline's last commit their time (the default and the example's)."""
        unit = unit_values()
        expected = {
            "KillMode": "mixed",
            "KillSignal": "SIGTERM",
            "Restart": "on-failure",
            "NoNewPrivileges": "yes",
            "ProtectSystem": "strict",
            "ProtectHome": "yes",
            "PrivateTmp": "yes",
            "PrivateDevices": "yes",
            "ProtectKernelTunables": "yes",
            "ProtectKernelModules": "yes",
            "ProtectKernelLogs": "yes",
            "ProtectControlGroups": "yes",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
            "CapabilityBoundingSet": "",
            "UMask": "0077",
        }
        assert {k: unit.get(k, [None])[0] for k in expected} == expected
        assert "@system-service" in unit["SystemCallFilter"]
        assert "/var/lib/docbroker" in unit["ReadWritePaths"]
        assert int(unit["LimitNOFILE"][0]) >= Settings().http.max_connections * 4
        stop_timeout = float(unit["TimeoutStopSec"][0])
        example = load_settings(ROOT / "config" / "docbroker.example.toml", {})
        for drain in (Settings().http.shutdown_timeout, example.http.shutdown_timeout):
            assert stop_timeout >= drain + 30

    @pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
    def test_the_sysusers_file_makes_the_user(self, tmp_path: Path) -> None:
        """systemd-sysusers, run on an empty root, makes the system user and group
        docbroker, at home in the state directory, with no login shell."""
        (tmp_path / "etc").mkdir()
        done = subprocess.run(
            ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        (user,) = (tmp_path / "etc" / "passwd").read_text().splitlines()
        name, _, uid, gid, _, home, shell = user.split(":")
        assert (name, home, shell) == ("docbroker", "/var/lib/docbroker", "/usr/sbin/nologin")
        assert int(uid) < 1000 and uid == gid
        assert (tmp_path / "etc" / "group").read_text().startswith("docbroker:x:")
