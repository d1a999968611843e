"""Console scripts with SCR's names: each is ``scr <subcommand>``."""

from __future__ import annotations

import sys

from .main import run_script


def scr_run() -> None:
    sys.exit(run_script("run"))


def scr_prerun() -> None:
    sys.exit(run_script("prerun"))


def scr_postrun() -> None:
    sys.exit(run_script("postrun"))


def scr_list_down_nodes() -> None:
    sys.exit(run_script("list-down-nodes"))


def scr_should_exit() -> None:
    sys.exit(run_script("should-exit"))


def scr_halt() -> None:
    sys.exit(run_script("halt"))


def scr_ckpt_interval() -> None:
    sys.exit(run_script("ckpt-interval"))


def scr_check_node() -> None:
    sys.exit(run_script("check-node"))


def scr_kill_jobstep() -> None:
    sys.exit(run_script("kill-jobstep"))


def scr_env() -> None:
    sys.exit(run_script("env"))


def scr_list_dir() -> None:
    sys.exit(run_script("list-dir"))


def scr_hostlist() -> None:
    sys.exit(run_script("hostlist"))


def scr_scavenge() -> None:
    sys.exit(run_script("scavenge"))


def scr_index() -> None:
    sys.exit(run_script("index"))


def _launcher_wrapper(prog: str, words: list) -> None:
    from .main import main

    sys.exit(main(["run", *words, *sys.argv[1:]], prog=prog))


def scr_srun() -> None:
    _launcher_wrapper("scr_srun", ["srun"])


def scr_jsrun() -> None:
    _launcher_wrapper("scr_jsrun", ["jsrun"])


def scr_lrun() -> None:
    _launcher_wrapper("scr_lrun", ["lrun"])


def scr_mpirun() -> None:
    _launcher_wrapper("scr_mpirun", ["mpirun"])


def scr_fluxrun() -> None:
    # SCR's scr_fluxrun accepted 'flux [mini] run|submit' forms; the words are the launcher's
    args = sys.argv[1:]
    if args[:1] == ["mini"]:
        args = args[1:]
    if args[:1] not in (["run"], ["submit"]):
        args = ["run", *args]
    from .main import main

    sys.exit(main(["run", "flux", *args], prog="scr_fluxrun"))
