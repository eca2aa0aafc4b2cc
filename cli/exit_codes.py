"""The exit status of every ``hashmatch`` command, declared once (scripts branch on these).

========================  ========================================================
``0`` ``OK``              scan and lookup: nothing matched; hash: every file hashed;
                          index build: published; index verify: intact; others: done
``1`` ``FOUND``           scan and lookup: at least one match; index verify: damaged;
                          bank list/log: unreadable log lines (the rest printed)
``2`` ``FAILED``          bad input or options, files that could not be hashed (scan:
                          errors and no match), a build that published nothing, worker
                          processes that kept dying
``130`` ``INTERRUPTED``   Ctrl-C: what was done is written and the summary printed
========================  ========================================================

A scan that matched something exits 1 even if some files failed: a match is what a
script must not miss. These follow ClamAV's, which trust-and-safety scripts already know.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = ["ExitCode"]


class ExitCode(IntEnum):
    OK = 0
    FOUND = 1
    FAILED = 2
    INTERRUPTED = 130
