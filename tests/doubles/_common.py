"""Shared machinery of the LSF and Flux test doubles (see README.md in this directory).

Standard library only: the doubles run under whatever ``python3`` is first on PATH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

POLL = 0.05
TERM_GRACE = 3.0


def state_dir() -> str:
    path = os.environ.get("SCR_DOUBLE_STATE")
    if not path:
        sys.stderr.write("test double: SCR_DOUBLE_STATE is not set\n")
        sys.exit(2)
    os.makedirs(path, exist_ok=True)
    return path


def spath(*parts: str) -> str:
    return os.path.join(state_dir(), *parts)


def log_call(cmd: str, argv: list) -> None:
    line = json.dumps({"cmd": cmd, "argv": list(argv), "time": time.time(),
                       "pid": os.getpid()}) + "\n"
    fd = os.open(spath("log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def replay(key: str) -> bool:
    """If ``replay/<key>.out`` exists, print it (and ``.err``) and exit with ``.rc``."""
    base = spath("replay", key)
    if not os.path.exists(base + ".out"):
        return False
    with open(base + ".out", encoding="utf-8") as fh:
        sys.stdout.write(fh.read())
    if os.path.exists(base + ".err"):
        with open(base + ".err", encoding="utf-8") as fh:
            sys.stderr.write(fh.read())
    rc = 0
    if os.path.exists(base + ".rc"):
        with open(base + ".rc") as fh:
            rc = int(fh.read().strip() or 0)
    sys.stdout.flush()
    sys.exit(rc)


def read_text(path: str, default: str = "") -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        return default


def write_json(path: str, data: dict) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


def read_json(path: str) -> dict | None:
    try:
        with open(path) as fh:
            return json.load(fh)
    except (FileNotFoundError, ValueError):
        return None


def next_id(name: str, start: int) -> int:
    """A counter in the state dir (good enough: doubles are not called concurrently for
    the same counter in the tests)."""
    path = spath(f"{name}.counter")
    value = int(read_text(path, str(start)).strip() or start)
    with open(path, "w") as fh:
        fh.write(str(value + 1))
    return value


def nodes() -> list:
    return [w for w in read_text(spath("nodes")).split() if w]


def down() -> dict:
    """{node: first line of down/<node>} for nodes marked down."""
    d = spath("down")
    out = {}
    if os.path.isdir(d):
        for name in sorted(os.listdir(d)):
            if not name.startswith("."):
                out[name] = read_text(os.path.join(d, name)).strip()
    return out


# --------------------------------------------------------------------------- hostlists


def expand(text: str) -> list:
    out = []
    for item in re.findall(r"[^,\[\]]*(?:\[[^\]]*\][^,\[\]]*)*", text or ""):
        item = item.strip()
        if not item:
            continue
        m = re.fullmatch(r"(.*?)\[([^\]]*)\](.*)", item)
        if not m:
            out.append(item)
            continue
        pre, body, post = m.groups()
        for part in body.split(","):
            lo, _, hi = part.partition("-")
            hi = hi or lo
            for i in range(int(lo), int(hi) + 1):
                out.append(f"{pre}{str(i).zfill(len(lo))}{post}")
    return out


def fold(names: list) -> str:
    groups: dict = {}
    order = []
    for n in dict.fromkeys(names):
        m = re.fullmatch(r"(.*?)(\d+)", n)
        key = (m.group(1), len(m.group(2)) if m.group(2).startswith("0") else 0) if m else (n,)
        if key not in groups:
            groups[key] = []
            order.append(key)
        groups[key].append(n)
    parts = []
    for key in order:
        members = groups[key]
        if len(key) == 1 or len(members) == 1:
            parts.extend(members)
            continue
        prefix, width = key
        nums = sorted(int(n[len(prefix):]) for n in members)
        runs = []
        for v in nums:
            if runs and v == runs[-1][1] + 1:
                runs[-1][1] = v
            else:
                runs.append([v, v])
        body = ",".join(str(a).zfill(width) if a == b else
                        f"{str(a).zfill(width)}-{str(b).zfill(width)}" for a, b in runs)
        parts.append(f"{prefix}[{body}]")
    return ",".join(parts)


# --------------------------------------------------------------------------- a job step


def _group_signal(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_step(program: list, step_nodes: list, extra_env: dict, kill_file: str,
             on_start=None, is_dead=None) -> tuple:
    """Run ``program`` once per node (all tasks in one new process group, output inherited).

    Returns ``(how, rc, detail)``: ``how`` is ``"exited"`` (rc = largest task code, 128+N
    for a signal), ``"node_failure"`` (a node of the step was marked down and
    ``is_dead(node, mark)`` agrees, default yes: tasks SIGKILLed, rc 137,
    detail = node), ``"killed"`` (``kill_file`` appeared: tasks got SIGTERM then
    SIGKILL, rc 143) or ``"signaled"`` (the double itself got SIGTERM/SIGINT, forwarded).
    """
    procs = []
    pgid = 0
    base_env = dict(os.environ)
    base_env.update(extra_env)
    try:
        for rank, node in enumerate(step_nodes):
            env = dict(base_env, SCR_DOUBLE_NODE=node, SCR_DOUBLE_RANK=str(rank),
                       SCR_DOUBLE_NRANKS=str(len(step_nodes)))
            p = subprocess.Popen(program, env=env,
                                 stdin=None if rank == 0 else subprocess.DEVNULL,
                                 preexec_fn=(lambda g=pgid: os.setpgid(0, g)))
            if not pgid:
                pgid = p.pid
            procs.append(p)
    except OSError as exc:
        for p in procs:
            p.kill()
        sys.stderr.write(f"{program[0]}: {exc}\n")
        return ("exited", 127, str(exc))
    if on_start:
        on_start(pgid, [p.pid for p in procs])
    got = {}

    def forward(signum, frame):
        got["sig"] = signum
        _group_signal(pgid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)

    def finish_kill(sig_first: int) -> None:
        _group_signal(pgid, sig_first)
        deadline = time.monotonic() + TERM_GRACE
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(POLL)
        _group_signal(pgid, signal.SIGKILL)
        for p in procs:
            p.wait()

    while True:
        codes = [p.poll() for p in procs]
        if None not in codes:
            rcs = [128 - c if c < 0 else c for c in codes]
            if "sig" in got:
                return ("signaled", 128 + got["sig"], "")
            return ("exited", max(rcs) if rcs else 0, "")
        marks = down()
        dead = [n for n in step_nodes if n in marks and (is_dead is None
                                                         or is_dead(n, marks[n]))]
        if dead:
            finish_kill(signal.SIGKILL)
            return ("node_failure", 137, dead[0])
        if kill_file and os.path.exists(kill_file):
            finish_kill(signal.SIGTERM)
            return ("killed", 143, "")
        time.sleep(POLL)


def split_program(args: list, takes_value: set) -> tuple:
    """(options, program): options end at ``--`` or at the first word that is not an
    option; ``--opt=value`` forms and the options in ``takes_value`` (which consume the
    next word) are understood."""
    i = 0
    opts = []
    while i < len(args):
        a = args[i]
        if a == "--":
            return opts, args[i + 1:]
        if not a.startswith("-") or a == "-":
            return opts, args[i:]
        if "=" in a or a not in takes_value:
            opts.append(a)
            i += 1
            continue
        opts.extend(args[i:i + 2])
        i += 2
    return opts, []


def option_values(opts: list, names: tuple) -> list:
    """Values of options ``names`` in ``opts`` (``--x=v``, ``--x v``, ``-Nv`` forms)."""
    out = []
    i = 0
    while i < len(opts):
        a = opts[i]
        for n in names:
            if a.startswith(n + "="):
                out.append(a[len(n) + 1:])
            elif a == n and i + 1 < len(opts):
                out.append(opts[i + 1])
                i += 1
            elif len(n) == 2 and a.startswith(n) and len(a) > 2 and not a.startswith("--"):
                out.append(a[2:])
        i += 1
    return out


def idset(values: list) -> str:
    """RFC 22 idset string: 0-3,7."""
    runs = []
    for v in sorted(set(values)):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)
