"""Test double of the ``flux`` command: the subcommands scr uses.

resource status|list, jobs, submit, run, mini submit|run, batch, job attach|cancel|id|
timeleft, cancel, getattr, exec. Output layouts follow tests/fixtures/flux (see its README);
state lives in ``$SCR_DOUBLE_STATE`` (see ../README.md).
"""

from __future__ import annotations

import os
import signal
import string
import subprocess
import sys
import time
import types

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import _common as C

JOB_START = 14112474005504  # a real Flux job id (ƒ7PiE17dH), so ids look like Flux's
UINT_MAX = 4294967295
F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
CORES = 4
SUBMIT_VALUE_OPTS = {
    "-N", "--nodes", "-n", "--ntasks", "--nslots", "-c", "--cores-per-task",
    "--cores-per-slot", "-g", "--gpus-per-task", "--gpus-per-slot", "-t", "--time-limit",
    "-q", "--queue", "-o", "--setopt", "-S", "--setattr", "--requires", "--job-name",
    "--cwd", "--urgency", "--env", "--env-remove", "--env-file", "--rlimit",
    "--dependency", "--begin-time", "--signal", "--taskmap", "--output", "--error",
    "--input", "--add-file", "--conf", "--flags", "-B", "--bank", "--cc", "--bcc", "--log",
    "--log-stderr", "--wait-event", "-x",
}


def _out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text)
    sys.stderr.flush()


# --------------------------------------------------------------------------- ids


def f58(value: int) -> str:
    digits = ""
    while True:
        value, rem = divmod(value, 58)
        digits = F58[rem] + digits
        if not value:
            return "ƒ" + digits


def parse_id(text: str) -> int | None:
    s = text.strip()
    if s.startswith(("ƒ", "f")) and len(s) > 1 and all(c in F58 for c in s[1:]):
        v = 0
        for c in s[1:]:
            v = v * 58 + F58.index(c)
        return v
    if s.lower().startswith("0x"):
        return int(s, 16)
    if s.isdigit():
        return int(s)
    return None


class JobID(int):
    """Like flux.job.JobID: str() is F58, '{id:d}' is decimal."""

    def __str__(self) -> str:
        return f58(int(self))

    @property
    def f58(self) -> str:
        return f58(int(self))

    @property
    def dec(self) -> str:
        return str(int(self))

    @property
    def hex(self) -> str:
        return hex(int(self))


# --------------------------------------------------------------------------- formatting


class Formatter(string.Formatter):
    """Python format strings as flux-jobs/flux-resource accept them (subset): dotted
    fields, the ``h`` suffix (empty/0 -> ``-``)."""

    def get_field(self, field_name, args, kwargs):
        head, *rest = field_name.split(".")
        obj = kwargs.get(head, "")
        for part in rest:
            obj = getattr(obj, part, "") if not isinstance(obj, dict) else obj.get(part, "")
        return obj, field_name

    def format_field(self, value, spec):
        if spec.endswith("h"):
            value = "-" if str(value) in ("", "0", "0.0", "0s") else str(value)
            spec = spec[:-1]
        if isinstance(value, JobID) and not spec:
            return str(value)  # F58, as flux prints a bare {id}
        return format(value, spec)


def header(fmt: str, names: dict) -> str:
    parts = []
    for literal, field, spec, _conv in string.Formatter().parse(fmt):
        parts.append(literal)
        if field is not None:
            title = names.get(field, field.upper())
            spec = (spec or "").rstrip("hd+")
            parts.append(format(title, spec))
    return "".join(parts)


def render(fmt: str, rows: list, names: dict, no_header: bool) -> str:
    f = Formatter()
    lines = [] if no_header else [header(fmt, names).rstrip()]
    for row in rows:
        lines.append(f.vformat(fmt, (), row).rstrip())
    return "".join(line + "\n" for line in lines)


# --------------------------------------------------------------------------- state


def instance_hosts() -> list:
    text = C.read_text(C.spath("attr", "hostlist")).strip()
    return C.expand(text) if text else C.nodes()


def mark_state(mark: str) -> tuple:
    """down/<node> content -> (state, reason): "offline", "drained why", "exclude", ..."""
    word, _, reason = mark.strip().partition(" ")
    return (word or "offline"), reason.strip()


