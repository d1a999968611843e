"""The ``flux run`` launcher.

``scr run flux run ARGS`` (or ``flux mini run``, and global options such as ``--parent``
before the subcommand) is carried out as::

    flux submit --requires=-host:HOSTLIST ARGS      # prints the job id
    flux job attach ID                              # live stdout/stderr, stdin, exit code

which is what ``flux run`` does internally (submit, then attach), split in two so that we
learn the job id before the job ends: ``kill`` then uses ``flux cancel ID`` instead of
guessing. ``flux job attach`` exits with the job's exit status (128+N when tasks died of a
signal) and forwards SIGTERM/SIGHUP/SIGUSR1/SIGUSR2 to the job (flux-job(1)).

Down nodes are excluded with a job constraint (RFC 35, flux-run(1) CONSTRAINTS):
``--requires=-host:n[1-2]`` means "not on hosts n1,n2", the form SCR's ``scr_flux_run_loop``
job script uses. Restricting to given nodes uses ``--requires=host:HOSTLIST``. Several
``--requires`` options are joined with AND by flux.
"""

from __future__ import annotations

import subprocess
from typing import Any, Mapping, Sequence

from scr_core.client_commands import describe_failure as failed
from scr_core.client_commands import die_with_parent, stop_process, wait_code
from scr_core.errors import LaunchError, ScrError
from scr_core.hostlist import fold
from scr_core.interfaces import JobStep, Launcher
from scr_core.launchargs import fit_node_count

from . import parse
from .rm import FluxCli, run, settings_of

RUN_WORDS = ("run", "submit")
# flux run/submit options that take a value (flux-run(1)); needed to find the program
FLUX_RUN_VALUE_OPTIONS = ("-n", "--ntasks", "-c", "--cores-per-task", "-g", "--gpus-per-task",
                          "-t", "--time-limit", "-o", "--setopt", "-S", "--setattr",
                          "--requires", "--begin-time", "-q", "--queue", "-B", "--bank",
                          "--urgency", "--job-name", "--cwd", "--input", "--output", "--error",
                          "--label-io", "--env", "--env-remove", "--env-file", "--rlimit",
                          "--dependency", "--taskmap", "--cores", "--tasks-per-node",
                          "--tasks-per-core", "--gpus-per-node", "--add-file", "--conf")
NOT_STEPS = ("alloc", "batch", "bulksubmit", "mini")


def split_flux_args(args: Sequence[str]) -> tuple[list[str], list[str], list[str]]:
    """``[global options..., ("mini",) "run"|"submit", rest...]`` ->
    (global options, subcommand words, rest).

    Without a run/submit word the arguments are taken as ``flux run`` arguments
    (``scr run flux -N2 app`` = ``flux run -N2 app``); other flux subcommands (alloc,
    batch, ...) do not launch a job step and are refused.
    """
    args = list(args)
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 1
    if i < len(args) and args[i] == "mini" and i + 1 < len(args) and args[i + 1] in RUN_WORDS:
        return args[:i], args[i:i + 2], args[i + 2:]
    if i < len(args) and args[i] in RUN_WORDS:
        return args[:i], args[i:i + 1], args[i + 1:]
    if i < len(args) and args[i] in NOT_STEPS:
        raise LaunchError(f"flux launcher: 'flux {args[i]}' does not launch a job step; "
                          "use 'flux run ...'")
    if not args:
        raise LaunchError("flux launcher: nothing to run (expected 'flux run ...')")
    return [], ["run"], args


def constraints(nodes: Sequence[str] | None, exclude: Sequence[str]) -> list[str]:
    out = []
    if nodes:
        out.append("--requires=host:" + fold(list(nodes)))
    if exclude:
        out.append("--requires=-host:" + fold(list(exclude)))
    return out


