"""``scr jobs``: batch jobs of the resource manager, and the function-jobs database.

``status IDS...`` and ``cancel ID`` talk to the resource manager (one query for all ids).
``ls``, ``rm`` and ``unlock`` work on the jobs database of function jobs (``jobs.db`` in the
root of :mod:`scr_core.funcjobs.config`: ``$SCR_JOBS_ROOT``, the nearest ``_scr/``, or
``~/.scr``; ``--root`` overrides). Name, status and system filters are regular expressions
(``re.search``: anchor with ^...$); a status may also be a group: ongoing, live, done,
finished.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from typing import Any

from ..errors import UsageError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True,
                                parser_class=type(parser))
    st = sub.add_parser("status", help="batch status of jobs (one resource manager query)")
    st.add_argument("ids", nargs="+", metavar="ID")
    st.add_argument("--rm", help="resource manager plugin (default: detected)")
    st.add_argument("--json", action="store_true")
    ca = sub.add_parser("cancel", help="cancel a batch job")
    ca.add_argument("id", metavar="ID")
    ca.add_argument("--rm", help="resource manager plugin (default: detected)")

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--root", help="jobs root directory (holds jobs.db)")
        p.add_argument("-n", "--name", help="job name regex")
        p.add_argument("-s", "--status", action="append",
                       help="status, status regex or group (repeatable)")
        p.add_argument("-S", "--system", help="system name regex")
        p.add_argument("-i", "--id", help="job id regex")

    ls = sub.add_parser("ls", help="list function jobs of the database")
    filters(ls)
    ls.add_argument("--sync", action="store_true",
                    help="first update the batch state of ongoing jobs (one query per system)")
    ls.add_argument("--json", action="store_true")
    rm = sub.add_parser("rm", help="remove function jobs from the database")
    filters(rm)
    rm.add_argument("--clean", action="store_true",
                    help="also remove their staging (and remote run) directories")
    rm.add_argument("--all", action="store_true", help="allow removing with no filter")
    rm.add_argument("--force", action="store_true",
                    help="also remove ongoing jobs (their batch jobs are NOT cancelled)")
    rm.add_argument("--dry-run", action="store_true", help="only print what would go")
    un = sub.add_parser("unlock", help="clear claims held by processes that are gone")
    un.add_argument("--root", help="jobs root directory (holds jobs.db)")
    un.add_argument("ids", nargs="*", metavar="ID", help="only these jobs")
    un.add_argument("--force", action="store_true", help="clear claims of live processes too")
    un.add_argument("--rebuild", action="store_true",
                    help="copy the database into a fresh file (a file lock that never "
                         "clears); nothing else may use it meanwhile")
    parser.epilog = (
        "Exit codes: 0 ok, 1 nothing matched (rm) or a job is unknown (status: its state is "
        "'unknown'), 2 usage (bad regex, rm without a filter), 3 configuration, "
        "4 plugins, 5 the resource manager failed, 6 the database is unusable, "
        "7 the resource manager cannot do it.")


def _config(args: argparse.Namespace) -> Any:
    from ..funcjobs.config import ROOT_ENV, load_config

    environ = dict(os.environ)
    if getattr(args, "root", None):
        environ[ROOT_ENV] = os.path.abspath(args.root)
    return load_config(environ)


def _db(args: argparse.Namespace) -> Any:
    from ..funcjobs.jobsdb import JobsDB

    return JobsDB(_config(args).db_path)


def _rows(args: argparse.Namespace, db: Any) -> list[dict]:
    return db.jobs(name=args.name, status=args.status, system=args.system, id=args.id)


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) if epoch else "-"


def _sync(args: argparse.Namespace, db: Any) -> None:
    from ..errors import ScrError
    from ..funcjobs.func import sync_jobs
    from ..funcjobs.systems import make_system

    config = _config(args)
    for name in sorted({r["system"] for r in db.jobs(status=["submitted", "running"])
                        if r["system"]}):
        try:
            sync_jobs(db, make_system(name, config.system(name)))
        except ScrError as exc:
            print(f"scr jobs: warning: cannot update jobs on {name}: {exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    if args.action in ("status", "cancel"):
        from ..batch import scheduler
        from ..engine.jobenv import JobEnv

        rm = JobEnv(resource_manager=args.rm).resource_manager
        if args.action == "cancel":
            scheduler.cancel(rm, args.id)
            return 0
        result = scheduler.status(rm, args.ids)
        if args.json:
            print(json.dumps({k: scheduler.status_to_dict(v) for k, v in result.items()}))
        else:
            for jid, st in result.items():
                code = "" if st.exit_code is None else f"\texit={st.exit_code}"
                print(f"{jid}\t{st.state}{code}\t{st.message}")
        return 1 if any(st.state == "unknown" for st in result.values()) else 0

    db = _db(args)
    if args.action == "ls":
        if args.sync:
            _sync(args, db)
        rows = _rows(args, db)
        if args.json:
            print(json.dumps(rows))
            return 0
        print("ID\tNAME\tSTATUS\tSYSTEM\tREMOTE_ID\tREMOTE_STATUS\tUPDATED")
        for r in rows:
            print(f"{r['id']}\t{r['name']}\t{r['status']}\t{r['system'] or '-'}\t"
                  f"{r['remote_id'] or '-'}\t{r['remote_status'] or '-'}\t"
                  f"{_when(r['updated'])}")
        return 0
    if args.action == "unlock":
        if args.rebuild:
            old = db.rebuild()
            print(f"rebuilt {db.path} (old copy: {old})")
        cleared = db.unlock(args.ids or None, force=args.force)
        for jid in cleared:
            print(f"unlocked {jid}")
        return 0
    # rm
    if not any((args.name, args.status, args.system, args.id)) and not args.all:
        raise UsageError("scr jobs rm: give a filter (--name/--status/--system/--id) or --all")
    rows = _rows(args, db)
    if not rows:
        print("scr jobs rm: no job matches", file=sys.stderr)
        return 1
    from ..funcjobs.jobsdb import GROUPS

    ongoing = [r["id"] for r in rows if r["status"] in GROUPS["ongoing"]
               and r["status"] != "created"]
    if ongoing and not args.force:
        raise UsageError(f"scr jobs rm: {len(ongoing)} job(s) are still submitted or running "
                         f"({', '.join(ongoing[:3])}{'...' if len(ongoing) > 3 else ''}); "
                         "cancel them, or --force")
    config = _config(args) if args.clean else None
    for r in rows:
        print(f"{'would remove' if args.dry_run else 'removed'} {r['id']}")
        if args.dry_run:
            continue
        if args.clean:
            _clean_dirs(r, config)
        db.remove(r["id"])
    return 0


def _clean_dirs(row: dict, config: Any) -> None:
    from ..errors import ScrError
    from ..funcjobs.systems import make_system

    remote, stage = row.get("remote_dir"), row.get("stage_dir")
    if remote and remote != stage and row.get("system"):
        try:
            make_system(row["system"], config.system(row["system"])).clean(remote)
        except ScrError as exc:
            print(f"scr jobs rm: warning: {row['id']}: remote {remote} not removed: {exc}",
                  file=sys.stderr)
    if stage and os.path.isdir(stage):
        # only a directory that is one of ours (holds the job's task files)
        if os.path.exists(os.path.join(stage, "_scr_task.json")) or not os.listdir(stage):
            shutil.rmtree(stage, ignore_errors=True)
        else:
            print(f"scr jobs rm: warning: {stage} does not look like a staging directory; "
                  "kept", file=sys.stderr)
