"""The ``mpirun`` and ``mpiexec`` launchers: Open MPI, and MPICH / Intel MPI hydra.

``scr run mpirun ARGS`` starts ``mpirun [HOSTS] [-x SCR_...] ARGS`` (``mpiexec`` the same,
with settings ``mpi.mpiexec``). Which MPI the command belongs to is asked once per command
and process (``<command> --version``: "Open MPI"/"OpenRTE" or "HYDRA"/"Intel(R) MPI"; or
settings ``mpi.flavor``), because their options differ:

==========================  ==============================  ============================
                            Open MPI (4.x, 5.x)             hydra (MPICH, Intel MPI)
==========================  ==============================  ============================
run on these hosts          ``--host n1:S,n3:S``            ``-hosts n1:S,n3:S``
rank count                  ``-np``/``-n``/``-c`` N          ``-n``/``-np`` N
ranks per node              ``--map-by ppr:P:node``,         ``-ppn``/``-perhost`` P
                            ``-N``/``--npernode`` P
environment of the ranks    as mpirun's under srun; ``-x``   hydra's default (-genvall)
                            for every ``SCR_*`` (ssh)
==========================  ==============================  ============================

Where the ranks run
    With no excluded node, nothing is added: the MPI reads the allocation itself (Open
    MPI's ras/plm slurm, lsf..., hydra's RMK) exactly as without scr. With excluded nodes,
    the allocation's nodes (:meth:`JobEnv.node_list`: ``SCR_NODELIST`` or the resource
    manager's) minus the excluded ones are given as a host list with ``S`` slots each (in a
    hostfile, in a private directory removed when the step ends, if the list is longer than
    64 KiB, half of what one argv word may hold): the
    ranks per node the arguments ask for (ppr/-ppn/-N), else ``ceil(ranks / allocation
    nodes)``, else 1. Inside a ``local`` allocation (virtual nodes of this machine) every
    rank runs here: the host list is ``localhost`` with ``S`` slots per usable virtual node.
    A host list that the user gave (``--host``, ``--hostfile``, ``-f``...) is kept when no
    node is excluded, and refused when one is (scr cannot tell what it should become).

After an exclusion (:meth:`fit_to_nodes`) the rank count is lowered to what the nodes left
hold at the same ranks per node: ``-np 8`` in 4 nodes is 2 per node, ``-np 6`` on 3.

Killing
    SIGTERM to mpirun/mpiexec, which stop every rank and daemon (Open MPI's orted/prted,
    hydra_pmi_proxy) themselves, through srun or ssh; after ``mpi.kill_grace`` seconds
    SIGKILL to it and to every process it had started on this machine (the daemon launcher
    srun/ssh, local ranks), found through ``/proc`` before the signals. Remote daemons
    whose launcher died exit when they lose their connection to mpirun (both MPIs do).
    An mpirun left without any child process (no local rank, no srun/ssh) for
    ``mpi.orphan_timeout`` seconds after it had some is stopped the same way: Open MPI 4.1
    hung in its abort after 5 of 19 node crashes on the lab.

Inside Slurm both MPIs start their daemons with srun (Open MPI's plm_slurm, hydra's
``-launcher slurm``). When a run excludes nodes there, mpirun gets ``SLURM_OVERLAP=1`` (unless
set): the previous run's daemon step stays RUNNING in slurmctld while a node of it is dead,
holding CPUs on the surviving nodes, and the next run's srun would wait for them.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Mapping, Sequence

from ..client_commands import die_with_parent, run_client, signal_process, wait_code
from ..errors import LaunchError, ScrError
from ..hostlist import validate_node_name
from ..interfaces import BackendContext, JobStep, Launcher

OPENMPI = "openmpi"
HYDRA = "hydra"

# Options taking values, to find where the program starts (mpirun(1) of Open MPI 4.1,
# mpiexec -h of MPICH 4.0 hydra). The number is how many words follow the option.
_OPENMPI_VALUED = {
    **dict.fromkeys((
        "-np", "--np", "-n", "--n", "-c", "-N", "-npernode", "--npernode", "-npersocket",
        "--npersocket", "--map-by", "-map-by", "--rank-by", "-rank-by", "--bind-to",
        "-bind-to", "-H", "-host", "--host", "-hostfile", "--hostfile", "-machinefile",
        "--machinefile", "-default-hostfile", "--default-hostfile", "-x", "-wdir", "--wdir",
        "-wd", "--wd", "-path", "--path", "--prefix", "-s", "--preload-files", "--am", "-am",
        "--app", "-app", "--tune", "-tune", "--timeout", "-timeout", "--output-filename",
        "-output-filename", "--cpus-per-proc", "--cpus-per-rank", "--cpu-list", "--cpu-set",
        "-rf", "--rankfile", "--launch-agent", "-launch-agent", "--ompi-server",
        "-ompi-server", "--report-uri", "--report-pid", "--personality", "--stdin", "-stdin",
        "--xterm", "--output", "--slot-list"), 1),
    **dict.fromkeys(("-mca", "--mca", "-gmca", "--gmca", "--prtemca", "--pmixmca"), 2),
}
_HYDRA_VALUED = {
    **dict.fromkeys((
        "-n", "-np", "-f", "-hostfile", "-machinefile", "-host", "-hosts", "-ppn", "-perhost",
        "-genvlist", "-envlist", "-wdir", "-dir", "-configfile", "-launcher", "-launcher-exec",
        "-rmk", "-bind-to", "-binding", "-map-by", "-iface", "-nameserver", "-errfile-pattern",
        "-outfile-pattern", "-prepend-pattern", "-gpus-per-proc", "-demux", "-ckpointlib",
        "-ckpoint-prefix", "-ckpoint-num", "-ckpoint-interval", "-tmpdir", "-localhost",
        "-usize"), 1),
    **dict.fromkeys(("-genv", "-env"), 2),
}

_RANKS = {OPENMPI: ("-np", "--np", "-n", "--n", "-c"), HYDRA: ("-n", "-np")}
_PER_NODE = {OPENMPI: ("-N", "-npernode", "--npernode"), HYDRA: ("-ppn", "-perhost")}
_USER_HOSTS = {
    OPENMPI: ("-H", "-host", "--host", "-hostfile", "--hostfile", "-machinefile",
              "--machinefile", "-default-hostfile", "--default-hostfile", "-rf", "--rankfile"),
    HYDRA: ("-f", "-hostfile", "-machinefile", "-host", "-hosts", "-configfile"),
}
_PPR_RE = re.compile(r"^ppr:(\d+):node\b")

# one argv word may hold 128 KiB on Linux (MAX_ARG_STRLEN); longer host lists go to a file
HOST_LIST_MAX = 64 * 1024
_SNAPSHOT_SECONDS = 0.5  # how often wait() looks for mpirun's children
_flavors: dict = {}  # (resolved command, mtime) -> flavor: `--version` asked once per process


def detect_flavor(command: str, environ: Mapping[str, str], timeout: float) -> str:
    """``"openmpi"`` or ``"hydra"`` from ``command --version`` (cached per process)."""
    path = shutil.which(command, path=environ.get("PATH", os.defpath))
    if path is None:
        raise LaunchError(f"{command}: command not found (is an MPI in PATH? settings "
                          "mpi.mpirun / mpi.mpiexec name the command)")
    real = os.path.realpath(path)
    try:
        key = (real, os.stat(real).st_mtime_ns)
    except OSError as exc:
        raise LaunchError(f"{command}: cannot stat {real}: {exc.strerror}") from exc
    if key not in _flavors:
        cp = run_client([path, "--version"], environ, timeout, LaunchError)
        text = f"{cp.stdout}\n{cp.stderr}"
        if "Open MPI" in text or "OpenRTE" in text or "PRRTE" in text:
            _flavors[key] = OPENMPI
        elif "HYDRA" in text or "Intel(R) MPI" in text:
            _flavors[key] = HYDRA
        else:
            first = text.strip().splitlines()[:1]
            raise LaunchError(f"{command} --version names neither Open MPI nor MPICH/Intel "
                              f"MPI hydra ({first[0] if first else 'no output'}); set "
                              "settings mpi.flavor (SCR_MPI_FLAVOR) to openmpi or hydra")
    return _flavors[key]


def split_mpi_args(args: Sequence[str], flavor: str) -> tuple[list[str], list[str]]:
    """``(launcher options, program and its arguments)``. The program starts at ``--`` (kept
    in front of it) or at the first word that is neither an option nor an option's value."""
    valued = _OPENMPI_VALUED if flavor == OPENMPI else _HYDRA_VALUED
    args = list(args)
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--" or not a.startswith("-") or a == "-":
            return args[:i], args[i:]
        i += 1 + (0 if "=" in a else valued.get(a, 0))
    return args, []