def node_states() -> dict:
    """host -> (state as flux resource status prints it, reason)."""
    marks = C.down()
    out = {}
    for n in dict.fromkeys(instance_hosts()):
        if n not in marks:
            out[n] = ("avail", "")
            continue
        state, reason = mark_state(marks[n])
        out[n] = ("avail*" if state == "offline" else state, reason)
    return out


def is_dead(node: str, mark: str) -> bool:
    # only a lost broker kills the job's tasks; drained/excluded nodes keep running them
    state = mark_state(mark)[0]
    return state == "offline" or state.endswith("*")


def job_path(jid: int) -> str:
    return C.spath("jobs", f"{jid}.json")


def load_job(jid: int) -> dict | None:
    return C.read_json(job_path(jid))


def save_job(rec: dict) -> None:
    C.write_json(job_path(rec["id"]), rec)


def all_jobs() -> list:
    d = C.spath("jobs")
    if not os.path.isdir(d):
        return []
    out = []
    for name in sorted(os.listdir(d)):
        if name.endswith(".json"):
            rec = C.read_json(os.path.join(d, name))
            if rec:
                out.append(rec)
    return out


# --------------------------------------------------------------------------- resource


def resource(args: list) -> int:
    sub = args[0] if args else "list"
    rest = args[1:]
    fmt = None
    no_header = False
    states = None
    i = 0
    while i < len(rest):
        a = rest[i]
        if a in ("-o", "--format"):
            fmt = rest[i + 1]
            i += 2
            continue
        if a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a in ("-n", "--no-header"):
            no_header = True
        elif a in ("-s", "--states"):
            states = set(rest[i + 1].split(","))
            i += 2
            continue
        elif a == "-no":
            no_header = True
            fmt = rest[i + 1]
            i += 2
            continue
        i += 1
    rank = {h: r for r, h in reversed(list(enumerate(instance_hosts())))}
    if sub == "status":
        fmt = fmt or "{state:>10} {nnodes:>6} {ranks:<15} {nodelist}"
        groups: dict = {}
        for n, (state, reason) in node_states().items():
            if states and state.rstrip("*") not in states and "all" not in states:
                continue
            groups.setdefault((state, reason), []).append(n)
        order = ["avail", "avail*", "exclude", "draining", "drained", "drained*", "torpid"]
        rows = []
        for (state, reason), members in sorted(
                groups.items(), key=lambda kv: (order.index(kv[0][0])
                                                if kv[0][0] in order else 99, kv[0][1])):
            rows.append({"state": state, "statex": state.rstrip("*"),
                         "nnodes": len(members), "nodelist": C.fold(members),
                         "ranks": C.idset([rank[m] for m in members]), "reason": reason,
                         "status": "offline" if state.endswith("*") else "online"})
        _out(render(fmt, rows, {"state": "STATE", "nnodes": "NNODES", "ranks": "RANKS",
                                "nodelist": "NODELIST", "reason": "REASON"}, no_header))
        return 0
    if sub == "list":
        fmt = fmt or "{state:>10} {nnodes:>6} {ncores:>8} {ngpus:>8} {nodelist}"
        busy = set()
        for rec in all_jobs():
            if rec["state"] == "RUN":
                busy.update(rec.get("nodes", []))
        cats = {"free": [], "allocated": [], "down": []}
        for n, (state, _reason) in node_states().items():
            if state == "exclude":
                continue  # the scheduler view omits excluded resources
            cat = "down" if state != "avail" else ("allocated" if n in busy else "free")
            cats[cat].append(n)
        rows = [{"state": k, "nnodes": len(v), "ncores": CORES * len(v), "ngpus": 0,
                 "nodelist": C.fold(v), "ranks": C.idset([rank[m] for m in v])}
                for k, v in cats.items()]
        _out(render(fmt, rows, {"state": "STATE", "nnodes": "NNODES", "ncores": "NCORES",
                                "ngpus": "NGPUS", "nodelist": "NODELIST"}, no_header))
        return 0
    _err(f"flux-resource: double does not simulate '{sub}'\n")
    return 1


# --------------------------------------------------------------------------- jobs


