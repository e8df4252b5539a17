"""The files that run docbroker as a service, checked where they can be.

The systemd unit goes through `systemd-analyze verify` (the unit as written, with
ExecStart pointed at this installation's own `docbroker` console script: verify
wants the binary to exist) and `systemd-analyze security`; a unit with a typo is
shown to fail the same check. The Containerfile cannot be built here (no container
engine: CI does not build it either), so it is read: what it copies exists and is
all the install needs, its entry is the console script and a real command, its
environment is valid configuration, and its HEALTHCHECK command is run against a
live daemon.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from adapters.http_api.listeners import listeners
from broker.cli import cli
from broker.config import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "config" / "systemd" / "docbroker.service"
SYSUSERS = ROOT / "config" / "systemd" / "docbroker.sysusers"
CONTAINERFILE = ROOT / "Containerfile"
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


def instructions() -> dict[str, list[str]]:
    return directives(CONTAINERFILE.read_text())


class TestContainerfile:
    def test_what_it_copies_exists_and_is_what_the_install_needs(self) -> None:
        """Each COPY source is in the repository (nothing ignored by .dockerignore),
        and the packages setup.cfg installs and the files it reads are among them."""
        copied: set[str] = set()
        for args in instructions()["COPY"]:
            if args.startswith("--from="):
                continue
            *sources, _dest = args.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                copied.add(source)
        ignored = (ROOT / ".dockerignore").read_text().split()
        assert not copied & set(ignored)
        cfg = configparser.ConfigParser()
        cfg.read(ROOT / "setup.cfg")
        package_dir = dict(
            line.split(" = ") for line in cfg["options"]["package_dir"].strip().splitlines()
        )
        for package in cfg["options"]["packages"].split():
            where = package_dir.get(package, package.replace(".", "/"))
            assert where.split("/")[0] in copied, package
        assert {"pyproject.toml", "setup.cfg", "constraints.txt", "README.md"} <= copied

    def test_it_installs_pinned_and_runs_unprivileged(self) -> None:
        """pip installs the project with constraints.txt into /opt/docbroker; the
        image runs as docbroker with its data in a volume, on the exposed port."""
        found = instructions()
        (install,) = [r for r in found["RUN"] if "pip install" in r]
        assert "-c constraints.txt ." in " ".join(install.split())
        assert found["USER"] == ["docbroker"]
        assert found["VOLUME"] == ['["/var/lib/docbroker"]']
        assert found["STOPSIGNAL"] == ["SIGTERM"]
        env = self.environment()
        assert env["DOCBROKER_DATA_DIR"] == "/var/lib/docbroker"
        assert found["EXPOSE"] == [env["DOCBROKER_HTTP_PORT"]]
        assert all(base.split()[0].endswith("-slim") for base in self.bases())

    def bases(self) -> list[str]:
        arg = dict(a.split("=", 1) for a in instructions()["ARG"])
        return [
            b.replace("${PYTHON_VERSION}", arg["PYTHON_VERSION"]) for b in instructions()["FROM"]
        ]

    def environment(self) -> dict[str, str]:
        (env,) = instructions()["ENV"]
        return dict(pair.split("=", 1) for pair in shlex.split(env))

    def test_its_environment_is_valid_configuration(self) -> None:
        """Every DOCBROKER_ variable it sets is a setting with a valid value."""
        env = {k: v for k, v in self.environment().items() if k.startswith("DOCBROKER_")}
        settings = load_settings(None, env)
        assert settings.http.host == "0.0.0.0"
        assert settings.http.tls, "on every address: HTTPS (plain HTTP would be refused)"
        assert [each.name for each in listeners(settings)] == ["api"]
        assert settings.logging.format == "json"

    def test_the_entry_is_docbroker_serve(self) -> None:
        """ENTRYPOINT is the console script (so that `run IMAGE keys init` works), CMD
        `serve`, both in exec form: docbroker is PID 1 and gets the SIGTERM itself."""
        found = instructions()
        (entry,) = (json.loads(v) for v in found["ENTRYPOINT"])
        (command,) = (json.loads(v) for v in found["CMD"])
        assert entry == ["docbroker"] and entry[0] in console_scripts()
        assert command == ["serve"]
        assert CliRunner().invoke(cli, [*command, "--help"]).exit_code == 0

    def healthcheck(self) -> list[str]:
        (check,) = instructions()["HEALTHCHECK"]
        return json.loads(check.split("CMD", 1)[1])

    @pytest.mark.e2e
    def test_the_healthcheck_passes_on_a_live_daemon_and_fails_without(
        self, tmp_path: Path, unique_prefix: str
    ) -> None:
        """The HEALTHCHECK command (with this Python) asks /healthz on the port the
        image configures, over HTTPS as the image serves: status 0 while a daemon serves
        there, 1 when none does."""
        from tests.conftest import backend_env
        from tests.e2e.daemon import Daemon
        from tests.pki import install_keys

        program, *args = self.healthcheck()
        assert program == "python"
        keys = install_keys(tmp_path / "data")
        tls = self.environment()["DOCBROKER_HTTP_TLS"]  # the image serves HTTPS
        env = {
            **backend_env("embedded", tmp_path / "data", unique_prefix, None),
            "DOCBROKER_HTTP_TLS": tls,
        }
        daemon = Daemon(tmp_path / "d", env, ca_file=keys / "ca.cert.pem").start()
        try:
            env = {
                "DOCBROKER_HTTP_PORT": str(daemon.port),
                "DOCBROKER_HTTP_TLS": tls,
                "PATH": "/usr/bin:/bin",
            }
            run = [sys.executable, *args]
            assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode == 0
        finally:
            daemon.kill()
        assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode == 1
