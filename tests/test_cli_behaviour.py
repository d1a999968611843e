"""CLI behaviour a user sees: live output, stdin, one-line errors with documented codes."""

from __future__ import annotations

import subprocess
import sys

import pytest


def scr(*args):
    return [sys.executable, "-m", "scr_core", *args]


def one_line_error(r, code, *needles):
    assert r.returncode == code, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_output_streams_live_while_the_step_runs(scr_env, tmp_path):
    gate = tmp_path / "gate"
    # the app prints, then waits for the test to react to that output: buffered output
    # (SCR's behaviour) would deadlock here until the timeout
    app = f"echo early; while [ ! -e {gate} ]; do sleep 0.05; done; echo late"
    proc = subprocess.Popen(scr("run", "local", "-N", "1", "sh", "-c", app),
                            env=dict(scr_env, SCR_LOCAL_NODES="1"), cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        first = proc.stdout.readline()
        assert first.strip() == "early"
        assert proc.poll() is None  # the step is still running
        gate.touch()
        rest, _ = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert rest.strip() == "late" and proc.returncode == 0


def test_stdin_is_forwarded_to_the_first_task(scr_env, tmp_path):
    r = subprocess.run(scr("run", "local", "-N", "2", "sh", "-c", 'read x; echo "got:$x"'),
                       input="hello\n", env=dict(scr_env, SCR_LOCAL_NODES="2"), cwd=tmp_path,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("got:hello") == 1  # rank 0 only, as srun
    assert r.stdout.count("got:") == 2


@pytest.mark.parametrize("args, code, needles", [
    (["hostlist", "n[3-1]"], 2, ["n[3-1]"]),
    (["hostlist", "--nth", "x", "n1"], 2, ["--nth"]),
    (["run", "aprun", "./app"], 4, ["no launcher plugin handles 'aprun'"]),
    (["halt", "--before", "sometime soon"], 2, ["sometime soon"]),
    (["local", "down", "vnode1"], 5, ["SCR_LOCAL_DIR"]),
    (["nosuchcommand"], 2, ["nosuchcommand"]),
])
def test_bad_input_is_one_line_and_a_documented_code(scr_env, tmp_path, args, code, needles):
    r = subprocess.run(scr(*args), env=scr_env, cwd=tmp_path, capture_output=True, text=True,
                       timeout=60)
    one_line_error(r, code, *needles)


def test_bad_config_line_names_file_and_line(scr_env, tmp_path):
    conf = tmp_path / "scr.conf"
    conf.write_text("SCR_RUNS=3\n# fine\nSTORE=/dev/shm GROUP\n")
    r = subprocess.run(scr("config", "params"), env=dict(scr_env, SCR_CONF_FILE=str(conf)),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    one_line_error(r, 3, f"{conf}:3")


def test_bad_settings_file_names_file_and_line(scr_env, tmp_path):
    settings = tmp_path / "settings.yaml"
    settings.write_text("local:\n  nodes: '4'\n  no_such_key: 1\n")
    r = subprocess.run(scr("config", "settings"),
                       env=dict(scr_env, SCR_SETTINGS_FILE=str(settings)),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    one_line_error(r, 3, f"{settings}:3", "local.no_such_key")


def test_config_shows_sources(scr_env, tmp_path):
    (tmp_path / ".scrconf").write_text("SCR_HALT_SECONDS = 120\n")
    r = subprocess.run(scr("config"), env=dict(scr_env, SCR_RUNS="4", SCR_LOCAL_NODES="6"),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "SCR_RUNS = 4    [env SCR_RUNS]" in r.stdout
    assert f"SCR_HALT_SECONDS = 120    [{tmp_path}/.scrconf:1]" in r.stdout
    assert "local.nodes = 6    [env SCR_LOCAL_NODES]" in r.stdout
    t = subprocess.run(scr("config", "template"), env=scr_env, capture_output=True, text=True,
                       timeout=60)
    assert "#local:" in t.stdout and "kill_on_bad_exit" in t.stdout


def test_config_template_uncommented_is_a_valid_settings_file(scr_env, tmp_path):
    """Every key line of the template, uncommented, loads and gives back the defaults."""
    import re

    t = subprocess.run(scr("config", "template"), env=scr_env, capture_output=True, text=True,
                       timeout=60)
    assert t.returncode == 0, t.stderr
    assert "Undefined" not in t.stdout
    keys = [line[1:] for line in t.stdout.splitlines()
            if re.match(r"^#([a-z_]+:$|  [a-z_]+: .*)$", line)]
    assert "  script: []" in keys and "  wrapper: []" in keys  # default_factory fields
    conf = tmp_path / "settings.yaml"
    conf.write_text("\n".join(keys) + "\n")
    env = {k: v for k, v in scr_env.items() if not k.startswith("SCR_LOCAL")}
    shown = subprocess.run(scr("config", "settings"), env=dict(env, SCR_SETTINGS_FILE=str(conf)),
                           cwd=tmp_path, capture_output=True, text=True, timeout=60)
    defaults = subprocess.run(scr("config", "settings"), env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and defaults.returncode == 0, shown.stderr + defaults.stderr

    def values(text):
        return {line.split("    [")[0] for line in text.splitlines() if " = " in line}

    assert values(shown.stdout) == values(defaults.stdout)
    assert f"[{conf}:" in shown.stdout


def test_version_and_module_entry(scr_env):
    r = subprocess.run(scr("--version"), env=scr_env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.startswith("scr ")
    r = subprocess.run([sys.executable, "-m", "scr_core"], env=scr_env, capture_output=True,
                       text=True)
    assert r.returncode == 0 and "hostlist" in r.stdout


def test_scr_named_console_scripts_exist(scr_env):
    import shutil

    for name in ("scr_run", "scr_srun", "scr_halt", "scr_should_exit", "scr_list_down_nodes",
                 "scr_prerun", "scr_postrun", "scr_env", "scr_hostlist", "scr_ckpt_interval"):
        assert shutil.which(name, path=scr_env["PATH"]), name
    r = subprocess.run(["scr_hostlist", "--count", "n[1-5,9]"], env=scr_env,
                       capture_output=True, text=True)
    assert (r.returncode, r.stdout.strip()) == (0, "6")


def test_local_exec_honours_injected_faults(scr_env, tmp_path):
    """`scr local exec` is the manual remote exec: a node's injected fault applies to it."""
    script = (
        "scr local fault vnode2 fail; scr local exec vnode2 echo hi; echo rc=$?\n"
        "scr local fault vnode2 garbage; scr local exec vnode2 echo hi | tr -d '\\000'; "
        "echo rc=$?\n"
        "scr local fault vnode2 none; scr local exec vnode2 echo hi; echo rc=$?\n"
        "scr local fault vnode1 hang; timeout 3 scr local exec vnode1 echo hi; echo rc=$?\n")
    r = subprocess.run(scr("local", "alloc", "-N2", "--", "sh", "-c", script), env=scr_env,
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == "rc=255"
    assert "vnode2: injected failure" in r.stderr
    assert "#!garbage" in r.stdout and "\nihrc=0" in r.stdout  # mangled: output reversed
    assert "hi\nrc=0" in r.stdout
    assert r.stdout.rstrip().endswith("rc=124")  # hung until killed


def test_settings_sections_are_validated_when_read(scr_env, tmp_path):
    """A section is validated when a backend reads it (lazy settings, for start-up time):
    scr_should_exit in a local allocation never reads section ``local``, so a bad value there
    does not fail it; scr run, whose local launcher reads it, fails with the one-line error
    naming file and line before anything is launched."""
    settings = tmp_path / "settings.yaml"
    settings.write_text("local:\n  nodes: '2'\n  kill_on_bad_exit: [1, 2]\n")
    env = dict(scr_env, SCR_SETTINGS_FILE=str(settings))
    marker = tmp_path / "launched"
    should_exit = subprocess.run(
        scr("local", "alloc", "-N", "2", "--", *scr("should-exit", "--runs", "0")),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert should_exit.returncode == 0, should_exit.stderr  # 0 = stop: no runs left
    run = subprocess.run(
        scr("local", "alloc", "-N", "2", "--",
            *scr("run", "local", "-N", "2", "touch", str(marker))),
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    run.stderr = "\n".join(line for line in run.stderr.splitlines()
                            if not line.startswith("scr local: "))  # alloc's own messages
    one_line_error(run, 3, f"{settings}:3", "local.kill_on_bad_exit")
    assert run.stderr.startswith("scr run: error: ")
    assert not marker.exists()
    # a read section still fails every command that reads it, scr config settings included
    shown = subprocess.run(scr("config", "settings"), env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=60)
    one_line_error(shown, 3, f"{settings}:3", "local.kill_on_bad_exit")