def _job_row(rec: dict) -> dict:
    exc = rec.get("exception") or {}
    occurred = bool(exc.get("type"))
    status = rec["state"] if rec["state"] != "INACTIVE" else rec.get("result", "")
    return {
        "id": JobID(rec["id"]), "state": rec["state"], "result": rec.get("result", ""),
        "returncode": rec.get("returncode", ""), "status": status,
        "exception": types.SimpleNamespace(occurred=occurred, type=exc.get("type", ""),
                                           note=exc.get("note", "")),
        "nodelist": C.fold(rec.get("nodes", [])) if rec.get("nodes") else "",
        "nnodes": len(rec.get("nodes", [])) or "", "ntasks": len(rec.get("nodes", [])) or 1,
        "name": rec.get("name", ""), "expiration": rec.get("expiration", 0.0),
        "t_submit": rec.get("t_submit", 0.0),
    }


def jobs(args: list) -> int:
    fmt = "{id.f58:>12} {name:<10.10} {status:>9} {ntasks:>6} {nnodes:>6h} {nodelist:h}"
    no_header = False
    show_all = False
    ids = []
    i = 0
    while i < len(args):
        a = args[i]
        if a in ("-o", "--format"):
            fmt = args[i + 1]
            i += 2
            continue
        if a.startswith("--format="):
            fmt = a.split("=", 1)[1]
        elif a in ("-n", "--no-header", "--suppress-header"):
            no_header = True
        elif a == "-a":
            show_all = True
        elif not a.startswith("-"):
            ids.append(a)
        i += 1
    rows = []
    rc = 0
    if ids:
        for text in ids:
            jid = parse_id(text)
            rec = load_job(jid) if jid is not None else None
            if rec is None:
                _err(f"flux-jobs: ERROR: JOBID {text} not found\n")
                rc = 1
                continue
            rows.append(_job_row(rec))
    else:
        rows = [_job_row(r) for r in all_jobs() if show_all or r["state"] != "INACTIVE"]
    _out(render(fmt, rows, {"id": "JOBID", "id.f58": "JOBID", "id.dec": "JOBID"}, no_header))
    return rc if not rows else 0


def _parse_requires(values: list) -> tuple:
    """(include or None, exclude): host constraints of RFC 35 the double understands."""
    include, exclude = None, set()
    for v in values:
        for term in v.split():
            neg = term.startswith("-")
            term = term.lstrip("-")
            op, _, operand = term.partition(":")
            if op not in ("host", "hosts", "hostlist") or not operand:
                raise ValueError(f"constraint {v!r} is not simulated by the double")
            names = set(C.expand(operand))
            if neg:
                exclude |= names
            else:
                include = names if include is None else include & names
    return include, exclude


def submit(args: list, quiet: bool = False) -> tuple:
    """(rc, job record or None)."""
    opts, program = C.split_program(args, SUBMIT_VALUE_OPTS)
    if not program:
        _err("flux-submit: ERROR: job command and arguments are missing\n")
        return 1, None
    try:
        include, exclude = _parse_requires(C.option_values(opts, ("--requires",)))
    except ValueError as exc:
        _err(f"flux-submit: ERROR: {exc}\n")
        return 1, None
    nodes_opt = C.option_values(opts, ("-N", "--nodes"))
    tasks_opt = C.option_values(opts, ("-n", "--ntasks", "--nslots"))
    candidates = [n for n in dict.fromkeys(instance_hosts())
                  if n not in exclude and (include is None or n in include)]
    nnodes = int(nodes_opt[-1]) if nodes_opt else (
        min(int(tasks_opt[-1]), max(1, len(candidates))) if tasks_opt else 1)
    if nnodes > len(candidates):
        _err("flux-submit: ERROR: unsatisfiable request\n")
        return 1, None
    limit = C.option_values(opts, ("-t", "--time-limit"))
    expiration = 0.0
    if limit:
        v = limit[-1]
        mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}.get(v[-1:], 60)
        expiration = time.time() + float(v.rstrip("smhd")) * mult
    jid = C.next_id("jobs", JOB_START)
    rec = {"id": jid, "state": "SCHED", "result": "", "returncode": "", "exception": {},
           "program": program, "opts": opts, "candidates": candidates, "nnodes": nnodes,
           "nodes": [], "name": os.path.basename(program[0]), "t_submit": time.time(),
           "expiration": expiration}
    save_job(rec)
    if not quiet:
        _out(f58(jid) + "\n")
    return 0, rec


