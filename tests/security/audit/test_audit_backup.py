"""Encrypted backups: made, restored into a fresh data dir, verified; a tampered backup refused; backups
older than 7 days pruned by the next backup."""
import os
import shutil
import sqlite3
import time

import pytest

from bootstrap_controlplane.backup import MAGIC
from helpers.controlplane import ControlPlane

from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._audit import make_event
from ansible_collections.bootstrap_saas.provisioning.plugins.module_utils._controlplane import ControlPlaneClient

DAY = 86400


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A data dir with a finished run (a checkpoint) and a backup of it."""
    work = tmp_path_factory.mktemp("backup")
    cp = ControlPlane(work / "data").init()
    cp.set_profile("dev", {"files": [{"path": "~/.zshrc", "mode": "0644", "content": "x\n"}]})
    with cp:
        cp.start()
        client = ControlPlaneClient(cp.url, cp.ca_path.read_text(), 10)
        answer = client.post("/v1/tokens/redeem", {"token": cp.mint("dev", "alice"),
                                                   "machine": {"id": "m1", "hostname": "h1"},
                                                   "machine_secret_hash": "ab" * 32})
        client.post("/v1/audit/events", {"events": [
            make_event(answer["run_id"], "audit_event", "run.finished", answer["run_id"], {"files": 0})]},
            bearer=answer["run_token"])
        out = work / "backups" / "first.bsbackup"
        made = cp.cli("backup", "--data", cp.data_dir, "--out", out)  # while the server runs
    return {"cp": cp, "work": work, "backup": out, "output": made.stdout, "key": cp.data_dir / "backup.key"}


def test_a_backup_is_encrypted_with_its_own_key_and_restores_into_a_fresh_folder(source, tmp_path):
    cp = source["cp"]
    assert "created the backup key %s" % source["key"] in source["output"], source["output"]
    assert oct(source["key"].stat().st_mode & 0o777) == "0o600"
    blob = source["backup"].read_bytes()
    assert blob.startswith(MAGIC) and oct(source["backup"].stat().st_mode & 0o777) == "0o600"
    assert b"SQLite format" not in blob and cp.admin_key.encode() not in blob and b"run.finished" not in blob

    fresh = ControlPlane(tmp_path / "restored")
    result = cp.cli("restore", "--data", fresh.data_dir, "--from", source["backup"], "--key-file", source["key"])
    assert "audit chain OK" in result.stdout, result.stdout
    verify = fresh.audit_verify()
    assert verify.returncode == 0 and "1 signed checkpoints hold" in verify.stdout, verify.stdout
    assert fresh.audit() == cp.audit()
    for name in ("admin.key", "ca.pem", "server-key.pem", "backup.key"):
        assert (fresh.data_dir / name).read_bytes() == (cp.data_dir / name).read_bytes(), name
    assert oct(fresh.data_dir.stat().st_mode & 0o777) == "0o700"
    with fresh:
        fresh.start()  # the restored folder serves, with the same keys
        token = fresh.mint("dev", "alice")
        answer = ControlPlaneClient(fresh.url, fresh.ca_path.read_text(), 10).post("/v1/tokens/validate",
                                                                                   {"token": token})
        assert answer["valid"] is True


def test_a_tampered_backup_is_refused_and_nothing_is_restored(source, tmp_path):
    cp = source["cp"]
    blob = bytearray(source["backup"].read_bytes())
    blob[len(blob) // 2] ^= 0x01
    tampered = tmp_path / "tampered.bsbackup"
    tampered.write_bytes(bytes(blob))
    target = tmp_path / "restored"
    result = cp.cli("restore", "--data", target, "--from", tampered, "--key-file", source["key"], check=False)
    assert result.returncode == 2 and "fails authentication" in result.stderr and "refused" in result.stderr
    assert not target.exists() and not list(tmp_path.glob(".restored.restore-*"))

    other_key = tmp_path / "other.key"
    cp.cli("backup", "--data", cp.data_dir, "--out", tmp_path / "x.bsbackup", "--key-file", other_key)
    wrong = cp.cli("restore", "--data", target, "--from", source["backup"], "--key-file", other_key, check=False)
    assert wrong.returncode == 2 and "was made with backup key" in wrong.stderr
    missing = cp.cli("restore", "--data", target, "--from", source["backup"], check=False)
    assert missing.returncode == 2 and "restore needs the backup key" in missing.stderr


def test_a_backup_of_a_tampered_audit_trail_is_refused_on_restore(source, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(source["cp"].data_dir, data)
    db = sqlite3.connect(str(data / "controlplane.db"))
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("UPDATE audit SET actor='mallory' WHERE seq=2")
    db.commit()
    db.close()
    cp = ControlPlane(data)
    made = cp.cli("backup", "--data", data, "--out", tmp_path / "broken.bsbackup", check=False)
    assert made.returncode == 1 and "BROKEN at seq 2" in made.stdout, made.stdout
    result = cp.cli("restore", "--data", tmp_path / "restored", "--from", tmp_path / "broken.bsbackup",
                    "--key-file", data / "backup.key", check=False)
    assert result.returncode == 2 and "does not verify; refused" in result.stderr and "seq 2" in result.stderr
    assert not (tmp_path / "restored").exists()


def test_backups_older_than_seven_days_are_pruned(source, tmp_path):
    cp, folder = source["cp"], tmp_path / "backups"
    folder.mkdir()
    now = time.time()
    ages = {"old.bsbackup": 8 * DAY, "week.bsbackup": 7 * DAY - 3600, "recent.bsbackup": DAY}
    for name, age in ages.items():
        shutil.copy(source["backup"], folder / name)
        os.utime(folder / name, (now - age, now - age))
    for name in ("notes.bsbackup", "old.txt"):  # not backups of ours: never touched
        (folder / name).write_text("keep me\n")
        os.utime(folder / name, (now - 30 * DAY, now - 30 * DAY))
    result = cp.cli("backup", "--data", cp.data_dir, "--out", folder / "today.bsbackup")
    assert "pruned %s" % (folder / "old.bsbackup") in result.stdout, result.stdout
    assert sorted(p.name for p in folder.iterdir()) == ["notes.bsbackup", "old.txt", "recent.bsbackup",
                                                        "today.bsbackup", "week.bsbackup"]
    refused = cp.cli("backup", "--data", cp.data_dir, "--out", folder / "today.bsbackup", check=False)
    assert refused.returncode == 2 and "refusing to overwrite" in refused.stderr
