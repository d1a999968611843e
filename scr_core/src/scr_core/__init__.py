"""scr: the job-management layer of Scalable Checkpoint/Restart, as a plugin framework.

Plugin authors start with :mod:`scr_core.hookspecs` (the contract).
"""

__version__ = "0.1.0"
