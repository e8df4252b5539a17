"""`docbroker backup DIR` and `docbroker restore BACKUP DATA_DIR`.

A backup is taken while the daemons run. On the embedded backend it holds a
consistent copy of the log (SQLite's online backup API, one snapshot: see
broker.log.snapshot), the keys folder, key files configured outside it, the
configuration file, and MANIFEST.json (broker.core.backup), written last. On Kafka
it holds the keys, the configuration and the manifest with the topics' end offsets:
the topics themselves are replicated by the cluster, not copied.

The read models (mailbox.sqlite, documents.sqlite) are not backed up: a daemon
started on a restored data folder rebuilds them from the log.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click

from broker import __version__
from broker.cli.base import cli, emit, json_option, run_with_log, settings_of
from broker.clock import utc_now
from broker.config import Settings
from broker.core.backup import (
    DAMAGED,
    KEYS,
    LOG_FILE,
    MANIFEST,
    READ_MODELS,
    BackedUpFile,
    Manifest,
    Role,
    backed_up_mode,
    damaged,
    topic_summary,
    unlisted,
)
from broker.core.errors import InputRefused, TargetNotEmpty
from broker.core.problems import Problem
from broker.log.snapshot import Snapshot, snapshot

CHUNK = 1024 * 1024
LARGE = 64 * 1024 * 1024  # a log at least this large shows the copy's progress
STAGING = ".restoring"
OTHER_ROLES = ("elsewhere", "config")  # a restore's files, until they are all there and checked


# --------------------------------------------------------------------- files


def empty_folder(path: Path) -> None:
    """Make `path` (owner only) or accept it empty; `TargetNotEmpty` otherwise."""
    if path.exists() and not path.is_dir():
        raise TargetNotEmpty(f"{path} is a file, not a folder")
    if path.is_dir() and any(path.iterdir()):
        raise TargetNotEmpty(f"{path} is not empty: give a new or empty folder")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


def sha256_of(path: Path) -> str | None:
    """The file's SHA-256, or None when it is not there."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                digest.update(chunk)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return digest.hexdigest()


def copy_file(source: Path, target: Path, mode: int) -> tuple[str, int]:
    """Copy `source` to the new file `target` with permissions `mode`, synced to disk;
    returns the SHA-256 and size of what was written."""
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(source, "rb") as src, os.fdopen(fd, "wb") as dst:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            dst.write(chunk)
        dst.flush()
        os.fchmod(dst.fileno(), mode)  # exactly `mode`, whatever the umask
        os.fsync(dst.fileno())
    return digest.hexdigest(), size


def sync_folders(root: Path) -> None:
    """fsync `root` and every folder below it: the new names are durable too."""
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def files_below(folder: Path) -> Iterator[tuple[Path, str]]:
    """(path, path relative to `folder`) of every regular file below it."""
    if folder.is_dir():
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                yield path, path.relative_to(folder).as_posix()


def keys_elsewhere(settings: Settings) -> list[Path]:
    """Key, certificate and secret files the configuration names outside the keys folder."""
    named = [
        settings.keys.private_key,
        settings.keys.certificate,
        settings.keys.passphrase_file,
        settings.http.tls_certificate,
        settings.http.tls_private_key,
        settings.auth.admin_tokens_file,
        settings.auth.sdk_master_key_file,
        settings.national_axis.secret_file,
        *settings.trust.ca_files,
        *settings.trust.crl_files,
    ]
    keys = settings.keys_dir.resolve()
    out: list[Path] = []
    for name in filter(None, named):
        path = Path(name)
        if path.is_file() and keys not in path.resolve().parents and path not in out:
            out.append(path)
    return out


class CopyProgress:
    """Prints how far the log's copy is, each tenth, for a large log only."""

    def __init__(self) -> None:
        self.shown = 0

    def __call__(self, done: int, total: int) -> None:
        if total < LARGE or not total:
            return
        tenth = done * 10 // total
        if tenth > self.shown:
            self.shown = tenth
            click.echo(f"{LOG_FILE}: {tenth * 10}% of {total / 1e6:,.0f} MB copied", err=True)


# --------------------------------------------------------------------- backup


