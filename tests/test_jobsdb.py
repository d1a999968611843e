"""The jobs database: schema, filters, claims, unlock/rebuild, and several processes at once."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from scr_core.errors import EXIT_DATA, UsageError
from scr_core.funcjobs.jobsdb import JobsDB, JobsDBError, owner_alive, owner_id


@pytest.fixture
def db(tmp_path):
    return JobsDB(str(tmp_path / "jobs.db"))


def test_wal_and_busy_timeout(db):
    conn = sqlite3.connect(db.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    with db._conn() as c:
        assert c.execute("PRAGMA busy_timeout").fetchone()[0] == int(db.busy_timeout * 1000)


def test_create_or_attach_and_update(db, tmp_path):
    row, new = db.create_or_attach("fit", "ab" * 32, str(tmp_path / "stage"))
    assert new and row["status"] == "created" and row["lock_owner"] == owner_id()
    assert row["stage_dir"] == str(tmp_path / "stage" / row["id"])
    again, new2 = db.create_or_attach("fit", "ab" * 32, str(tmp_path / "stage"))
    assert again["id"] == row["id"] and not new2
    db.release(row["id"])
    assert db.get(row["id"])["lock_owner"] is None
    assert db.update(row["id"], status="submitted", remote_id="12", system="local")
    # compare-and-set: only from the statuses expected
    assert not db.update(row["id"], expect_status=["created"], status="running")
    assert db.update(row["id"], expect_status=["submitted"], status="running")
    got = db.get(row["id"])
    assert (got["status"], got["remote_id"], got["system"]) == ("running", "12", "local")
    assert got["updated"] >= got["created"]
    with pytest.raises(UsageError, match="unknown job status"):
        db.update(row["id"], status="exploded")
    with pytest.raises(UsageError, match="cannot update"):
        db.update(row["id"], hash="x")


def test_one_live_job_per_hash(db, tmp_path):
    first = db.add("j", "h1", str(tmp_path / "a"))
    with pytest.raises(sqlite3.IntegrityError):
        db.add("j", "h1", str(tmp_path / "b"))
    db.add("j", "h2", str(tmp_path / "c"))  # another hash is another job
    db.update(first["id"], status="processed")
    second, new = db.create_or_attach("j", "h1", str(tmp_path))
    assert new and second["id"] != first["id"]
    assert db.find_live("j", "h1")["id"] == second["id"]


def test_filters_are_regexes_and_parameters(db, tmp_path):
    names = ["alpha", "alpine", "beta", "x'; DROP TABLE jobs; --"]
    ids = {}
    for i, name in enumerate(names):
        ids[name] = db.add(name, f"h{i}", str(tmp_path / name), system=f"sys{i % 2}")["id"]
    db.update(ids["beta"], status="succeeded")
    db.update(ids["alpine"], status="processed")
    assert [r["name"] for r in db.jobs(name="^alp")] == ["alpha", "alpine"]
    assert [r["name"] for r in db.jobs(name="^alp", status="live")] == ["alpha"]
    assert [r["name"] for r in db.jobs(status=["succeeded", "processed"])] == \
        ["alpine", "beta"]
    assert [r["name"] for r in db.jobs(status="succ.*|proc.*")] == ["alpine", "beta"]
    assert {r["name"] for r in db.jobs(system="sys1$")} == {"alpine", "x'; DROP TABLE jobs; --"}
    assert [r["name"] for r in db.jobs(name="DROP TABLE")] == [names[3]]  # stored literally
    assert len(db.jobs()) == 4
    with pytest.raises(UsageError, match="invalid name regular expression"):
        db.jobs(name="(")
    with pytest.raises(UsageError, match="matches none"):
        db.jobs(status="nothing")
    assert db.remove(ids["alpha"]) and not db.remove(ids["alpha"])


def test_claims_of_dead_processes(db, tmp_path):
    row = db.add("c", "h", str(tmp_path))
    dead = f"{socket.gethostname()}:999999:1"
    far = "otherhost:1:1"
    assert owner_alive(owner_id()) and not owner_alive(dead)
    assert owner_alive(far, time.time()) and not owner_alive(far, time.time() - 10 ** 6)
    db.update(row["id"], lock_owner=dead, lock_time=time.time())
    assert db.claim(row["id"])  # a dead claimant's claim is taken over
    db.update(row["id"], lock_owner=far, lock_time=time.time())
    assert not db.claim(row["id"])  # another host: trusted until stale
    assert db.unlock() == []
    assert db.unlock(force=True) == [row["id"]]
    db.update(row["id"], lock_owner=dead, lock_time=time.time())
    other = db.add("c", "h2", str(tmp_path))
    db.update(other["id"], lock_owner=dead, lock_time=time.time())
    assert db.unlock([row["id"]]) == [row["id"]]
    assert db.get(other["id"])["lock_owner"] == dead
    assert not db.claim(row["id"], statuses=("submitted",))


def test_rebuild_and_garbage(db, tmp_path):
    db.add("r", "h", str(tmp_path))
    old = db.rebuild()
    assert os.path.exists(old) and [r["name"] for r in db.jobs()] == ["r"]
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(JobsDBError) as err:
        JobsDB(str(bad))
    assert err.value.exit_code == EXIT_DATA


WORKER = textwrap.dedent("""\
    import json, os, sys, time
    from scr_core.funcjobs.jobsdb import JobsDB

    path, stage, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
    db = JobsDB(path)      # all workers create the schema at the same moment
    seen = {}
    claimed_by_me = []
    for i in range(rounds):
        k = i % 5
        row, new = db.create_or_attach(f"job{k}", f"hash{k}", stage)
        if new:
            claimed_by_me.append(row["id"])
            db.release(row["id"])
        seen.setdefault(f"job{k}", set()).add(row["id"])
        db.update(row["id"], message=str(os.getpid()))
        db.jobs(name="^job", status="live")
    print(json.dumps({"seen": {k: sorted(v) for k, v in seen.items()},
                      "claimed": claimed_by_me}))
    """)


def test_concurrent_processes_on_one_database(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    path = str(tmp_path / "shared" / "jobs.db")
    procs = [subprocess.Popen([sys.executable, str(script), path, str(tmp_path / "stage"),
                               "40"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(6)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    # every process saw exactly one job per name, the same one
    for name in (f"job{k}" for k in range(5)):
        ids = {i for r in results for i in r["seen"][name]}
        assert len(ids) == 1, (name, ids)
    rows = JobsDB(path).jobs()
    assert len(rows) == 5 and all(r["status"] == "created" for r in rows)
    claims = [i for r in results for i in r["claimed"]]
    assert sorted(set(claims)) == sorted(r["id"] for r in rows)
    assert len(claims) == 5  # each job was created by exactly one process
