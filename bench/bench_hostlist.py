"""Hostlist operations: ``scr_core.hostlist`` against ClusterShell, python-hostlist and Slurm's C.

Cases, for 1-D names (``n1..nN``, compact form ``n[1-65536,65537-...]``) and 2-D names
(``rack[1-R]n[001-250]``, the leftmost bracket varying slowest, as Slurm lists them), at
1k, 10k, 100k and 1M names. ``D`` is a seeded random 10% of the names (the "down" nodes:
a gappy set), ``D_str`` its folded string (one bracket per name, as Slurm prints it):

``expand``        compact string -> the names as text, one per line: what
                  ``scr hostlist -e``, ``nodeset -e`` and ``scontrol show hostnames`` print
``expand list``   compact string -> a Python list of the names
``fold``          list of all N names, in allocation order -> compact string
``fold gappy``    list of the 90% not in D -> compact string (random holes everywhere)
``difference``    (compact string, D_str) -> compact string of the names not in D
``intersection``  (compact string, D_str) -> compact string of the names in D

Implementations, each in its own forked child (inputs prepared before the fork, only the
call timed, rounds interleaved, medians):

* ours: ``expand_joined(s, "\\n")``, ``expand``, ``fold``, ``fold_difference(a, b)``,
  ``fold_intersection(a, b)`` (range algebra on the strings: neither operand is expanded,
  see ``docs/notes.md``). ``expand_joined`` writes its text through the C helper
  ``scr_core._textjoin`` where the install built it (the 1M rows' notes say whether it
  was); without it the text is written twice and 1M names take about twice as long;
* the floor of ``expand list`` (a row under each of its cases): building the same N name
  strings with a bare list comprehension (``[f"n{i}" for i in range(1, N + 1)]``; 2-D: the
  250 padded tails made once, then ``head + tail``), which no list expansion can beat by
  much since it must create the strings too. Its target is ours <= 1.25x of it from 100k
  names up (below, fixed costs weigh: parsing, the forked child's first touches); its note
  gives the best Python library's time over the floor: at 1M that is 3.5-4.2x, so ``<=
  0.1x`` of the best library is out of reach for any list of strings, and the 1M library
  target is checked on ``expand`` (the text) only;
* ClusterShell ``NodeSet`` with ``resolver=NOGROUP_RESOLVER`` (``"\\n".join(NodeSet(s))``,
  ``list(NodeSet(s))``, ``str(NodeSet.fromlist(names))``,
  ``str(NodeSet(a).difference(NodeSet(b)))``, ...);
* python-hostlist (``expand_hostlist``, joined for ``expand``; ``collect_hostlist``; set
  operations on Python sets of expanded names, as its ``hostlist -d/-i`` command does; its
  ``MAX_SIZE`` guard of 100,000 names is raised for the 1M cases);
* Slurm's C code: ``scontrol show hostnames`` for expand (a process, output read through a
  pipe); ``scontrol show hostlist FILE`` for folds whose input file fits under scontrol's
  ~1 MB hostfile limit (beyond it scontrol silently drops the rest: checked below), else the
  same C functions in libslurm in-process through ctypes (``slurm_hostlist_create`` on the
  comma-joined names + ``slurm_hostlist_ranged_string``). Slurm has no set operations.
  scontrol needs only a slurm.conf (a two-line one is written to a temp dir and named by
  ``SLURM_CONF``); it comes with Debian's ``slurm-client``, which ``./dev/bench`` installs.
  Without it each Slurm row says so, and the summary counts its target as not checked.

Every result is checked by its name count (a wrong count is said in the note). A reference
that does not finish within the cap is killed and shown as ``> cap``; it is then not run at
larger sizes of the same case (it can only get slower), and reported as ``> cap`` there too;
nor is one whose time at the previous size, scaled in proportion to the number of names,
is already over the cap (the note gives the measured time it was projected from).
Targets: 2-D difference at 100k <= 1 s; at 1M ours <= 0.1x the best Python library
(>= 10x faster; for expand, on the text); ours <= 3x Slurm's C; ``expand list`` <= 1.25x
its floor from 100k names up.

Modes: ``--quick``: 1k and 10k, cap 1 s. Default (under a minute): 1k, 10k and 100k, cap
2 s. ``--full``: also 1M (where the 1M target is checked), cap 30 s (10 s for Slurm's C,
whose ``hostlist_create`` is quadratic in the number of names: 60-90 s for 1M), more
repeats: several minutes, because the references take that long; what RESULTS.md records.

Limits: CPU-bound single-threaded code on a shared 2-core VM (colleagues' tests steal
cycles: medians of interleaved rounds); fork copy-on-write faults land inside the timed
calls of every implementation alike; scontrol times include its process start (~3 ms) and
the pipe; the ctypes path includes building the C string neither. Output forms differ
(ours and Slurm fold one bracket per name, ``rack1n[001-250],rack2n[...]``; NodeSet and
python-hostlist fold every dimension, ``rack[1-2]n[001-250]``); counts are compared.
"""

