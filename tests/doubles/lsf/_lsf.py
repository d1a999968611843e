"""Test doubles of LSF and JSM commands: bjobs bhosts lshosts bsub bkill jsrun lrun jslist
jskill. Each executable in this directory calls :func:`main` with its own name.

The output layouts follow tests/fixtures/lsf (recorded or documented, see its README); the
state they report lives in ``$SCR_DOUBLE_STATE`` (see ../README.md).
"""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common as C

JSRUN_VALUE_OPTS = {"-n", "--nrs", "-a", "--tasks_per_rs", "-c", "--cpu_per_rs", "-g",
                    "--gpu_per_rs", "-r", "--rs_per_host", "-b", "--bind", "-d",
                    "--launch_distribution",
                    "-l", "--latency_priority", "-E", "--env", "-F", "--env_eval",
                    "-h", "--chdir", "-k", "--stdio_stderr", "-o", "--stdio_stdout",
                    "-p", "--np", "-U", "--erf_input", "-M", "--smpiargs",
                    "--exclude_hosts", "-x"}
LRUN_VALUE_OPTS = {"-N", "-n", "-T", "-c", "-g", "-M", "--smpiargs", "--exclude_hosts"}

JOB_START = 1000
STEP_START = 1


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


# --------------------------------------------------------------------------- bjobs


def _job_record(jid: str) -> dict | None:
    rec = C.read_json(C.spath("jobs", f"{jid}.json"))
    if rec is None and jid == os.environ.get("LSB_JOBID"):
        # the allocation we run in: RUN, with the time left the test wrote (default none)
        rec = {"id": jid, "stat": "RUN", "exit_code": "", "exit_reason": ""}
    if rec is not None:
        rec.setdefault("time_left", C.read_text(C.spath("time_left"), "-").strip() or "-")
    return rec


def bjobs(args: list) -> int:
    noheader = "-noheader" in args
    fmt = None
    ids = []
    i = 0
    while i < len(args):
        a = args[i]
        if a == "-o":
            fmt = args[i + 1]
            i += 2
            continue
        if not a.startswith("-"):
            ids.append(a)
        i += 1
    if not ids:
        ids = [os.environ["LSB_JOBID"]] if os.environ.get("LSB_JOBID") else []
    if fmt is None:
        sys.stderr.write("bjobs double: only the -o form is simulated\n")
        return 2
    delim = " "
    fields = []
    for word in fmt.split():
        if word.startswith("delimiter="):
            delim = word.split("=", 1)[1].strip("'\"")
        else:
            fields.append(word.split(":")[0].lower())
    lines = []
    if not noheader:
        lines.append(delim.join(f.upper() for f in fields))
    rc = 0
    for jid in ids:
        rec = _job_record(jid)
        if rec is None:
            sys.stderr.write(f"Job <{jid}> is not found\n")
            rc = 255
            continue
        lines.append(delim.join(str(rec.get({"jobid": "id", "stat": "stat"}.get(f, f), ""))
                                for f in fields))
    _out("".join(line + "\n" for line in lines))
    return rc if len(lines) == (0 if noheader else 1) else 0


# --------------------------------------------------------------------------- bhosts/lshosts


def bhosts(args: list) -> int:
    names = [a for a in args if not a.startswith("-")] or C.nodes()
    down = C.down()
    known = set(C.nodes())
    lines = ["HOST_NAME          STATUS       JL/U    MAX  NJOBS    RUN  SSUSP  USUSP    RSV"]
    rc = 0
    for n in names:
        if known and n not in known:
            sys.stderr.write(f"{n}: Bad host name, host group name or cluster name\n")
            rc = 255
            continue
        status = _status(down[n]) if n in down else "closed_Full"
        if status in ("unavail", "unreach"):
            lines.append(f"{n:<18} {status:<12} {'-':>6} {'-':>6} {'-':>6} {'-':>6} "
                         f"{'-':>6} {'-':>6} {'-':>6}")
        else:
            lines.append(f"{n:<18} {status:<12} {'-':>6} {40:>6} {40:>6} {40:>6} "
                         f"{0:>6} {0:>6} {0:>6}")
    _out("\n".join(lines) + "\n")
    return rc if len(lines) == 1 else 0


