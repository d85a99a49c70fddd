"""Defence in depth for the service process itself, whatever sandbox backend runs the tests.

A non-dumpable process cannot be ptraced by, nor have its ``/proc/<pid>/environ``, ``mem`` or
``fd`` read by, other processes of the same uid: with ``MGX_SANDBOX=unsafe-subprocess`` the
generated tests run as the service's uid, and the service's environment holds its secrets.
"""

from __future__ import annotations

import ctypes
import logging
import sys

logger = logging.getLogger("backend")

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def make_process_undumpable() -> bool:
    """Mark this process non-dumpable (Linux); True when it is."""
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        logger.warning("could not mark the process non-dumpable (errno %d)", ctypes.get_errno())
        return False
    return libc.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0) == 0