def _finish(rec: dict, result: str, rc, exc_type: str = "", note: str = "") -> None:
    rec.update(state="INACTIVE", result=result, returncode=rc)
    if exc_type:
        rec["exception"] = {"type": exc_type, "note": note}
    save_job(rec)


def attach(jid: int) -> int:
    rec = load_job(jid)
    if rec is None:
        _err(f"flux-job: ERROR: {f58(jid)}: unknown job id\n")
        return 1
    cancel_file = C.spath("jobs", f"{jid}.cancel")
    # wait for resources, like a pending job (cancel works meanwhile)
    while True:
        rec = load_job(jid)
        if rec["state"] == "INACTIVE":
            rc = rec.get("returncode")
            return rc if isinstance(rc, int) and rc >= 0 else 1
        if os.path.exists(cancel_file):
            _finish(rec, "CANCELED", -128, "cancel", "")
            _err(f"flux-job: {f58(jid)}: exception: cancel\n")
            return 1
        states = node_states()
        usable = [n for n in rec["candidates"] if states.get(n, ("?",))[0] == "avail"]
        if len(usable) >= rec["nnodes"]:
            break
        time.sleep(C.POLL)
    nodes = usable[:rec["nnodes"]]
    rec.update(state="RUN", nodes=nodes, t_run=time.time(), attach_pid=os.getpid())
    save_job(rec)
    env = {"FLUX_JOB_ID": f58(jid), "FLUX_JOB_SIZE": str(len(nodes)),
           "FLUX_JOB_NNODES": str(len(nodes))}

    def started(pgid, pids):
        rec.update(pgid=pgid, pids=pids)
        save_job(rec)

    how, rc, detail = C.run_step(rec["program"], nodes, env, cancel_file, started, is_dead)
    rec = load_job(jid) or rec
    if how == "exited":
        _finish(rec, "COMPLETED" if rc == 0 else "FAILED", rc)
    elif how == "node_failure":
        rank = instance_hosts().index(detail)
        # what job-exec raises for a lost critical shell (every rank of a plain job), as
        # the lab instance prints it (tests/fixtures/flux/jobs_status.live.txt)
        note = f"node failure on {detail} (rank {rank})"
        _finish(rec, "FAILED", rc, "exec", note)
        _err(f"0.000s: job.exception {jid} type=exec severity=0 {note}\n")
    elif how == "killed":
        _finish(rec, "CANCELED", rc, "cancel", "")
        _err(f"flux-job: {f58(jid)}: exception: cancel\n")
    else:
        _finish(rec, "FAILED", rc)
    return rc


def cancel(args: list) -> int:
    rc = 0
    for text in [a for a in args if not a.startswith("-")]:
        jid = parse_id(text)
        rec = load_job(jid) if jid is not None else None
        if rec is None:
            _err(f"flux-cancel: ERROR: {text}: unknown job id\n")
            rc = 1
            continue
        if rec["state"] == "INACTIVE":
            _err(f"flux-cancel: ERROR: {f58(jid)}: job is inactive\n")
            rc = 1
            continue
        with open(C.spath("jobs", f"{jid}.cancel"), "w") as fh:
            fh.write("cancel\n")
        if rec["state"] == "SCHED" and not rec.get("attach_pid"):
            _finish(rec, "CANCELED", -128, "cancel", "")
    return rc


# --------------------------------------------------------------------------- job / misc


def job(args: list) -> int:
    sub = args[0] if args else ""
    rest = args[1:]
    if sub == "attach":
        ids = [a for a in rest if not a.startswith("-")]
        jid = parse_id(ids[0]) if ids else None
        if jid is None:
            _err("flux-job: ERROR: attach needs a job id\n")
            return 1
        return attach(jid)
    if sub == "cancel":
        return cancel(rest)
    if sub == "timeleft":
        _out(C.read_text(C.spath("timeleft"), str(UINT_MAX)).strip() + "\n")
        return 0
    if sub == "id":
        to = "dec"
        out = []
        for a in rest:
            if a.startswith("--to="):
                to = a.split("=", 1)[1]
            elif not a.startswith("-"):
                v = parse_id(a)
                if v is None:
                    _err(f"flux-job: ERROR: {a}: malformed input\n")
                    return 1
                out.append({"dec": str(v), "f58": f58(v), "hex": hex(v)}.get(to, str(v)))
        _out("".join(x + "\n" for x in out))
        return 0
    _err(f"flux-job: double does not simulate '{sub}'\n")
    return 1


