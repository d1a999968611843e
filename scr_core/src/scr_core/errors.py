"""One exception family for the whole project, and the exit codes the CLI maps it to.

Every command documents the codes it can return; the common ones are:

====  ===================================================================
 0    success
 1    the operation ran and failed (a job step failed, a check said no)
 2    usage: bad arguments or malformed input on the command line
 3    configuration: a bad line in a config file, or an invalid setting
 4    plugins: unknown, duplicate, failed to load, or ambiguous selection
 5    environment: not in an allocation, or the resource manager failed
 6    data: a control file (KVTree) is corrupt or has the wrong layout
 7    not supported by the selected backend
 8    internal error: an unexpected exception in scr or in a plugin (a bug);
      one line names the plugin module or input at fault, ``SCR_DEBUG=2``
      adds the traceback
====  ===================================================================

``scr should-exit`` never returns 1 ("keep running") on an error and ``scr run`` never
returns 1 ("the application failed") on one: every error has one of the codes 2-8.

Plugins raise these with a message about their local context, chaining the
cause: ``raise ResourceManagerError("sinfo failed: ...") from exc``.

Transient errors: an error whose ``transient`` attribute is true may succeed when tried
again (a resource-manager client that timed out or could not reach its controller). The
core retries resource-manager *queries* that raise one, with a bounded backoff
(``SCR_RM_RETRIES``, ``SCR_RM_RETRY_SECONDS``; :mod:`scr_core.rm_retry`), so plugins never
retry themselves. A :class:`ResourceManagerError` is transient unless raised with
``transient=False`` (do that when trying again cannot help: the client is not installed,
its output cannot be parsed); every other error is not, unless raised with
``transient=True``.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PLUGIN = 4
EXIT_ENVIRONMENT = 5
EXIT_DATA = 6
EXIT_NOT_SUPPORTED = 7
EXIT_INTERNAL = 8

#: the common codes and their one-line meaning (help texts and README are checked against it)
COMMON_EXIT_CODES = {
    EXIT_USAGE: "usage",
    EXIT_CONFIG: "configuration",
    EXIT_PLUGIN: "plugins",
    EXIT_ENVIRONMENT: "environment",
    EXIT_DATA: "corrupt control file",
    EXIT_NOT_SUPPORTED: "not supported",
    EXIT_INTERNAL: "internal error",
}


class ScrError(Exception):
    """Base of every error scr reports to a user; ``exit_code`` is what the CLI returns.

    ``transient`` (class default, or ``transient=`` when raising): trying again may succeed.
    """

    exit_code = EXIT_FAILURE
    transient = False

    def __init__(self, *args: object, transient: bool | None = None) -> None:
        super().__init__(*args)
        if transient is not None:
            self.transient = transient


class UsageError(ScrError):
    """Bad arguments or malformed input (a hostlist, a size, a time)."""

    exit_code = EXIT_USAGE


class ConfigError(ScrError):
    """A configuration file or setting is invalid; the message names file and line."""

    exit_code = EXIT_CONFIG


class PluginError(ScrError):
    """A plugin is unknown, duplicated, failed to load, or selection is ambiguous."""

    exit_code = EXIT_PLUGIN




class JobEnvironmentError(ScrError):
    """Not inside an allocation, or the allocation cannot be described."""

    exit_code = EXIT_ENVIRONMENT


class ResourceManagerError(JobEnvironmentError):
    """A resource-manager query or command failed (transient unless said otherwise)."""

    transient = True


class LaunchError(ScrError):
    """A job step could not be launched, waited on or killed."""

    exit_code = EXIT_FAILURE


class RemoteExecError(ScrError):
    """Remote execution could not be started at all (per-node failures are results)."""

    exit_code = EXIT_FAILURE


class ControlFileError(ScrError):
    """A KVTree control file is corrupt, truncated, or not laid out as SCR writes it."""

    exit_code = EXIT_DATA


class NotSupportedError(ScrError):
    """The selected backend does not implement an optional operation."""

    exit_code = EXIT_NOT_SUPPORTED
