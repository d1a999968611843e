"""``scr hostlist`` (also installed as ``scr_hostlist``): expand, fold and combine hostlists.

Options are those of SCR's ``scr_hostlist.py``. Differences: ``--nth 0`` is
an error (SCR silently printed the folded list instead), malformed hostlists
are reported in one line with exit code 2 instead of a traceback, and the
folded output keeps zero padding (SCR dropped it: ``n[08-10]`` became
``n[8-10]``, naming other nodes). The folded output (the default, also with
``--minus``/``--intersection``) is computed on ranges, without expanding the
hostlists (``hostlist.fold_difference`` and friends); plain ``--expand``
writes the names' text without a string object per name
(``hostlist.expand_joined``).
"""

from __future__ import annotations

import argparse
import re

from scr_core import hostlist
from scr_core.errors import UsageError

DESCRIPTION = """\
Expand, fold, count or combine hostlists such as 'n[1-4,7],m[01-02]'.
By default prints the names of all HOSTS folded into one hostlist.
Names keep the order written: --size and --nth count in that order."""

EPILOG = """\
examples:
  scr hostlist 'n[1-3]' n5            -> n[1-3,5]
  scr hostlist -e -d '\\n' 'n[1-3]'     -> one name per line
  scr hostlist -m 'n[1-8]' 'n[2,4]'   -> n[1,3,5-8]
  scr hostlist -n -1 'n[1-8]'         -> n8

exit codes:
  0  success
  2  usage: bad option, or a malformed hostlist (unbalanced brackets, a
     decreasing range such as n[3-1], an empty item, an @group, a name with
     characters other than A-Z a-z 0-9 . _ -), or --nth out of range"""

_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\"}


def configure_parser(parser: argparse.ArgumentParser) -> None:
    """Add ``scr hostlist``'s arguments, description and epilog to ``parser``."""
    parser.description = DESCRIPTION
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "hosts", metavar="HOSTS", nargs="+", help="one or more hostlists, e.g. 'n[1-4,7]'"
    )
    parser.add_argument(
        "-d",
        "--delimiter",
        metavar="C",
        default=",",
        help="separator for --expand (default ','); '\\n' and '\\t' are understood",
    )
    parser.add_argument(
        "-s",
        "--size",
        metavar="N",
        type=int,
        default=None,
        help="keep only the first N names (-N: the last N)",
    )
    combine = parser.add_mutually_exclusive_group()
    combine.add_argument(
        "-m",
        "--minus",
        action="store_true",
        help="remove the names of the other HOSTS from the first HOSTS",
    )
    combine.add_argument(
        "-i",
        "--intersection",
        action="store_true",
        help="keep the names of the first HOSTS that are in every other HOSTS",
    )
    output = parser.add_mutually_exclusive_group()
    output.add_argument(
        "-e", "--expand", action="store_true", help="print the names instead of folding them"
    )
    output.add_argument("-c", "--count", action="store_true", help="print the number of names")
    output.add_argument(
        "-n",
        "--nth",
        metavar="N",
        type=int,
        default=None,
        help="print the N-th name, 1-based (-N counts from the end)",
    )


def _delimiter(text: str) -> str:
    # The shell passes '\n' as backslash + n; SCR understood \n and \t.
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(0)), text)


def _select(args: argparse.Namespace) -> list[str]:
    """The names the options describe, in the order written."""
    lists = args.hosts
    if args.minus or args.intersection:
        names = hostlist.expand(lists[0])
        op = hostlist.difference if args.minus else hostlist.intersection
        for other in lists[1:]:
            names = op(names, hostlist.expand(other))
    else:
        names = []
        for text in lists:
            names.extend(hostlist.expand(text))
    if args.size is not None:
        names = names[: args.size] if args.size >= 0 else names[args.size :]
    return names


def _folded(args: argparse.Namespace) -> str:
    """The default output, computed on ranges: no hostlist is expanded to names."""
    lists = args.hosts
    if args.minus or args.intersection:
        op = hostlist.fold_difference if args.minus else hostlist.fold_intersection
        return op(*lists)
    return hostlist.fold_union(*lists)


def run(args: argparse.Namespace) -> int:
    """Print what the options ask for; return the exit code (UsageError for bad input)."""
    if (args.minus or args.intersection) and len(args.hosts) < 2:
        option = "--minus" if args.minus else "--intersection"
        raise UsageError(f"{option} needs at least two hostlists")
    if not (args.expand or args.count or args.nth is not None or args.size is not None):
        # Folding sorts and merges, so the order and repeats the other outputs
        # keep do not matter: set algebra on ranges gives the same string.
        print(_folded(args))
        return 0
    if args.expand and not (args.minus or args.intersection or args.size is not None):
        # Only written out: the text is built without a string object per name.
        sep = _delimiter(args.delimiter)
        texts = [hostlist.expand_joined(text, sep) for text in args.hosts]
        print(sep.join([text for text in texts if text]))
        return 0
    if not (args.minus or args.intersection):
        return _by_position(args)
    names = _select(args)
    if args.expand:
        print(hostlist.join(names, _delimiter(args.delimiter)))
    elif args.count:
        print(len(names))
    elif args.nth is not None:
        print(hostlist.nth(names, args.nth))
    else:
        print(hostlist.fold(names))
    return 0


def _by_position(args: argparse.Namespace) -> int:
    """--count, --nth and --size of the lists one after the other: counted on the ranges,
    and only the names printed are made (four 10M-name lists must not become 40M strings)."""
    total = sum(hostlist.count(text) for text in args.hosts)
    start, stop = 0, total
    if args.size is not None:
        start, stop = (0, min(args.size, total)) if args.size >= 0 else \
            (max(total + args.size, 0), total)
    if args.count:
        print(stop - start)
    elif args.nth is not None:
        n = stop - start
        index = args.nth
        if index == 0 or index > n or index < -n:
            raise UsageError(f"host index {index} is out of range for a list of {n} names "
                             "(1-based; negative counts from the end)")
        at = start + (index - 1 if index > 0 else n + index)
        print(hostlist.names_between(args.hosts, at, at + 1)[0])
    else:
        names = hostlist.names_between(args.hosts, start, stop)
        if args.expand:
            print(hostlist.join(names, _delimiter(args.delimiter)))
        else:
            print(hostlist.fold(names))
    return 0