def _values(options: Sequence[str], names: Sequence[str], flavor: str) -> list[tuple[int, str]]:
    """``(index of the value word, value)`` of every ``NAME VALUE`` / ``--name=VALUE``."""
    valued = _OPENMPI_VALUED if flavor == OPENMPI else _HYDRA_VALUED
    found = []
    i = 0
    while i < len(options):
        a = options[i]
        name, eq, value = a.partition("=")
        if eq and name in names:
            found.append((i, value))
        elif a in names and i + 1 < len(options):
            found.append((i + 1, options[i + 1]))
        i += 1 + (0 if eq else valued.get(a, 0))
    return found


def _count(options: Sequence[str], names: Sequence[str], flavor: str) -> int | None:
    vals = [v for _, v in _values(options, names, flavor) if v.isdigit() and int(v) > 0]
    return int(vals[-1]) if vals else None


def ranks_per_node(options: Sequence[str], flavor: str) -> int | None:
    """P of ``--map-by ppr:P:node`` (Open MPI), ``-N``/``--npernode`` P, ``-ppn`` P."""
    per_node = _count(options, _PER_NODE[flavor], flavor)
    if flavor == OPENMPI:
        for _, value in _values(options, ("--map-by", "-map-by"), flavor):
            m = _PPR_RE.match(value)
            if m and int(m.group(1)) > 0:
                per_node = int(m.group(1))
    return per_node


