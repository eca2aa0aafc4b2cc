"""Live banks: hash lists hashmatch itself writes, matchable the moment they change.

A bank directory holds one append-only, checksummed log per bank (:mod:`.log`,
:mod:`.records`); :class:`BankWriter` appends (one writer per directory), any number of
:class:`BankDirectory` readers fold the logs into states (:mod:`.state`). A
:class:`BankFollower` keeps the overlay (:mod:`.overlay`) that a :class:`~hashmatch.Matcher`
searches alongside its published version, and :func:`bank_sources` makes the banks list sources
of a build, which folds them into the next version.
"""

from hashmatch.banks.directory import (
    BankDirectory,
    BankWriter,
    NewContent,
    default_bank_directory,
)
from hashmatch.banks.follower import BankFollower, live_banks
from hashmatch.banks.state import BankEntry, BankState

__all__ = [
    "BankDirectory",
    "BankEntry",
    "BankFollower",
    "BankState",
    "BankWriter",
    "NewContent",
    "default_bank_directory",
    "live_banks",
]