def _backup_log(settings: Settings, target: Path) -> tuple[BackedUpFile, Snapshot]:
    source = settings.embedded_path
    part = target / f"{LOG_FILE}.part"
    snap = snapshot(source, part, progress=CopyProgress())
    os.chmod(part, backed_up_mode(LOG_FILE, 0o600))
    part.rename(target / LOG_FILE)
    sha, size = sha256_of(target / LOG_FILE) or "", (target / LOG_FILE).stat().st_size
    return BackedUpFile(LOG_FILE, "log", sha, size, 0o600, str(source)), snap


def _backup_files(settings: Settings, config: Path | None, target: Path) -> list[BackedUpFile]:
    """The keys folder, key files configured elsewhere, the configuration file."""
    wanted: list[tuple[Path, str, Role]] = [
        (path, f"{KEYS}/{rel}", "keys") for path, rel in files_below(settings.keys_dir)
    ]
    wanted += [
        (path, f"elsewhere/{i}-{path.name}", "elsewhere")
        for i, path in enumerate(keys_elsewhere(settings), 1)
    ]
    if config is not None:
        wanted.append((config, f"config/{config.name}", "config"))
    out = []
    for source, rel, role in wanted:
        mode = backed_up_mode(rel, source.stat().st_mode)
        sha, size = copy_file(source, target / rel, mode)
        out.append(BackedUpFile(rel, role, sha, size, mode, str(source.absolute())))
    return out


@cli.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--no-config", is_flag=True, help="leave the configuration file out")
@json_option
@click.pass_context
def backup(ctx: click.Context, directory: Path, no_config: bool, as_json: bool) -> None:
    """Back up a running deployment into the new or empty folder DIRECTORY.

    Embedded backend: a consistent copy of the log (taken while daemons write to
    it), the keys folder (private keys 0600), key files configured elsewhere, the
    configuration file, and MANIFEST.json with the SHA-256 of each. Kafka: the keys,
    the configuration and the topics' end offsets (the topics are replicated by the
    cluster, not copied). The read models are not backed up: they are rebuilt from
    the log."""
    settings = settings_of(ctx)
    config = None if no_config else ctx.find_root().obj["config_path"]
    empty_folder(directory)
    started, created_at = time.monotonic(), utc_now().isoformat(timespec="seconds")
    notes = [f"{', '.join(READ_MODELS)}: read models, not backed up: rebuilt from the log"]
    files: list[BackedUpFile] = []
    if settings.backend.type == "embedded":
        log_file, snap = _backup_log(settings, directory)
        files.append(log_file)
        ends, groups = snap.end_offsets, snap.group_offsets
    else:
        offsets = run_with_log(ctx, lambda log, topics: log.end_offsets(topics.all()))
        ends, groups = {}, {}
        for tp, end in offsets.items():
            ends.setdefault(tp.topic, {})[tp.partition] = end
        notes.append("Kafka topics are replicated by the cluster, not copied")
    files += _backup_files(settings, config, directory)
    if not any(f.role == "keys" for f in files):
        notes.append(f"no key in {settings.keys_dir}: this backup holds none")
    manifest = Manifest(
        __version__,
        created_at,
        settings.backend.type,
        settings.backend.topic_prefix,
        tuple(files),
        ends,
        groups,
        tuple(notes),
    )
    copy_manifest(manifest, directory)
    _report_backup(manifest, directory, time.monotonic() - started, as_json)


def copy_manifest(manifest: Manifest, directory: Path) -> None:
    """MANIFEST.json, written last (a folder without it is no complete backup)."""
    part = directory / f"{MANIFEST}.part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(manifest.to_json())
        fh.flush()
        os.fsync(fh.fileno())
    part.rename(directory / MANIFEST)
    sync_folders(directory)


def _report_backup(manifest: Manifest, directory: Path, seconds: float, as_json: bool) -> None:
    keys = manifest.of_role("keys")
    lines = [f"backup of the {manifest.backend} backend in {directory} ({manifest.created_at})"]
    if (log := manifest.log) is not None:
        lines.append(f"  {LOG_FILE}: {log.size:,} bytes; records then: {topic_summary(manifest)}")
    else:
        lines.append(f"  the topics' end offsets (records): {topic_summary(manifest)}")
    lines.append(f"  {KEYS}/: {len(keys)} files (secrets readable by their owner only)")
    lines += [f"  {f.path}: from {f.origin}" for f in manifest.files if f.role in OTHER_ROLES]
    lines.append(f"  {MANIFEST}: the SHA-256 of every file")
    lines += [f"note: {n}" for n in manifest.notes]
    lines.append(f"{manifest.size:,} bytes in {seconds:.1f} s")
    data = {
        "ok": True,
        "directory": str(directory),
        "seconds": round(seconds, 3),
        "bytes": manifest.size,
        "manifest": _json_of(manifest),
    }
    emit(data, as_json, "\n".join(lines))


