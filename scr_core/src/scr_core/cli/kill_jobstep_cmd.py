"""``scr kill-jobstep`` / ``scr_kill_jobstep``: kill a job step by the RM's step id."""

from __future__ import annotations

import argparse

from ..engine.jobenv import JobEnv


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-b", "--bindir", help="accepted for SCR compatibility; unused")
    parser.add_argument("-l", "--launcher", required=True, help="launcher word (srun, jsrun...)")
    parser.add_argument("-j", "--jobStepId", dest="step_id", required=True,
                        help="the step id (e.g. 1234.0 for Slurm)")
    parser.epilog = ("Exit codes: 0 the kill was sent, 1 it failed, 4 no plugin handles the "
                     "launcher, 7 the launcher cannot kill by step id.")


def run(args: argparse.Namespace) -> int:
    JobEnv().launcher(args.launcher).kill_step_id(args.step_id)
    return 0