def getattr_(args: list) -> int:
    name = args[0] if args else ""
    path = C.spath("attr", name)
    if os.path.exists(path):
        _out(C.read_text(path).strip() + "\n")
        return 0
    if name == "hostlist":
        _out(C.fold(instance_hosts()) + "\n")
        return 0
    if name == "size":
        _out(f"{len(instance_hosts())}\n")
        return 0
    _err(f"flux-getattr: {name}: No such file or directory\n")
    return 1


def _idset(text: str) -> list:
    out = []
    for part in text.strip("[]").split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def exec_(args: list) -> int:
    opts, program = C.split_program(args, {"-r", "--rank", "-x", "--exclude", "-d", "--dir",
                                           "-j", "--jobid", "--label", "--setopt"})
    hosts = instance_hosts()
    ranks_opt = C.option_values(opts, ("-r", "--rank"))
    ranks = (list(range(len(hosts))) if not ranks_opt or ranks_opt[-1] == "all"
             else _idset(ranks_opt[-1]))
    label = "-l" in opts or "--label-io" in opts
    if not program:
        _err("flux-exec: ERROR: command is missing\n")
        return 1
    marks = C.down()
    exit_code = 0
    current = {}

    def forward(signum, frame):
        p = current.get("p")
        if p is not None and p.poll() is None:
            p.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for r in ranks:
        if r >= len(hosts):
            _err(f"flux-exec: Error: rank {r}: {program[0]}: No route to host\n")
            exit_code = max(exit_code, 68)
            continue
        host = hosts[r]
        if host in marks and is_dead(host, marks[host]):
            _err(f"flux-exec: Error: rank {r}: {program[0]}: No route to host\n")
            exit_code = max(exit_code, 68)
            continue
        env = dict(os.environ, SCR_DOUBLE_NODE=host, FLUX_EXEC_RANK=str(r))
        try:
            p = subprocess.Popen(program, env=env, stdin=subprocess.DEVNULL,
                                 stdout=subprocess.PIPE if label else None,
                                 stderr=subprocess.PIPE if label else None, text=True)
        except OSError:
            _err(f"flux-exec: Error: rank {r}: {program[0]}: No such file or directory\n")
            exit_code = max(exit_code, 127)
            continue
        current["p"] = p
        out, err = p.communicate()
        if label:
            _out("".join(f"{r}: {line}\n" for line in (out or "").splitlines()))
            _err("".join(f"{r}: {line}\n" for line in (err or "").splitlines()))
        code = p.returncode if p.returncode >= 0 else 128 - p.returncode
        if code:
            _err(f"{r}: Exit {code}\n")
        exit_code = max(exit_code, code)
    return exit_code


def run_cmd(args: list) -> int:
    verbose = "-v" in args or "--verbose" in args
    rc, rec = submit(args, quiet=True)
    if rec is None:
        return rc
    if verbose:
        _err(f"jobid: {f58(rec['id'])}\n")
    return attach(rec["id"])


def main(args: list) -> int:
    C.log_call("flux", args)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1  # global options such as --parent
    words = args[i:]
    if not words:
        _err("usage: flux COMMAND ...\n")
        return 1
    if words[0] == "mini" and len(words) > 1:
        words = words[1:]
    cmd = words[0]
    key = "flux-" + "-".join(words[:2] if cmd in ("resource", "job") else words[:1])
    C.replay(key)
    rest = words[1:]
    if cmd == "resource":
        return resource(rest)
    if cmd == "jobs":
        return jobs(rest)
    if cmd in ("submit", "batch"):
        return submit(rest)[0]
    if cmd == "run":
        return run_cmd(rest)
    if cmd == "job":
        return job(rest)
    if cmd == "cancel":
        return cancel(rest)
    if cmd == "getattr":
        return getattr_(rest)
    if cmd == "exec":
        return exec_(rest)
    _err(f"flux: double does not simulate '{cmd}'\n")
    return 1