from __future__ import annotations

import ctypes
import glob
import os
import random
import shutil
import sys
import tempfile
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import common  # noqa: E402

NAME = "hostlist"
SIZES = (1_000, 10_000, 100_000, 1_000_000)
OPS = ("expand", "expand list", "fold", "fold gappy", "difference", "intersection")
SHAPES = ("1-D", "2-D")
PER_RACK = 250
DOWN_FRACTION = 0.10
SCONTROL_FILE_LIMIT = 1_000_000  # bytes; scontrol reads at most ~1 MiB of a hostfile
# Debian's slurm-wlm-basic-plugins (a dependency of slurm-client), in the multiarch directory
LIBSLURM_GLOB = "/usr/lib/*/slurm-wlm/libslurmfull.so"
C_CAP = 10.0  # Slurm's hostlist_create is quadratic in the names given (60-90 s at 1M)
FLOOR_LABEL = "floor: a list comprehension of the names"
FLOOR_TARGET = "<= 1.25x"
FLOOR_TARGET_FROM = 100_000  # below, fixed costs (parsing, the child's first touches) weigh


# --------------------------------------------------------------------------- data


def compact(shape: str, n: int) -> str:
    if shape == "1-D":
        # one bracket, ranges of at most 65,536 (scontrol refuses longer ranges)
        ranges = ",".join(f"{lo}-{min(lo + 65535, n)}" for lo in range(1, n + 1, 65536))
        return f"n[{ranges}]"
    return f"rack[1-{n // PER_RACK}]n[001-{PER_RACK:03d}]"