def _json_of(manifest: Manifest) -> Any:
    import json

    return json.loads(manifest.to_json())


# --------------------------------------------------------------------- restore


def read_manifest(folder: Path) -> Manifest:
    try:
        data = (folder / MANIFEST).read_bytes()
    except FileNotFoundError:
        raise InputRefused(
            [Problem(DAMAGED, f"no {MANIFEST} in {folder}: not a backup, or one that never ended")]
        ) from None
    except OSError as exc:
        raise InputRefused([Problem(DAMAGED, f"cannot read {folder / MANIFEST}: {exc}")]) from exc
    return Manifest.from_json(data)


def check_backup(folder: Path, manifest: Manifest) -> list[str]:
    """Raise `InputRefused` naming each file changed or missing; the files the
    manifest does not name (not restored)."""
    found = {f.path: sha256_of(folder / f.path) for f in manifest.files}
    if problems := damaged(manifest, found):
        raise InputRefused(problems)
    return unlisted(manifest, [rel for _, rel in files_below(folder)])


def _restore_into(folder: Path, manifest: Manifest, data_dir: Path) -> None:
    """Copy every file into DATA_DIR/.restoring, checking each again as it is copied,
    then move them into place, the log last."""
    staging = data_dir / STAGING
    staging.mkdir(mode=0o700)
    for f in manifest.files:
        sha, _ = copy_file(folder / f.path, staging / f.path, backed_up_mode(f.path, f.mode))
        if sha != f.sha256:
            raise InputRefused([Problem(DAMAGED, f"{f.path}: changed while it was restored")])
    sync_folders(staging)
    tops = sorted({f.path.split("/", 1)[0] for f in manifest.files}, key=lambda t: t == LOG_FILE)
    for top in tops:
        (staging / top).rename(data_dir / top)
    staging.rmdir()
    sync_folders(data_dir)


@cli.command()
@click.argument("backup_dir", metavar="BACKUP", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@json_option
@click.pass_context
def restore(ctx: click.Context, backup_dir: Path, data_dir: Path, as_json: bool) -> None:
    """Restore the backup BACKUP into the new or empty data folder DATA_DIR.

    Checks every file against MANIFEST.json first (exit 1 naming each one changed
    or missing), then copies the log and the keys into place with their permissions.
    A daemon started with data_dir = DATA_DIR rebuilds its read models from the log.
    What the log took in after the backup is not in it (see README, Backup and
    restore)."""
    manifest = read_manifest(backup_dir)
    empty_folder(data_dir)
    ignored = check_backup(backup_dir, manifest)
    _restore_into(backup_dir, manifest, data_dir)
    lines = [
        f"restored the backup of {manifest.created_at} ({manifest.backend} backend, "
        f"docbroker {manifest.docbroker_version}) into {data_dir}: "
        f"{len(manifest.files)} files checked and copied"
    ]
    if manifest.log is not None:
        lines.append(f"  {LOG_FILE}: the log as it was then: {topic_summary(manifest)}")
    lines.append(f"  {KEYS}/: {len(manifest.of_role('keys'))} files")
    lines += [f"  {f.path}: put it back at {f.origin}" for f in manifest.of_role("elsewhere")]
    lines += [
        f"  {f.path}: the configuration it was taken with" for f in manifest.of_role("config")
    ]
    lines += [f"  not restored (not in {MANIFEST}): {rel}" for rel in ignored]
    lines.append(
        f"start `docbroker serve` with data_dir = {data_dir}: it rebuilds "
        f"{' and '.join(READ_MODELS)} from the log"
    )
    if manifest.backend == "embedded":
        lines.append(f"lost: what the log took in after {manifest.created_at}")
    data = {"ok": True, "data_dir": str(data_dir), "ignored": ignored, **_json_of(manifest)}
    emit(data, as_json, "\n".join(lines))
    if manifest.docbroker_version != __version__:
        click.echo(
            f"note: backed up by docbroker {manifest.docbroker_version}, this is {__version__}",
            err=True,
        )
