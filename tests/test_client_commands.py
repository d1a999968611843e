"""scr_core.client_commands: what LSF/Flux plugins (and third parties) run clients with."""

import subprocess
import sys

import pytest
from scr_core.client_commands import describe_failure, run_client, stop_process, wait_code
from scr_core.errors import ResourceManagerError


def test_output_and_nonzero_exit_are_returned_not_raised():
    cp = run_client([sys.executable, "-c", "import sys; print('partial'); "
                     "sys.exit('Job <1> is not found')"], {}, 30, ResourceManagerError)
    assert cp.returncode == 1 and cp.stdout == "partial\n"
    assert describe_failure(cp) == "exit 1: Job <1> is not found"


def test_stdin_text_reaches_the_command():
    cp = run_client(["cat"], {"PATH": "/usr/bin:/bin"}, 30, ResourceManagerError,
                    stdin_text="script body\n")
    assert cp.stdout == "script body\n"


def test_missing_command_and_timeout_raise_the_plugins_error_with_a_hint():
    with pytest.raises(ResourceManagerError, match=r"no-such-bjobs: command not found "
                       r"\(is LSF in PATH\?\)"):
        run_client(["no-such-bjobs"], {"PATH": "/nonexistent"}, 30, ResourceManagerError,
                   not_found_hint="is LSF in PATH?")
    with pytest.raises(ResourceManagerError, match=r"no answer within 0\.5 s"):
        run_client(["sleep", "30"], {"PATH": "/usr/bin:/bin"}, 0.5, ResourceManagerError)


def test_stop_process_escalates_to_sigkill_for_a_launcher_ignoring_sigterm():
    proc = subprocess.Popen([sys.executable, "-c",
                             "import signal, sys, time; signal.signal(signal.SIGTERM, "
                             "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    assert wait_code(proc, 0.1) is None
    stop_process(proc, grace=0.3)
    assert proc.returncode == -9
    proc.stdout.close()