class Data:
    def __init__(self, shape: str, n: int, hl: Any) -> None:
        self.shape, self.n = shape, n
        self.a_str = compact(shape, n)
        self.names = hl.expand(self.a_str)
        if shape == "1-D":
            assert self.names == [f"n{i}" for i in range(1, n + 1)]
        else:
            assert self.names[:2] == ["rack1n001", "rack1n002"] and len(self.names) == n
        rnd = random.Random(1000 + n)
        down = set(rnd.sample(self.names, int(n * DOWN_FRACTION)))
        self.down = [x for x in self.names if x in down]
        self.rest = [x for x in self.names if x not in down]
        self.d_str = hl.fold(self.down)
        # the floor of expand: the cheapest pure-Python way we know to build these strings
        if shape == "1-D":
            self.floor = lambda: [f"n{i}" for i in range(1, n + 1)]
        else:
            racks = range(1, n // PER_RACK + 1)
            tails = [f"{i:03d}" for i in range(1, PER_RACK + 1)]
            self.floor = lambda: [head + tail for head in [f"rack{r}n" for r in racks]
                                  for tail in tails]
        self.expected = {"expand": n, "expand list": n, "fold": n, "fold gappy": len(self.rest),
                         "difference": len(self.rest), "intersection": len(self.down)}


# --------------------------------------------------------------------------- implementations


def _count(result: Any) -> int:
    from scr_core import hostlist as hl

    if isinstance(result, (list, tuple)):
        return len(result)
    if isinstance(result, bytes):
        result = result.decode()
    return hl.count(result.strip())


def _count_lines(text: str) -> int:
    return text.count("\n") + 1 if text else 0


def ours_ops(d: Data) -> dict[str, Callable[[], Any]]:
    from scr_core import hostlist as hl

    return {
        "expand": lambda: hl.expand_joined(d.a_str, "\n"),
        "expand list": lambda: hl.expand(d.a_str),
        "fold": lambda: hl.fold(d.names),
        "fold gappy": lambda: hl.fold(d.rest),
        "difference": lambda: hl.fold_difference(d.a_str, d.d_str),
        "intersection": lambda: hl.fold_intersection(d.a_str, d.d_str),
    }


def nodeset_ops(d: Data) -> dict[str, Callable[[], Any]]:
    from ClusterShell.NodeSet import NOGROUP_RESOLVER as R
    from ClusterShell.NodeSet import NodeSet

    return {
        "expand": lambda: "\n".join(NodeSet(d.a_str, resolver=R)),
        "expand list": lambda: list(NodeSet(d.a_str, resolver=R)),
        "fold": lambda: str(NodeSet.fromlist(d.names, resolver=R)),
        "fold gappy": lambda: str(NodeSet.fromlist(d.rest, resolver=R)),
        "difference": lambda: str(NodeSet(d.a_str, resolver=R).difference(
            NodeSet(d.d_str, resolver=R))),
        "intersection": lambda: str(NodeSet(d.a_str, resolver=R).intersection(
            NodeSet(d.d_str, resolver=R))),
    }


def pyhostlist_ops(d: Data) -> dict[str, Callable[[], Any]]:
    import hostlist as ph

    ph.MAX_SIZE = 100_000_000  # its guard against huge expansions (default 100,000)
    return {
        "expand": lambda: "\n".join(ph.expand_hostlist(d.a_str)),
        "expand list": lambda: ph.expand_hostlist(d.a_str),
        "fold": lambda: ph.collect_hostlist(d.names),
        "fold gappy": lambda: ph.collect_hostlist(d.rest),
        "difference": lambda: ph.collect_hostlist(
            set(ph.expand_hostlist(d.a_str)) - set(ph.expand_hostlist(d.d_str))),
        "intersection": lambda: ph.collect_hostlist(
            set(ph.expand_hostlist(d.a_str)) & set(ph.expand_hostlist(d.d_str))),
    }


class Slurm:
    """scontrol with a minimal slurm.conf, and libslurm's hostlist functions via ctypes."""

    def __init__(self, work: str) -> None:
        self.scontrol = shutil.which("scontrol")
        self.conf = os.path.join(work, "slurm.conf")
        with open(self.conf, "w") as fh:
            fh.write("ClusterName=bench\nSlurmctldHost=localhost\n")
        self.env = common.clean_env({"SLURM_CONF": self.conf})
        os.environ["SLURM_CONF"] = self.conf  # for libslurm in this process
        self.lib = None
        found = sorted(glob.glob(LIBSLURM_GLOB))
        self.lib_problem = f"no {LIBSLURM_GLOB}"  # why self.lib is None, for the notes
        if found:
            try:
                lib = ctypes.CDLL(found[0])
                lib.slurm_hostlist_create.restype = ctypes.c_void_p
                lib.slurm_hostlist_create.argtypes = [ctypes.c_char_p]
                lib.slurm_hostlist_ranged_string_malloc.restype = ctypes.c_void_p
                lib.slurm_hostlist_ranged_string_malloc.argtypes = [ctypes.c_void_p]
                lib.slurm_hostlist_destroy.argtypes = [ctypes.c_void_p]
                self.lib = lib
                self.libc = ctypes.CDLL(None)
                self.libc.free.argtypes = [ctypes.c_void_p]
            except (OSError, AttributeError) as e:
                self.lib = None
                self.lib_problem = f"{found[0]} did not load: {e}"
        self.version = "?"
        if self.scontrol:
            try:
                _, out = common.time_subprocess([self.scontrol, "--version"], env=self.env,
                                                capture=True)
                self.version = out.decode().split()[-1]
            except Exception:
                pass
        self.label = f"Slurm {self.version}"

    def expand(self, d: Data, cap: float) -> Callable[[], Any] | None:
        if not self.scontrol:
            return None
        argv = [self.scontrol, "show", "hostnames", d.a_str]

        def measure() -> tuple[float, int]:
            t, out = common.time_subprocess(argv, env=self.env, capture=True, cap=cap)
            return t, out.count(b"\n")

        return measure

    def fold(self, names: list, work: str, cap: float) -> tuple[str, Callable[[], Any]] | None:
        data = ("\n".join(names) + "\n").encode()
        if self.scontrol and len(data) <= SCONTROL_FILE_LIMIT:
            path = os.path.join(work, f"hosts.{len(names)}.{names[0]}")
            with open(path, "wb") as fh:
                fh.write(data)
            argv = [self.scontrol, "show", "hostlist", path]

            def measure() -> tuple[float, int]:
                t, out = common.time_subprocess(argv, env=self.env, capture=True, cap=cap)
                return t, _count(out)

            return f"{self.label} scontrol hostlist FILE", measure
        if self.lib is None:
            return None
        joined = ",".join(names).encode()
        lib, libc = self.lib, self.libc

        def call() -> bytes:
            hl = lib.slurm_hostlist_create(joined)
            ptr = lib.slurm_hostlist_ranged_string_malloc(hl)
            text = ctypes.string_at(ptr)
            libc.free(ptr)
            lib.slurm_hostlist_destroy(hl)
            return text

        return (f"{self.label} libslurm via ctypes",
                lambda: common.time_in_child(call, cap, _count))


# --------------------------------------------------------------------------- the run


def _mode(quick: bool, full: bool) -> dict:
    if quick:
        return {"sizes": SIZES[:2], "cap": 1.0, "repeats": {1_000: 2, 10_000: 2},
                "budget": 0.3}
    if full:
        return {"sizes": SIZES, "cap": 30.0,
                "repeats": {1_000: 9, 10_000: 7, 100_000: 5, 1_000_000: 7},
                "budget": 6.0}
    return {"sizes": SIZES[:3], "cap": 2.0, "repeats": {1_000: 5, 10_000: 5, 100_000: 3},
            "budget": 0.8}


def run(quick: bool, full: bool = False) -> list[dict]:
    import ClusterShell
    import hostlist as ph

    from scr_core import hostlist as hl

    mode = _mode(quick, full)
    work = tempfile.mkdtemp(prefix="scr-bench-hostlist.")
    saved_conf = os.environ.get("SLURM_CONF")
    rows: list[dict] = []
    # (shape, op, reference label) -> (size at which it was stopped, the cap it hit)
    over_at: dict[tuple[str, str, str], tuple[int, float]] = {}
    # (shape, op, reference label) -> (size, median seconds) of its last measured size
    last_time: dict[tuple[str, str, str], tuple[int, float]] = {}
    try:
        slurm = Slurm(work)
        ns_label = f"ClusterShell NodeSet {ClusterShell.__version__}"
        ph_label = f"python-hostlist {ph.__version__}"
        for shape in SHAPES:
            for n in mode["sizes"]:
                common.progress(f"hostlist {shape} {common.fmt_count(n)}")
                d = Data(shape, n, hl)
                ours = ours_ops(d)
                refs = {ns_label: nodeset_ops(d), ph_label: pyhostlist_ops(d)}
                for op in OPS:
                    rows += _case(d, op, ours[op], refs, slurm, work, mode, over_at,
                                  last_time)
                del d, ours, refs
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if saved_conf is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = saved_conf
    return rows


def _case(d: Data, op: str, ours_fn: Callable, refs: dict, slurm: Slurm, work: str,
          mode: dict, over_at: dict, last_time: dict) -> list[dict]:
    cap = mode["cap"]
    n = d.n
    case = f"{op} {d.shape} {common.fmt_count(n)}"
    summarize = _count_lines if op == "expand" else _count
    measures: dict[str, Callable[[], Any]] = {
        "ours": lambda: common.time_in_child(ours_fn, cap * 10, summarize)}
    # label -> (why it was not run, the cap it was over: a lower bound of its time)
    skipped: dict[str, tuple[str, float]] = {}

    def skip_if_over(label: str, label_cap: float) -> bool:
        key = (d.shape, op, label)
        if key in over_at:
            at, capped = over_at[key]
            skipped[label] = (f"not run: over the {capped:g} s cap already at "
                              f"{common.fmt_count(at)}", capped)
            return True
        if key in last_time:
            at, t = last_time[key]
            projected = t * n / at
            if projected > label_cap:
                skipped[label] = (
                    f"not run: {common.fmt_s(t)} at {common.fmt_count(at)}, so at least "
                    f"{common.fmt_s(projected)} for {common.fmt_count(n)} (time grows at "
                    f"least in proportion to the names): over the {label_cap:g} s cap",
                    label_cap)
                return True
        return False

    python_labels = list(refs)
    if op == "expand list":
        floor = d.floor
        measures[FLOOR_LABEL] = lambda: common.time_in_child(floor, cap, _count)
    for label, ops in refs.items():
        if not skip_if_over(label, cap):
            fn = ops[op]
            measures[label] = lambda fn=fn: common.time_in_child(fn, cap, summarize)
    c_label = None
    c_cap = min(cap, C_CAP)
    if op == "expand":
        m = slurm.expand(d, c_cap)
        if m is not None:
            c_label = f"{slurm.label} scontrol hostnames"
            measures[c_label] = m
    elif op.startswith("fold"):
        got = slurm.fold(d.names if op == "fold" else d.rest, work, c_cap)
        if got is not None:
            c_label, measures[c_label] = got
    if c_label and skip_if_over(c_label, c_cap):
        del measures[c_label]

    samples = common.interleave(measures, repeats=mode["repeats"][n],
                                budget_s=mode["budget"], min_repeats=1)
    expected = d.expected[op]

    def checked(label: str) -> str:
        s = samples[label]
        if s.error:
            return f"ERROR {s.error}"
        wrong = sorted({c for c in s.info if c != expected})
        if wrong:
            return f"WRONG RESULT: {wrong[0]:,} names, expected {expected:,}"
        return ""

    ours = samples["ours"]
    ours_note = checked("ours")
    rows = []
    reps = str(ours.count)

    def add(label: str, target: str = "", extra: str = "") -> None:
        if label in skipped:
            why, capped = skipped[label]
            rows.append(common.make_row(
                NAME, case, ours.median, label, capped, target,
                "; ".join(x for x in (why, ours_note, extra) if x),
                ours_over=ours.over, reference_over=True, repeats=reps))
            return
        s = samples[label]
        if s.over:
            over_at[(d.shape, op, label)] = (n, s.capped)
        elif s.median is not None:
            last_time[(d.shape, op, label)] = (n, s.median)
        note = "; ".join(x for x in (ours_note and f"ours: {ours_note}", checked(label),
                                     extra) if x)
        ref_s = None if s.error else s.median
        rows.append(common.make_row(NAME, case, ours.median, label, ref_s, target, note,
                                    ours_over=ours.over, reference_over=s.over,
                                    repeats=f"{reps}/{s.count}"))

    for label in python_labels:
        add(label)
    if c_label:
        add(c_label, "<= 3x", "input over scontrol's ~1 MB hostfile limit: the same C "
            "hostlist_create + ranged_string in-process" if "libslurm" in c_label else "")
    elif op == "expand" or op.startswith("fold"):
        # said, not left out: the summary counts it as a target that was not checked
        rows.append(common.make_row(
            NAME, case, ours.median, "Slurm's C (not installed)", None, "<= 3x",
            ("no scontrol" if not slurm.scontrol else
             "input over scontrol's ~1 MB hostfile limit")
            + (f", and {slurm.lib_problem}" if op != "expand" else "")
            + ": install Debian's slurm-client (./dev/bench does)",
            ours_over=ours.over, repeats=reps))
    if op == "expand list":
        rows.append(_floor_row(case, ours, samples, python_labels, ours_note,
                               FLOOR_TARGET if n >= FLOOR_TARGET_FROM else ""))
    if n >= 1_000_000:
        rows.append(_best_python(case, ours, samples, skipped, python_labels,
                                 "" if op == "expand list" else "<= 0.1x",
                                 _helper_note() if op == "expand" else ""))
    if op == "difference" and d.shape == "2-D" and n == 100_000:
        rows.append(common.make_row(NAME, case, ours.median, "- (absolute target)", None,
                                    "<= 1 s", ours_note, ours_over=ours.over, repeats=reps))
    return rows


def _floor_row(case: str, ours: common.Samples, samples: dict, labels: list,
               ours_note: str, target: str) -> dict:
    """Our expand against the floor: only building the list of name strings."""
    floor = samples[FLOOR_LABEL]
    best = [samples[lb].median for lb in labels
            if not samples[lb].error and samples[lb].median and not samples[lb].over]
    note = ("the bound on any list expansion, which must create these strings: "
            "<= 0.1x the best Python library is out of reach wherever it is under 10x this")
    if best and floor.median:
        note += f"; best Python library / floor = {min(best) / floor.median:.2f}x"
    if ours_note:
        note += f"; ours: {ours_note}"
    return common.make_row(NAME, case, ours.median, FLOOR_LABEL,
                           None if floor.error else floor.median, target, note,
                           ours_over=ours.over, reference_over=floor.over,
                           repeats=f"{ours.count}/{floor.count}")


def _helper_note() -> str:
    from scr_core import hostlist as hl

    if hl._textjoin() is None:
        return "ours without the C helper scr_core._textjoin (not built): the text written twice"
    return "ours with the C helper scr_core._textjoin"


def _best_python(case: str, ours: common.Samples, samples: dict, skipped: dict,
                 labels: list, target: str, extra: str = "") -> dict:
    """The fastest Python library; one stopped at the cap counts as at least the cap.

    ``target`` is empty for ``expand list``: bounded by its floor row, not checked here.
    """
    best: tuple[float, bool, str] | None = None
    for label in labels:
        if label in skipped:
            value, over = skipped[label][1], True
        else:
            s = samples[label]
            if s.error or s.median is None:
                return common.make_row(NAME, case, ours.median, "best Python library", None,
                                       target, f"{label} failed: {s.error}",
                                       ours_over=ours.over)
            value, over = s.median, s.over
        if best is None or value < best[0]:
            best = (value, over, label)
    assert best is not None
    value, over, label = best
    note = f"best: {label}"
    if not target:
        note += "; no target: a list of strings is bounded by the floor row (see above)"
    if extra:
        note += f"; {extra}"
    return common.make_row(NAME, case, ours.median, "best Python library", value, target,
                           note, ours_over=ours.over, reference_over=over)


if __name__ == "__main__":
    sys.exit(common.standalone(run))
