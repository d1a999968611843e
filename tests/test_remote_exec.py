"""Remote executors (clustershell, pdsh, launcher): every node accounted for, for real.

ClusterShell and pdsh run for real with the ``exec`` transport and the per-node wrapper
``scr local exec %h --`` on a local allocation, so a crashed virtual node really fails; the
ssh transports run against a fake ``ssh`` that does what ssh does with its arguments (joins
them with spaces for the remote shell), to prove the quoting.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from scr_core.engine.jobenv import JobEnv
from scr_core.errors import ConfigError, RemoteExecError, UsageError
from scr_core.interfaces import BackendContext
from scr_core.local.allocation import LocalAllocation
from scr_core.plugins import Registry
from scr_core.remote import pdsh as pdsh_mod
from scr_core.remote.clustershell import ClusterShellRemoteExecutor
from scr_core.remote.launcher_wrapper import LauncherRemoteExecutor
from scr_core.remote.pdsh import PdshRemoteExecutor
from scr_core.remote.plugin import scr_remote_executors
from scr_core.remote.settings import RemoteSettings

from scr_core import conformance

BIN = os.path.dirname(sys.executable)
WRAP = [sys.executable, "-m", "scr_core", "local", "exec", "%h", "--"]
NODES = ["vnode1", "vnode2", "vnode3", "vnode4", "vnode5"]
# how each virtual node behaves (test code: a fixed script, the node name from its env)
NODE_SCRIPT = (
    'case "$SCR_LOCAL_NODE" in '
    'vnode3) sleep 30;; '
    'vnode4) printf "\\001garbage"; exit 0;; '
    'vnode5) echo "bad disk" >&2; exit 3;; '
    'esac; echo UP; echo "note from $SCR_LOCAL_NODE" >&2'
)
ODD_ARGS = ["a b", "'q'", '"dq"', "$HOME", "%h", "50%", "%%", "*", "-x", "", "tab\there", "ü"]

needs_pdsh = pytest.mark.skipif(shutil.which("pdsh") is None,
                                reason="pdsh is not installed (apt-get install pdsh)")
KINDS = ["clustershell", pytest.param("pdsh", marks=needs_pdsh), "launcher"]


@pytest.fixture
def alloc(tmp_path):
    a = LocalAllocation.create(NODES, base=str(tmp_path))
    a.crash("vnode2")
    return a


def environ(alloc=None, **extra):
    env = {"PATH": BIN + os.pathsep + os.environ.get("PATH", "/usr/bin:/bin"),
           "HOME": os.environ.get("HOME", "/root")}
    if alloc is not None:
        env["SCR_LOCAL_DIR"] = alloc.path
    env.update(extra)
    return env


def executor(cls, alloc=None, **settings):
    return cls(BackendContext(environ=environ(alloc), settings=RemoteSettings(**settings)))


def exec_executors(alloc):
    return {
        "clustershell": executor(ClusterShellRemoteExecutor, alloc, worker="exec", wrapper=WRAP),
        "pdsh": executor(PdshRemoteExecutor, alloc, worker="exec", wrapper=WRAP),
        "launcher": executor(LauncherRemoteExecutor, alloc),
    }


def check_faulty_nodes(result, ordered):
    assert list(result) == ordered  # every node, in request order
    ok, crashed, hung, garbage, failing = (result[n] for n in NODES)
    assert ok.ok and ok.stdout == "UP\n" and ok.stderr == "note from vnode1\n"
    assert not crashed.ok and crashed.unreachable and crashed.rc == 255
    assert "vnode2 is not responding" in crashed.stderr
    assert hung.timed_out and hung.rc is None and not hung.ok
    assert garbage.rc == 0 and garbage.stdout.startswith("\x01garbage")
    assert failing.rc == 3 and not failing.ok and failing.stderr == "bad disk\n"
    assert failing.stdout == "" and not failing.unreachable and not failing.timed_out


# --------------------------------------------------------------------------- for real


@pytest.mark.parametrize("kind", KINDS)
def test_exec_transport_on_virtual_nodes_with_faults(alloc, kind):
    rexec = exec_executors(alloc)[kind]
    t0 = time.monotonic()
    result = rexec.run(["sh", "-c", NODE_SCRIPT], NODES, fanout=8, timeout=3)
    elapsed = time.monotonic() - t0
    check_faulty_nodes(result, NODES)
    assert elapsed < 15, f"{kind}: the hung node was not cut off at the timeout ({elapsed:.1f}s)"


@pytest.mark.parametrize("kind", KINDS)
def test_argv_arrives_unchanged(alloc, kind):
    rexec = exec_executors(alloc)[kind]
    result = rexec.run(["printf", "[%s]", *ODD_ARGS], ["vnode1", "vnode4"], timeout=30)
    expected = "".join(f"[{a}]" for a in ODD_ARGS)
    for node in ("vnode1", "vnode4"):
        assert result[node].rc == 0, result[node]
        assert result[node].stdout.rstrip("\n") == expected


@pytest.mark.parametrize("kind", KINDS)
def test_conformance(alloc, kind):
    rexec = exec_executors(alloc)[kind]
    conformance.check_remote_executor(type(rexec), rexec.context, ["vnode1", "vnode4"],
                                      unreachable=["vnode2"])


def test_clustershell_fanout_is_respected(alloc, tmp_path):
    # each node records start/end; with fanout 2 no more than two overlap
    log = tmp_path / "spans"
    log.mkdir()
    script = 'd="$1"; date +%s.%N > "$d/$SCR_LOCAL_NODE.start"; sleep 0.4; ' \
             'date +%s.%N > "$d/$SCR_LOCAL_NODE.end"'
    nodes = ["vnode1", "vnode3", "vnode4", "vnode5"]
    for kind in ("clustershell", "launcher"):
        rexec = exec_executors(alloc)[kind]
        result = rexec.run(["sh", "-c", script, "sh", str(log)], nodes, fanout=2, timeout=30)
        assert result.failed() == []
        spans = [(float((log / f"{n}.start").read_text()), float((log / f"{n}.end").read_text()))
                 for n in nodes]
        for start, _ in spans:
            running = sum(1 for s, e in spans if s <= start < e)
            assert running <= 2, kind


@pytest.fixture
def fake_ssh(tmp_path):
    """An ``ssh`` that behaves like ssh with its arguments: the words after the host are
    joined with spaces and run by the remote shell (here: a local sh); hosts named dead*
    refuse connections with exit code 255, as ssh does."""
    d = tmp_path / "fakessh"
    d.mkdir()
    path = d / "ssh"
    path.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        "args = sys.argv[1:]\n"
        "takes = {'-l', '-p', '-F', '-i', '-o'}\n"
        "i = 0\n"
        "while i < len(args) and args[i].startswith('-'):\n"
        "    i += 2 if args[i] in takes else 1\n"
        "host, cmd = args[i], ' '.join(args[i + 1:])\n"
        "if host.startswith('dead'):\n"
        "    sys.stderr.write(f'ssh: connect to host {host} port 22: Connection refused\\n')\n"
        "    sys.exit(255)\n"
        "os.environ['FAKE_SSH_HOST'] = host\n"
        "os.execvp('sh', ['sh', '-c', cmd])\n")
    path.chmod(0o755)
    return path


def test_clustershell_ssh_worker_quotes_for_the_remote_shell(fake_ssh):
    rexec = ClusterShellRemoteExecutor(BackendContext(
        environ=environ(), settings=RemoteSettings(ssh_path=str(fake_ssh),
                                                   ssh_options=["-oStrictHostKeyChecking=no"])))
    result = rexec.run(["printf", "[%s]", *ODD_ARGS], ["alpha", "dead1", "beta"], timeout=20)
    expected = "".join(f"[{a}]" for a in ODD_ARGS)
    assert list(result) == ["alpha", "dead1", "beta"]
    assert result["alpha"].ok and result["alpha"].stdout.rstrip("\n") == expected
    assert result["beta"].ok
    dead = result["dead1"]
    assert dead.unreachable and dead.rc == 255 and "Connection refused" in dead.stderr


@needs_pdsh
def test_pdsh_ssh_quotes_for_the_remote_shell(fake_ssh):
    rexec = PdshRemoteExecutor(BackendContext(
        environ=environ(PATH=f"{fake_ssh.parent}:{os.environ['PATH']}"),
        settings=RemoteSettings(rcmd="ssh")))
    result = rexec.run(["printf", "[%s]\n", *ODD_ARGS], ["alpha", "dead1"], timeout=20)
    expected = "".join(f"[{a}]\n" for a in ODD_ARGS)
    assert result["alpha"].rc == 0 and result["alpha"].stdout == expected
    dead = result["dead1"]
    assert dead.unreachable and dead.rc == 255 and "Connection refused" in dead.stderr


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("wrapper", [[], ["env", "X=1"], ["srun", "-w", "%%h"]])
def test_exec_without_per_node_wrapper_is_refused(wrapper):
    for cls in (ClusterShellRemoteExecutor, PdshRemoteExecutor):
        with pytest.raises(ConfigError, match=r"this machine|locally"):
            executor(cls, worker="exec", wrapper=wrapper)
    with pytest.raises(ConfigError):
        executor(PdshRemoteExecutor, rcmd="exec", wrapper=wrapper)


def test_missing_transport_is_an_error_not_dead_nodes(alloc):
    rexec = executor(ClusterShellRemoteExecutor, alloc, worker="exec",
                     wrapper=["/nonexistent/wrapper", "%h"])
    with pytest.raises(RemoteExecError, match="not found"):
        rexec.run(["true"], ["vnode1"])
    rexec = executor(PdshRemoteExecutor, alloc, worker="exec", wrapper=WRAP,
                     pdsh="/nonexistent/pdsh")
    with pytest.raises(RemoteExecError, match="not found"):
        rexec.run(["true"], ["vnode1"])


def test_bad_node_names_are_refused(alloc):
    for rexec in exec_executors(alloc).values():
        with pytest.raises(UsageError):
            rexec.run(["true"], ["-oProxyCommand=x"])
        with pytest.raises(UsageError):
            rexec.run(["true"], ["a;b"])
        assert rexec.run(["true"], []) == {}


# --------------------------------------------------------------------------- pdsh parsing


def test_pdsh_argv_exec_escapes_percent_and_keeps_wrapper():
    s = RemoteSettings(worker="exec", wrapper=["srun", "-N1", "-w", "%h"])
    argv = pdsh_mod.build_argv(s, ["printf", "50%", "%h"], "/tmp/h", 16, 7.5, "__M__")
    assert argv[:10] == ["pdsh", "-S", "-R", "exec", "-f", "16", "-u", "8", "-w", "^/tmp/h"]
    assert argv[10:14] == ["srun", "-N1", "-w", "%h"]
    assert argv[14:16] == ["sh", "-c"]
    assert argv[17:] == ["__M__", "__M__E", "printf", "50%%", "%%h"]
    assert "%%" in argv[16]  # the script's own printf format is escaped too


def test_pdsh_argv_ssh_quotes_each_word():
    s = RemoteSettings(ssh_user="bob", connect_timeout=4)
    argv = pdsh_mod.build_argv(s, ["echo", "a b"], "/tmp/h", 64, None, "__M__")
    assert argv[:12] == ["pdsh", "-S", "-R", "ssh", "-f", "64", "-t", "4", "-l", "bob",
                         "-w", "^/tmp/h"]
    assert argv[12:14] == ["sh", "-c"]
    assert argv[15:] == ["__M__", "__M__E", "echo", "'a b'"]


def test_pdsh_parse_robustly():
    m = "__SCR_RC_abc__"
    stdout = "\n".join([
        "n1: UP", "n1: ", f"n1: {m} 0",
        "n2: partial", f"n2: {m} 4",
        "garbage without prefix",
        "n9: not a requested node",
        "n3: a line before the hang",
        f"n1: {m} 7",                     # after the marker: ignored
        "n6: __SCR_RC_forged__ 0",        # a command cannot forge the random marker
    ])
    stderr = "\n".join([
        "n2: disk error",
        "pdsh@vm: n3: command timeout",
        "sending signal 15 to n3 [sh] pid 1",
        "pdsh@vm: n3: sh killed by signal 15",
        "pdsh@vm: n4: ssh exited with exit code 255",
        "n4: ssh: connect to host n4 port 22: No route to host",
        "pdsh@vm: n5: sh killed by signal 9",
        "pdsh@vm: n6: sh exited with exit code 0",
    ])
    r = pdsh_mod.parse_output(["n1", "n2", "n3", "n4", "n5", "n6", "n7"], stdout, stderr, m)
    assert list(r) == ["n1", "n2", "n3", "n4", "n5", "n6", "n7"]
    assert r["n1"].rc == 0 and r["n1"].stdout == "UP\n" and r["n1"].ok
    assert r["n2"].rc == 4 and r["n2"].stdout == "partial" and r["n2"].stderr == "disk error\n"
    assert r["n3"].timed_out and r["n3"].rc is None and r["n3"].stdout == "a line before the hang\n"
    assert r["n4"].unreachable and r["n4"].rc == 255 and "No route" in r["n4"].stderr
    assert r["n5"].rc == 137 and not r["n5"].ok and not r["n5"].unreachable
    assert r["n6"].unreachable and not r["n6"].ok  # no real marker: never healthy
    assert r["n7"].rc is None and r["n7"].unreachable
    assert "garbage without prefix" in r["n7"].stderr


def test_pdsh_killed_as_a_whole_means_timed_out():
    r = pdsh_mod.parse_output(["a", "b"], "a: __M__ 0\n", "", "__M__", killed=True)
    assert r["a"].ok and r["b"].timed_out


# --------------------------------------------------------------------------- selection


def registry(env):
    return Registry(environ=env, entry_points=[
        ("local", "scr_core.local.plugin", "scr-core", "0.1.0"),
        ("core-remote", "scr_core.remote.plugin", "scr-core", "0.1.0"),
    ])


def test_registration_records():
    specs = {s.name: s for s in scr_remote_executors()}
    assert set(specs) == {"clustershell", "pdsh", "launcher"}
    for spec in specs.values():
        conformance.check_spec(spec)
        assert spec.detect is None and spec.settings == "remote"


def test_selection_and_settings_from_environment(alloc, tmp_path):
    env = environ(alloc, SCR_REMOTE_EXEC="pdsh", SCR_REMOTE_WORKER="exec",
                  SCR_REMOTE_WRAPPER="scr local exec %h --", HOME=str(tmp_path))
    job = JobEnv(prefix=str(tmp_path), environ=env, registry=registry(env))
    rexec = job.remote_executor
    assert isinstance(rexec, PdshRemoteExecutor)
    assert rexec.settings.wrapper == ["scr", "local", "exec", "%h", "--"]
    # inside a local allocation, without a choice, the local executor is used
    env2 = environ(alloc, HOME=str(tmp_path))
    assert JobEnv(prefix=str(tmp_path), environ=env2,
                  registry=registry(env2)).remote_executor.name == "local"


def test_settings_file_and_unknown_keys(tmp_path):
    conf = tmp_path / "settings.yaml"
    conf.write_text("core:\n  remote_exec: clustershell\nremote:\n  worker: exec\n"
                    "  wrapper: [lab, 'on', '%h']\n  fanout: 7\n")
    env = environ(SCR_SETTINGS_FILE=str(conf), HOME=str(tmp_path))
    job = JobEnv(prefix=str(tmp_path), environ=env, registry=registry(env))
    s = job.settings.section("remote")
    assert s.wrapper == ["lab", "on", "%h"] and s.fanout == 7
    conf.write_text("remote:\n  wrapper: [lab, on, '%h']\n")  # YAML: on is a boolean
    job = JobEnv(prefix=str(tmp_path), environ=env, registry=registry(env))
    with pytest.raises(ConfigError, match=r"settings.yaml:2: remote.wrapper: .*quote it"):
        job.settings.section("remote")
    conf.write_text("remote:\n  wrapperz: [x]\n")
    job = JobEnv(prefix=str(tmp_path), environ=env, registry=registry(env))
    with pytest.raises(ConfigError, match=r"unknown setting 'remote\.wrapperz'"):
        job.settings.section("remote")


def test_remote_settings_override_callers(alloc):
    rexec = executor(ClusterShellRemoteExecutor, alloc, worker="exec", wrapper=WRAP, timeout=1)
    t0 = time.monotonic()
    result = rexec.run(["sleep", "20"], ["vnode1"], timeout=60)
    assert result["vnode1"].timed_out and time.monotonic() - t0 < 10


def test_clustershell_leaves_task_self_as_it_was(alloc):
    from ClusterShell.Task import task_self

    task = task_self()
    task.set_info("fanout", 5)
    executor(ClusterShellRemoteExecutor, alloc, worker="exec", wrapper=WRAP).run(
        ["true"], ["vnode1"], fanout=33)
    assert task.info("fanout") == 5
    assert task.default("stdout_msgtree") is True


def test_scr_local_exec_wrapper_is_real(alloc):
    # sanity: the wrapper the tests rely on fails for a crashed node by itself
    proc = subprocess.run([*WRAP[:-2], "vnode2", "--", "true"], capture_output=True, text=True,
                          env=environ(alloc), timeout=30)
    assert proc.returncode == 255 and "not responding" in proc.stderr