def lshosts(args: list) -> int:
    names = [a for a in args if not a.startswith("-")] or C.nodes()
    lines = ["HOST_NAME                       type       model  cpuf ncpus maxmem maxswp "
             "server RESOURCES"]
    for n in names:
        lines.append(f"{n:<31} {'LINUXPPC64':>10} {'POWER9':>10} {250.0:>5} {40:>5} "
                     f"{'256G':>6} {'4G':>6} {'Yes':>6} (mg)")
    _out("\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------- bsub/bkill


def bsub(args: list) -> int:
    script = sys.stdin.read() if not sys.stdin.isatty() else ""
    queue = None
    for i, a in enumerate(args):
        if a == "-q" and i + 1 < len(args):
            queue = args[i + 1]
    jid = str(C.next_id("jobs", JOB_START))
    C.write_json(C.spath("jobs", f"{jid}.json"),
                 {"id": jid, "stat": "PEND", "exit_code": "", "exit_reason": "",
                  "argv": args, "script": script})
    if queue:
        _out(f"Job <{jid}> is submitted to queue <{queue}>.\n")
    else:
        _out(f"Job <{jid}> is submitted to default queue <normal>.\n")
    return 0


def bkill(args: list) -> int:
    rc = 0
    for jid in [a for a in args if not a.startswith("-")]:
        path = C.spath("jobs", f"{jid}.json")
        rec = C.read_json(path)
        if rec is None:
            sys.stderr.write(f"Job <{jid}>: No matching job found\n")
            rc = 255
        elif rec["stat"] in ("DONE", "EXIT"):
            sys.stderr.write(f"Job <{jid}>: Job has already finished\n")
            rc = 255
        else:
            rec.update(stat="EXIT", exit_code="130", exit_reason="TERM_OWNER: job killed by owner")
            C.write_json(path, rec)
            _out(f"Job <{jid}> is being terminated\n")
    return rc


# --------------------------------------------------------------------------- jsrun/lrun


def _status(mark: str) -> str:
    """bhosts status of a node marked down: the first word of down/<node>, else unavail."""
    return (mark.split() or ["unavail"])[0]


def _dead(node: str, mark: str) -> bool:
    # only hosts LSF cannot reach lose their tasks; closed_Adm etc. keep running
    return _status(mark) in ("unavail", "unreach")


def _step_path(sid: str) -> str:
    return C.spath("steps", f"{sid}.json")


def launch(cmd: str, args: list) -> int:
    value_opts = JSRUN_VALUE_OPTS if cmd == "jsrun" else LRUN_VALUE_OPTS
    opts, program = C.split_program(args, value_opts)
    if not program:
        sys.stderr.write(f"{cmd}: no program given\n")
        return 1
    excluded = set()
    for v in C.option_values(opts, ("--exclude_hosts",)):
        excluded.update(x for x in v.replace(" ", ",").split(",") if x)
    step_nodes = [n for n in C.nodes() if n not in excluded]
    if not step_nodes:
        sys.stderr.write(f"{cmd}: no usable hosts in the allocation\n")
        return 1
    marks = C.down()
    bad = [n for n in step_nodes if n in marks and _dead(n, marks[n])]
    if bad:
        # a real jsrun fails to start when a host of the step is gone
        sys.stderr.write(f"{cmd}: error: host {bad[0]} is not responding\n")
        return 1
    sid = str(C.next_id("steps", STEP_START))
    rec = {"id": sid, "parent": "0", "nodes": step_nodes, "status": "Running",
           "exit": "", "launcher_pid": os.getpid(), "argv": args}
    C.write_json(_step_path(sid), rec)

    def started(pgid, pids):
        rec.update(pgid=pgid, pids=pids)
        C.write_json(_step_path(sid), rec)

    how, rc, detail = C.run_step(program, step_nodes, {"SCR_DOUBLE_STEP": sid},
                                 C.spath("steps", f"{sid}.kill"), started, _dead)
    rec.update(status={"exited": "Complete"}.get(how, "Killed"), exit=str(rc))
    C.write_json(_step_path(sid), rec)
    if how == "node_failure":
        sys.stderr.write(f"{cmd}: error: lost contact with host {detail}; "
                         "terminating the job step\n")
    return rc


def jslist(args: list) -> int:
    d = C.spath("steps")
    rows = ["   ID   ParentID       nrs   CPUs/rs   GPUs/rs   ExitStatus         Status"]
    if os.path.isdir(d):
        for name in sorted((n for n in os.listdir(d) if n.endswith(".json")),
                           key=lambda n: int(n.split(".")[0])):
            rec = C.read_json(os.path.join(d, name)) or {}
            rows.append(f"{rec.get('id', '?'):>5} {rec.get('parent', '0'):>10} "
                        f"{len(rec.get('nodes', [])):>9} {1:>9} {0:>9} "
                        f"{rec.get('exit') or 0:>12} {rec.get('status', '?'):>14}")
    _out("\n".join(rows) + "\n")
    return 0


def jskill(args: list) -> int:
    ids = [a for a in args if not a.startswith("-")]
    if not ids:
        sys.stderr.write("jskill: missing job step id\n")
        return 1
    rc = 0
    for sid in ids:
        if C.read_json(_step_path(sid)) is None:
            sys.stderr.write(f"jskill: job step {sid} not found\n")
            rc = 1
            continue
        with open(C.spath("steps", f"{sid}.kill"), "w") as fh:
            fh.write("jskill\n")
    return rc


COMMANDS = {"bjobs": bjobs, "bhosts": bhosts, "lshosts": lshosts, "bsub": bsub,
            "bkill": bkill, "jslist": jslist, "jskill": jskill,
            "jsrun": lambda a: launch("jsrun", a), "lrun": lambda a: launch("lrun", a)}


def main(cmd: str, args: list) -> int:
    C.log_call(cmd, args)
    C.replay(cmd)
    return COMMANDS[cmd](args)
