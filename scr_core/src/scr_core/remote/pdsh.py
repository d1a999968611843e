"""Remote execution through pdsh, with a real exit code per node.

Command line (argv, never a shell string)::

    pdsh -S -R <rcmd> -f <fanout> [-u <timeout>] [-t <connect>] [-l <user>] -w ^<hostfile>
         [wrapper... (exec only)] sh -c <RC_SCRIPT> <marker> <empty-token> ARGV...

Why the ``sh -c`` part: pdsh's ``-S`` only returns the *largest* exit code, and its
``node: line`` output carries no per-node exit code. So each node runs the fixed script
:data:`RC_SCRIPT`, which runs ``"$@"`` (the caller's argv, passed as separate arguments, so
nothing in it is parsed by a shell) and then prints ``<marker> <exit code>`` on a line of its
own. The marker (``$0`` of the script) is random per call, so a command cannot forge it. The
script's text is a constant: no data is ever pasted into it. pdsh's exec module ends the
argument list at an empty argument, so empty arguments travel as ``<empty-token>`` (``$1``,
also random) and the script turns them back into empty strings.

Quoting per transport:

* pdsh expands ``%h``/``%u``/``%n``/``%%`` in the command with every rcmd module, so every
  ``%`` of ours (script and argv) is doubled; only the wrapper's ``%h`` is expanded.
* ``-R exec`` (with a per-node wrapper such as ``srun -N1 -n1 -w %h`` or ``lab on %h``): pdsh
  passes argv through unchanged. Without a wrapper containing ``%h``, pdsh would run the
  command *on this machine* once per node: refused.
* ``-R ssh``/``rsh``: pdsh joins the arguments with spaces and the remote shell parses the
  string, so each argument is quoted with :func:`shlex.quote` and arrives unchanged.

Parsing: stdout and stderr lines are ``node: text``; lines whose prefix is not a requested node
(and pdsh's own ``pdsh@host: ...`` notes) are kept as notes. Per node:

* marker seen: ``rc`` is the command's exit code;
* ``pdsh@host: node: command timeout``: ``timed_out``;
* ``... exited with exit code N`` without a marker: the transport or wrapper failed before
  the command completed on the node (ssh 255, ``lab on`` 1 for a dead node): ``rc=N`` and
  ``unreachable``; ``... killed by signal N``: ``rc=128+N``;
* output but none of the above: ``rc=None`` (garbled; not ok);
* nothing at all: ``rc=None``, ``unreachable``, with pdsh's unattributed notes as stderr.

The host list goes through a file (``-w ^file``): 10,000 names would not fit in one argument.
"""

from __future__ import annotations

import math
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import tempfile
from typing import Any, Sequence

from ..client_commands import tracked_group
from ..errors import RemoteExecError
from ..interfaces import NodeResult, RemoteExecutor, RemoteResult
from ._common import (
    checked_request,
    decode,
    require_per_node_wrapper,
    settings_or_default,
)

#: run "$@", then print "<marker> <rc>" on a line of its own ($0 is the marker). $1 stands
#: for an empty argument, which pdsh's exec module cannot pass (it ends the argument list).
RC_SCRIPT = ('e=$1; shift; for a do shift; if [ "$a" = "$e" ]; then set -- "$@" ""; '
             'else set -- "$@" "$a"; fi; done; '
             '"$@"; rc=$?; printf "\\n%s %d\\n" "$0" "$rc"')

_LINE_RE = re.compile(r"^([A-Za-z0-9._][A-Za-z0-9._-]*): ?(.*)$")
_NOTE_RE = re.compile(r"^pdsh@[^:]*: ([A-Za-z0-9._][A-Za-z0-9._-]*): (.*)$")
_EXIT_RE = re.compile(r"exited with exit code (\d+)$")
_SIGNAL_RE = re.compile(r"killed by signal (\d+)$")


def _escape_percent(arg: str) -> str:
    return arg.replace("%", "%%")


def build_argv(
    settings: Any,
    argv: Sequence[str],
    hostfile: str,
    fanout: int,
    timeout: float | None,
    marker: str,
) -> list[str]:
    """The pdsh command line for ``argv`` (see the module docstring)."""
    rcmd = settings.pdsh_rcmd()
    cmd = [settings.pdsh, "-S", "-R", rcmd, "-f", str(fanout)]
    if timeout is not None:
        cmd += ["-u", str(max(1, math.ceil(timeout)))]
    if rcmd != "exec":
        cmd += ["-t", str(max(1, math.ceil(settings.connect_timeout)))]
        if settings.ssh_user:
            cmd += ["-l", settings.ssh_user]
    cmd += ["-w", f"^{hostfile}"]
    empty = marker + "E"
    remote = ["sh", "-c", RC_SCRIPT, marker, empty, *(a if a else empty for a in argv)]
    # pdsh expands %h/%u/%n/%% in the command of every rcmd module: double our '%'
    if rcmd == "exec":
        wrapper = require_per_node_wrapper(settings.wrapper, "pdsh -R exec")
        cmd += wrapper + [_escape_percent(a) for a in remote]
    else:
        cmd += [_escape_percent(shlex.quote(a)) for a in remote]
    return cmd