class _MpiLauncher(Launcher):
    """mpirun and mpiexec differ only in the command they start."""

    command_setting = "mpirun"

    def __init__(self, context: BackendContext) -> None:
        super().__init__(context)
        settings = context.settings
        if settings is None:
            from .settings import MpiSettings

            settings = MpiSettings()
        self.settings = settings

    @property
    def command(self) -> str:
        return getattr(self.settings, self.command_setting)

    def flavor(self, environ: Mapping[str, str] | None = None) -> str:
        if self.settings.flavor != "auto":
            return self.settings.flavor
        return detect_flavor(self.command, environ if environ is not None else self.environ,
                             self.settings.version_timeout)

    # -- nodes --------------------------------------------------------------------------------
    def _job(self, environ: Mapping[str, str]) -> Any:
        from ..engine.jobenv import JobEnv

        return JobEnv(prefix=self.context.prefix, environ=environ)

    def _allocation(self, environ: Mapping[str, str]) -> list[str]:
        try:
            nodes = self._job(environ).node_list()
        except ScrError as exc:
            raise LaunchError(f"{self.name}: cannot list the allocation's nodes to exclude "
                              f"some: {exc}") from exc
        if not nodes:
            raise LaunchError(f"{self.name}: no allocation to exclude nodes from")
        return nodes

    @staticmethod
    def _local(environ: Mapping[str, str]) -> bool:
        from ..local.plugin import detect

        return detect(environ)

    def _slots(self, options: Sequence[str], flavor: str, total: int) -> int:
        per_node = ranks_per_node(options, flavor)
        if per_node:
            return per_node
        ranks = _count(options, _RANKS[flavor], flavor)
        return max(1, math.ceil(ranks / total)) if ranks else 1

    def hosts(self, options: Sequence[str], flavor: str, nodes: Sequence[str] | None,
              exclude: Sequence[str], environ: Mapping[str, str]) -> list[str] | None:
        """The host list (``name:slots``) to run on, or None to leave it to the MPI."""
        local = self._local(environ)
        if not nodes and not exclude and not local:
            return None
        if _values(options, _USER_HOSTS[flavor], flavor) and (exclude or nodes):
            raise LaunchError(f"{self.name}: cannot exclude nodes from a host list or host "
                              "file given on the command line; leave the hosts to the "
                              "allocation (scr excludes failed nodes itself)")
        if local and _values(options, _USER_HOSTS[flavor], flavor):
            return None
        allocation = self._allocation(environ)
        if nodes:
            unknown = [n for n in nodes if n not in allocation]
            if unknown:
                raise LaunchError(f"{self.name}: not nodes of this allocation: "
                                  f"{','.join(unknown)}")
            candidates = list(nodes)
        else:
            candidates = allocation
        usable = [n for n in candidates if n not in set(exclude)]
        for n in usable:
            validate_node_name(n)  # a ',' or ':' in a name would change the host list
        if not usable:
            raise LaunchError(f"{self.name}: no usable nodes left in the allocation")
        slots = self._slots(options, flavor, len(allocation))
        if local:
            # virtual nodes are this machine: every rank runs here, as many as they hold
            return [f"localhost:{slots * len(usable)}"]
        return [f"{n}:{slots}" for n in usable]

    # -- Launcher -----------------------------------------------------------------------------
    def _argv(self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str],
              environ: Mapping[str, str], hostfile_dir: list | None = None) -> list[str]:
        """The command line; a host list too long for one argv word is written to a
        hostfile in a new private directory, appended to ``hostfile_dir`` (launch only)."""
        flavor = self.flavor(environ)
        options, program = split_mpi_args(args, flavor)
        if not program or program == ["--"]:
            raise LaunchError(f"{self.name}: no program to run after the {self.name} options")
        hosts = self.hosts(options, flavor, nodes, exclude, environ)
        argv = [self.command]
        if hosts is not None and hostfile_dir is not None and \
                sum(len(h) + 1 for h in hosts) > HOST_LIST_MAX:
            directory = tempfile.mkdtemp(prefix="scr-mpi-")  # mode 0700
            hostfile_dir.append(directory)
            argv += ["--hostfile" if flavor == OPENMPI else "-f",
                     _write_hostfile(directory, hosts, flavor)]
        elif hosts is not None:
            argv += ["--host" if flavor == OPENMPI else "-hosts", ",".join(hosts)]
        if flavor == OPENMPI:
            # ranks started over ssh get only -x variables (srun passes everything anyway)
            for name in sorted(k for k in environ if k.startswith("SCR_")):
                argv += ["-x", name]
        return argv + options + program

    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        return self._argv(args, nodes, exclude, self.environ)

    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        environ = dict(env if env is not None else self.environ)
        hostfile_dir: list = []
        argv = self._argv(args, nodes, exclude, environ, hostfile_dir)
        if exclude and environ.get("SLURM_JOB_ID"):
            # The step of the previous run's daemons stays RUNNING in slurmctld when one of
            # its nodes died (mpirun killed its srun; the dead node never confirms the end),
            # holding CPUs on the survivors: without --overlap the new daemons' srun would
            # wait for them for as long as the node stays dead.
            environ.setdefault("SLURM_OVERLAP", "1")
        try:
            # stdin/stdout/stderr inherited (live output); our process group, so a terminal's
            # Ctrl-C reaches mpirun, which forwards it to the ranks; SIGTERM from the kernel
            # if scr run dies, even by SIGKILL (mpirun then ends the ranks too)
            proc = subprocess.Popen(argv, env=environ, preexec_fn=die_with_parent())
        except OSError as exc:
            for directory in hostfile_dir:
                shutil.rmtree(directory, ignore_errors=True)
            raise LaunchError(f"{self.name}: cannot start {argv[0]}: {exc.strerror}") from exc
        return JobStep(argv=argv, process=proc, nodes=list(nodes) if nodes else None,
                       exclude=list(exclude), data={"hostfile_dir": hostfile_dir})

    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        if step.returncode is not None:
            return step.returncode
        proc = step.process
        if proc is None:
            raise LaunchError(f"{self.name}: step has no process to wait for")
        seen = step.data.setdefault("children", set())
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # who mpirun started here (srun/ssh of its daemons, local ranks), looked at on
            # every call: after it exits, its orphans can no longer be told from others
            now = _descendants(proc.pid)
            seen |= now
            if now:
                step.data.pop("childless_since", None)
            elif seen and self._hung(step):
                self.kill(step)
                return step.returncode
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            rc = wait_code(proc, _SNAPSHOT_SECONDS if left is None else
                           min(left, _SNAPSHOT_SECONDS))
            if rc is not None:
                break
            if left is not None and left <= _SNAPSHOT_SECONDS:
                return None
        _reap_leftovers(seen)
        for directory in step.data.get("hostfile_dir", ()):
            shutil.rmtree(directory, ignore_errors=True)
        step.returncode = rc
        return rc

    def _hung(self, step: JobStep) -> bool:
        """mpirun had children and has none now: is that so for ``mpi.orphan_timeout`` s?
        No rank or daemon can be left under it then, and it is stuck in its abort (Open
        MPI 4.1 after a node crash, "ORTE has lost communication with a remote daemon":
        5 of 19 crashes on the lab)."""
        timeout = self.settings.orphan_timeout
        if not timeout or step.data.get("stopping"):
            return False
        since = step.data.setdefault("childless_since", time.monotonic())
        if time.monotonic() - since < timeout:
            return False
        if step.process is not None and step.process.poll() is not None:
            return False  # it has just ended by itself
        print(f"scr: {self.name}: no rank or daemon left under it for {timeout:g} s; "
              "stopping it", file=sys.stderr, flush=True)
        return True

    def kill(self, step: JobStep) -> None:
        proc = step.process
        if proc is None or proc.poll() is not None:
            self.wait(step, 0)
            return
        step.data["stopping"] = True
        step.data.setdefault("children", set()).update(_descendants(proc.pid))
        signal_process(proc, signal.SIGTERM)
        if self.wait(step, self.settings.kill_grace) is None:
            step.data["children"] |= _descendants(proc.pid)
            signal_process(proc, signal.SIGKILL)
        self.wait(step, None)

    def fit_to_nodes(self, args: Sequence[str], available: int) -> list[str]:
        """Lower the rank count to what ``available`` nodes hold at the same ranks per node
        (``-np 8`` in 4 nodes -> ``-np 6`` on 3); ppr/-ppn stay as they are."""
        flavor = self.flavor()
        options, program = split_mpi_args(args, flavor)
        found = [(i, v) for i, v in _values(options, _RANKS[flavor], flavor) if v.isdigit()]
        if not found or available < 1:
            return list(args)
        index, value = found[-1]
        ranks = int(value)
        per_node = ranks_per_node(options, flavor)
        if per_node is None:
            total = len(self._allocation(self.environ))
            per_node = max(1, math.ceil(ranks / max(total, 1)))
        fitted = min(ranks, per_node * available)
        if fitted == ranks:
            return list(args)
        word = options[index]
        options = list(options)
        options[index] = word[:len(word) - len(value)] + str(fitted) if "=" in word \
            else str(fitted)
        return options + program