class FluxRunLauncher(Launcher):
    name = "flux"

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self.settings = settings_of(context)

    def build_argv(
        self, args: Sequence[str], nodes: Sequence[str] | None, exclude: Sequence[str]
    ) -> list[str]:
        """The ``flux run`` command line equivalent to what :meth:`launch` does."""
        glob, sub, rest = split_flux_args(args)
        return [self.settings.flux, *glob, *sub, *constraints(nodes, exclude), *rest]

    def submit_argv(self, args: Sequence[str], nodes: Sequence[str] | None,
                    exclude: Sequence[str]) -> list[str]:
        glob, sub, rest = split_flux_args(args)
        sub = [*sub[:-1], "submit"]
        return [self.settings.flux, *glob, *sub, *constraints(nodes, exclude), *rest]

    def attach_argv(self, args: Sequence[str], dec_id: str) -> list[str]:
        glob, _, _ = split_flux_args(args)
        return [self.settings.flux, *glob, "job", "attach", dec_id]

    def launch(
        self,
        args: Sequence[str],
        nodes: Sequence[str] | None = None,
        exclude: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> JobStep:
        environ = dict(env if env is not None else self.environ)
        submit = self.submit_argv(args, nodes, exclude)
        # flux submit copies our environment into the job, so it runs with the step's env
        cp = run(submit, environ, self.settings.query_timeout, LaunchError)
        if cp.returncode != 0:
            raise LaunchError(f"flux submit failed: {failed(cp)}")
        try:
            jobid = parse.parse_submit(cp.stdout)
        except parse.FluxParseError as exc:
            raise LaunchError(f"flux submit: {exc}") from exc
        attach = self.attach_argv(args, str(jobid))
        try:
            proc = subprocess.Popen(attach, env=environ,
                                    preexec_fn=die_with_parent())  # ends with scr run
        except OSError as exc:
            # the job exists but nobody watches it: do not leave it running
            try:
                FluxCli(self.settings, environ, LaunchError).cancel(str(jobid))
            except ScrError:
                pass
            raise LaunchError(f"cannot start {attach[0]} job attach: {exc}") from exc
        return JobStep(argv=self.build_argv(args, nodes, exclude), process=proc,
                       nodes=list(nodes) if nodes else None, exclude=list(exclude),
                       step_id=parse.format_jobid(jobid, self.settings.jobid_format),
                       data={"jobid": jobid, "submit_argv": submit, "attach_argv": attach,
                             "env": environ})

    def wait(self, step: JobStep, timeout: float | None = None) -> int | None:
        if step.returncode is not None:
            return step.returncode
        if step.process is None:
            raise LaunchError("flux: step has no attach process to wait for")
        rc = wait_code(step.process, timeout)
        if rc is not None:
            step.returncode = rc
        return rc

    def kill(self, step: JobStep) -> None:
        if step.process is None or step.process.poll() is not None:
            self.wait(step, 0)
            return
        jobid = step.data.get("jobid")
        if jobid is not None:
            try:
                FluxCli(self.settings, step.data.get("env", self.environ),
                        LaunchError).cancel(str(jobid))
            except ScrError:
                pass  # fall back to signals: attach forwards SIGTERM to the job
            else:
                if wait_code(step.process, self.settings.kill_grace) is not None:
                    self.wait(step, 0)
                    return
        stop_process(step.process, self.settings.kill_grace)
        self.wait(step, None)

    def kill_step_id(self, step_id: str) -> None:
        try:
            dec = str(parse.parse_jobid(step_id))
        except parse.FluxParseError as exc:
            raise LaunchError(str(exc)) from exc
        FluxCli(self.settings, self.environ, LaunchError).cancel(dec)

    def fit_to_nodes(self, args: Sequence[str], available: int) -> list[str]:
        """``flux run -N4`` with 3 nodes left becomes ``-N3`` (the constraint then fits)."""
        gopts, words, rest = split_flux_args(args)
        rest, _old = fit_node_count(rest, available, takes_value=FLUX_RUN_VALUE_OPTIONS)
        return [*gopts, *words, *rest]

    def one_node_argv(self, node: str, argv: Sequence[str]) -> list[str]:
        return [self.settings.flux, "run", "-N1", "-n1", "--requires=host:" + node, *argv]