def parse_output(
    nodes: Sequence[str], stdout: str, stderr: str, marker: str,
    killed: bool = False,
) -> RemoteResult:
    """Per-node results from pdsh's labelled output (pure function: tested with fixtures)."""
    wanted = set(nodes)
    out: dict[str, list[str]] = {n: [] for n in nodes}
    err: dict[str, list[str]] = {n: [] for n in nodes}
    rc: dict[str, int] = {}
    exit_rc: dict[str, int] = {}
    signaled: dict[str, int] = {}
    timed_out: set[str] = set()
    notes: list[str] = []
    for line in stdout.splitlines():
        m = _LINE_RE.match(line)
        if not m or m.group(1) not in wanted:
            notes.append(line)
            continue
        node, text = m.group(1), m.group(2)
        if node in rc:
            continue  # after our marker line: nothing of the command's (background noise)
        if text.startswith(marker + " "):
            try:
                rc[node] = int(text[len(marker) + 1:].strip())
                continue
            except ValueError:
                pass
        out[node].append(text)
    for line in stderr.splitlines():
        note = _NOTE_RE.match(line)
        if note and note.group(1) in wanted:
            node, text = note.group(1), note.group(2)
            if text.strip() == "command timeout":
                timed_out.add(node)
                continue
            em = _EXIT_RE.search(text)
            if em:
                exit_rc[node] = int(em.group(1))
                continue
            sm = _SIGNAL_RE.search(text)
            if sm:
                signaled[node] = int(sm.group(1))
                continue
            err[node].append(text)
            continue
        m = _LINE_RE.match(line)
        if m and m.group(1) in wanted:
            err[m.group(1)].append(m.group(2))
        elif line.strip():
            notes.append(line)
    note_text = "\n".join(n for n in notes if n.strip())
    result = RemoteResult()
    for n in nodes:
        # the script printed "\n<marker>", so the command's own output is the lines before
        # it joined by newlines (a missing final newline of the command stays missing)
        o = "\n".join(out[n]) if n in rc else ("\n".join(out[n]) + "\n" if out[n] else "")
        e = "\n".join(err[n]) + "\n" if err[n] else ""
        if n in rc:
            result[n] = NodeResult(rc=rc[n], stdout=o, stderr=e)
        elif n in timed_out or (killed and n not in exit_rc and n not in signaled):
            result[n] = NodeResult(rc=None, stdout=o, stderr=e, timed_out=True)
        elif n in exit_rc:
            result[n] = NodeResult(rc=exit_rc[n], stdout=o, stderr=e, unreachable=True)
        elif n in signaled:
            result[n] = NodeResult(rc=128 + signaled[n], stdout=o, stderr=e)
        elif o.strip():
            # output but no exit code: the node answered, garbled (a wrapper that mangles
            # lines, a command that killed our script); not ok, but not "unreachable"
            result[n] = NodeResult(rc=None, stdout=o, stderr=e)
        else:
            why = note_text or f"{n}: no result from pdsh"
            result[n] = NodeResult(rc=None, stdout=o, stderr=e + why + "\n", unreachable=True)
    return result


class PdshRemoteExecutor(RemoteExecutor):
    """``argv`` on every node through pdsh; see the module docstring."""

    name = "pdsh"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_or_default(context)
        if self.settings.pdsh_rcmd() == "exec":
            require_per_node_wrapper(self.settings.wrapper, "pdsh -R exec")

    def run(
        self,
        argv: Sequence[str],
        nodes: Sequence[str],
        fanout: int = 64,
        timeout: float | None = 60.0,
    ) -> RemoteResult:
        argv, nodes, fanout, timeout = checked_request(self.settings, argv, nodes, fanout,
                                                       timeout)
        if not nodes:
            return RemoteResult()
        pdsh = shutil.which(self.settings.pdsh)
        if pdsh is None:
            raise RemoteExecError(f"pdsh remote exec: '{self.settings.pdsh}' not found "
                                  "(install pdsh or set remote.pdsh)")
        marker = f"__SCR_RC_{secrets.token_hex(6)}__"
        env = dict(self.environ)
        env.setdefault("PATH", os.environ.get("PATH", "/usr/bin:/bin"))
        if self.settings.ssh_options:
            env["PDSH_SSH_ARGS_APPEND"] = " ".join(self.settings.ssh_options)
        with tempfile.NamedTemporaryFile("w", prefix="scr-pdsh.", suffix=".hosts") as fh:
            fh.write("\n".join(nodes) + "\n")
            fh.flush()
            cmd = build_argv(self.settings, argv, fh.name, fanout, timeout, marker)
            cmd[0] = pdsh
            # pdsh's own -u bounds each command; this outer bound only catches a stuck pdsh
            waves = math.ceil(len(nodes) / fanout)
            limit = None if timeout is None else \
                waves * (timeout + self.settings.connect_timeout) + 30.0
            try:
                proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=True)
            except OSError as exc:
                raise RemoteExecError(f"cannot run {pdsh}: {exc.strerror}") from exc
            killed = False
            try:
                with tracked_group(proc):  # stopped with its group if we are interrupted
                    out, err = proc.communicate(timeout=limit)
            except subprocess.TimeoutExpired:
                killed = True
                os.killpg(proc.pid, signal.SIGKILL)
                out, err = proc.communicate()
        return parse_output(nodes, decode(out), decode(err), marker, killed=killed)