def _write_hostfile(directory: str, hosts: Sequence[str], flavor: str) -> str:
    """``directory/hosts`` with one ``name slots=S`` (Open MPI) or ``name:S`` (hydra, which
    refuses ``slots=``) line per host, written whole before it gets its name."""
    path = os.path.join(directory, "hosts")
    lines = [h.replace(":", " slots=") if flavor == OPENMPI else h for h in hosts]
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".hosts-")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise LaunchError(f"cannot write the hostfile {path}: {exc.strerror}") from exc
    return path


def _stat(pid: int) -> tuple[int, int] | None:
    """``(ppid, start time)`` of ``pid`` from /proc, or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] in (b"Z", b"X"):
        return None
    return int(fields[1]), int(fields[19])


def _descendants(*pids: int) -> set:
    """``{(pid, start time)}`` of every living descendant of ``pids`` on this machine."""
    children: dict = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return set()
    for entry in entries:
        if entry.isdigit():
            st = _stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append((int(entry), st[1]))
    found: set = set()
    todo = list(pids)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def _alive(proc: tuple) -> bool:
    """Is the process ``(pid, start time)`` still the one we saw (not a reused pid)?"""
    st = _stat(proc[0])
    return st is not None and st[1] == proc[1]


def _reap_leftovers(procs: set, grace: float = 1.0) -> None:
    """SIGTERM what is left of ``procs`` (srun cancels its step on it), SIGKILL after
    ``grace`` seconds. A run whose node died leaves the srun of its daemons behind: it waits
    for the dead node, which never answers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if _alive(p)]
        if not alive:
            return
        # and what they started since they were seen (a proxy's ranks)
        new = _descendants(*(pid for pid, _ in alive)) - set(procs)
        procs = set(procs) | new
        alive += list(new)
        for pid, _start in alive:
            try:
                os.kill(pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
        deadline = time.monotonic() + grace
        while any(_alive(p) for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


class MpirunLauncher(_MpiLauncher):
    """``scr run mpirun ...`` / ``scr_mpirun ...``."""

    name = "mpirun"
    command_setting = "mpirun"


class MpiexecLauncher(_MpiLauncher):
    """``scr run mpiexec ...``."""

    name = "mpiexec"
    command_setting = "mpiexec"
