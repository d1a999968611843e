"""``scr local``: virtual allocations of the built-in local backend.

``scr local alloc -N 4 -- ./job.sh`` is to the local backend what ``salloc -N4 ./job.sh`` is to
Slurm: it makes an allocation of virtual nodes, exports ``SCR_LOCAL_DIR`` and runs the command
inside it. The other subcommands change node state from outside, to exercise failures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time

from ..errors import JobEnvironmentError, UsageError
from ..local.allocation import ENV_DIR, FAULTS, LocalAllocation, default_base, sweep_stale
from ..units import parse_duration


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    alloc = sub.add_parser("alloc", help="run a command inside a new virtual allocation")
    alloc.add_argument("-N", "--nodes", default="4",
                       help="node count (vnode1..N) or a hostlist of names (default 4)")
    alloc.add_argument("-t", "--time", help="time limit (seconds, 10m, 1h, HH:MM:SS)")
    alloc.add_argument("--keep", action="store_true",
                       help="keep the allocation directory afterwards (default: removed)")
    alloc.add_argument("--base", help="directory to create the allocation in")
    alloc.add_argument("command", nargs=argparse.REMAINDER,
                       help="command to run (default $SHELL); put it after --")
    for name, text in (("status", "show the nodes of the current allocation"),):
        sub.add_parser(name, help=text)
    down = sub.add_parser("down", help="mark a node down (like scontrol ... state=down)")
    down.add_argument("node")
    down.add_argument("-r", "--reason", default="Marked down by scr local down")
    up = sub.add_parser("up", help="bring a node back (clears down, crashed and faults)")
    up.add_argument("node")
    crash = sub.add_parser("crash", help="kill every task on a node and mark it dead")
    crash.add_argument("node")
    fault = sub.add_parser("fault", help="inject a remote-exec fault on a node")
    fault.add_argument("node")
    fault.add_argument("fault", choices=(*FAULTS, "none"))
    ex = sub.add_parser("exec", help="run a command 'on' a virtual node")
    ex.add_argument("node")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    parser.epilog = ("The allocation is $SCR_LOCAL_DIR (set by 'scr local alloc' and "
                     "'scr run local').\n"
                     "Exit codes: alloc returns the command's exit code (128+N if killed by "
                     "signal N); others 0 ok, 2 usage (unknown node), 5 no current allocation (or "
                     "a stale one: its owner was killed; it is then cleaned up).\n"
                     "Every scr local command first cleans stale allocations in the default "
                     "base: their tasks are stopped and their directories removed.")


def _current() -> LocalAllocation:
    path = os.environ.get(ENV_DIR)
    if not path:
        raise JobEnvironmentError(f"no current local allocation: {ENV_DIR} is not set")
    alloc = LocalAllocation(path)
    if alloc.is_stale():
        sweep_stale(os.path.dirname(alloc.path))
        raise JobEnvironmentError(
            f"local allocation {alloc.job_id} is stale: its owner (pid {alloc.owner_pid}) is "
            "gone; its tasks were stopped and it was removed")
    return alloc


def _strip_dashes(cmd: list[str]) -> list[str]:
    return cmd[1:] if cmd and cmd[0] == "--" else cmd


def run(args: argparse.Namespace) -> int:
    if args.action == "alloc":
        return _alloc(args)  # a new allocation cleans the stale ones in its base first
    alloc = _current()
    sweep_stale(default_base())  # allocations whose owner was killed (SIGKILL) go
    if args.action == "status":
        print(alloc.describe())
    elif args.action == "down":
        alloc.set_down(args.node, args.reason)
    elif args.action == "up":
        alloc.set_up(args.node)
    elif args.action == "crash":
        killed = alloc.crash(args.node)
        print(f"{args.node}: crashed ({killed} task group(s) killed)")
    elif args.action == "fault":
        alloc.set_fault(args.node, None if args.fault == "none" else args.fault)
    elif args.action == "exec":
        cmd = _strip_dashes(args.command)
        if not cmd:
            raise UsageError("scr local exec: no command given")
        if alloc.is_crashed(args.node):
            print(f"scr local exec: {args.node} is not responding", file=sys.stderr)
            return 255
        if alloc.fault(args.node):  # injected faults apply to exec as to remote exec
            return _exec_with_fault(alloc, args.node, cmd)
        storage = alloc.node_storage(args.node)
        env = dict(os.environ, SCR_LOCAL_NODE=args.node, SCR_LOCAL_NODE_DIR=storage,
                   SCR_CNTL_BASE=storage, SCR_CACHE_BASE=storage)
        try:
            return subprocess.call(cmd, env=env)
        except OSError as exc:
            raise UsageError(f"scr local exec: cannot run {cmd[0]}: {exc.strerror}") from exc
    return 0


def _exec_with_fault(alloc: LocalAllocation, node: str, cmd: list[str]) -> int:
    """A node with an injected fault behaves for ``exec`` exactly as for the remote executor
    (fail: exit 255; hang: never returns; garbage: mangled output), through the same code."""
    from ..interfaces import BackendContext
    from ..local.backend import LocalRemoteExecutor

    if alloc.fault(node) == "hang" and not alloc.is_crashed(node):
        # hang here, not in a detached child that would outlive a killed 'exec'
        while True:
            time.sleep(3600)
    rexec = LocalRemoteExecutor(BackendContext(environ=dict(os.environ)))
    result = rexec._run_one(alloc, node, cmd, None)
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr + ("\n" if result.stderr and
                                       not result.stderr.endswith("\n") else ""))
    return 255 if result.rc is None else result.rc


def _alloc(args: argparse.Namespace) -> int:
    names = LocalAllocation.node_names(args.nodes)
    limit = parse_duration(args.time) if args.time else None
    alloc = LocalAllocation.create(names, time_limit=limit, base=args.base, owned=True)
    cmd = _strip_dashes(args.command) or [os.environ.get("SHELL", "/bin/sh")]
    env = dict(os.environ, **{ENV_DIR: alloc.path})
    print(f"scr local: granted allocation {alloc.job_id} ({','.join(names)})", file=sys.stderr)
    try:
        proc = subprocess.Popen(cmd, env=env)
    except OSError as exc:
        raise UsageError(f"scr local alloc: cannot run {cmd[0]}: {exc.strerror}") from exc

    def forward(signum: int, _frame: object) -> None:
        proc.send_signal(signum)

    old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        rc = proc.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for node in alloc.nodes:  # nothing outlives its allocation
            alloc.kill_node_tasks(node, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(alloc.path, ignore_errors=True)
    print(f"scr local: relinquished allocation {alloc.job_id}", file=sys.stderr)
    return 128 - rc if rc < 0 else rc
