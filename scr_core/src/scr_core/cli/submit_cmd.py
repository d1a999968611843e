"""``scr submit``: a resilient batch job in one command.

``scr submit -N 4 -t 1h -- srun -N 4 ./app`` writes a job script whose header comes from the
resource manager plugin (fault tolerance on, unless ``--no-fault-tolerance``) and whose body
is ``scr run srun -N 4 ./app``, submits it and prints the job id (``--json``: the record).
"""

from __future__ import annotations

import argparse
import json
import sys

from ..errors import UsageError


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-N", "--nodes", help="node count, 'all' (every up node of the "
                                              "partition), N%% of them, or a fraction")
    parser.add_argument("-n", "--tasks", type=int, help="task count")
    parser.add_argument("-t", "--time", help="time limit (seconds, 10m, 1h, [D-]HH:MM:SS)")
    parser.add_argument("-p", "--partition", help="partition (queue)")
    parser.add_argument("-A", "--account", help="account (bank, project)")
    parser.add_argument("-J", "--name", default="scr-job", help="job name (default scr-job)")
    parser.add_argument("-o", "--output", help="stdout file (%%j = job id)")
    parser.add_argument("-e", "--error", help="stderr file (default: with stdout)")
    parser.add_argument("-D", "--chdir", help="working directory of the job")
    parser.add_argument("--header", action="append", default=[], metavar="LINE",
                        help="extra header line, e.g. '--qos=debug' or '#BSUB -G grp' "
                             "(repeatable)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="variable exported in the job script (repeatable)")
    parser.add_argument("--begin", metavar="TIME",
                        help="start no earlier than TIME (+10m, 15:00, ISO, @epoch)")
    parser.add_argument("--hold", action="store_true", help="submit held")
    parser.add_argument("--no-fault-tolerance", action="store_true",
                        help="let a node failure end the job (no --no-kill)")
    parser.add_argument("--no-scr-run", action="store_true",
                        help="run COMMAND as the job body instead of 'scr run COMMAND'")
    parser.add_argument("--rm", help="resource manager plugin (default: detected)")
    parser.add_argument("--json", action="store_true", help="print the job record as JSON")
    parser.add_argument("--wait", action="store_true",
                        help="wait for the job to end; exit 0 only if it completed")
    parser.add_argument("--timeout", type=float, help="with --wait: give up after SECONDS")
    parser.add_argument("command", nargs=argparse.REMAINDER,
                        help="the job: a launcher command for scr run; put it after --")
    parser.epilog = (
        "The record (--json) is {job_id, system, submit_time, script, name}.\n"
        "Exit codes: 0 submitted (with --wait: completed), 1 the job ended otherwise "
        "(--wait) or did not end in --timeout, 2 usage (bad option, no command, too many "
        "nodes), 3 configuration, 4 plugins, 5 the resource manager refused or failed, "
        "7 the resource manager cannot submit jobs.")


def _env_pairs(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--env {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def run(args: argparse.Namespace) -> int:
    from ..batch import scheduler
    from ..engine.jobenv import JobEnv
    from ..units import parse_duration

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("no command to submit; put it after --")
    rm = JobEnv(resource_manager=args.rm).resource_manager
    nodes = None
    if args.nodes is not None:
        text = args.nodes.strip()
        if text.isdigit():
            nodes = int(text)
        else:  # all / N% / fraction: sized from the partition's inventory
            inv = scheduler.inventory(rm, args.partition)
            partition = args.partition
            if partition is None:
                parts = scheduler.partition_summary(inv)
                if len(parts) > 1:
                    raise UsageError(f"--nodes {text} needs --partition (partitions: "
                                     f"{', '.join(parts)})")
                partition = next(iter(parts), None)
            nodes = scheduler.auto_size(inv, text, partition=partition)
    begin = None
    if args.begin:
        from ..timeparse import parse_time

        begin = float(parse_time(args.begin))
    request = scheduler.make_request(
        command, wrap=not args.no_scr_run, job_name=args.name, nodes=nodes, tasks=args.tasks,
        time_limit=int(parse_duration(args.time)) if args.time else None,
        partition=args.partition, account=args.account, output=args.output,
        error=args.error, workdir=args.chdir,
        fault_tolerant=not args.no_fault_tolerance, header_lines=list(args.header),
        environ=_env_pairs(args.env))
    record = scheduler.submit(rm, request, begin=begin, hold=args.hold)
    if args.json:
        print(json.dumps(scheduler.record_to_dict(record)))
    else:
        print(record.job_id)
    sys.stdout.flush()
    if not args.wait:
        return 0
    try:
        st = scheduler.wait(rm, [record.job_id], timeout=args.timeout, interval=1.0)
    except scheduler.WaitTimeout as exc:
        print(f"scr submit: {exc}", file=sys.stderr)
        return 1
    final = st[record.job_id]
    print(f"job {record.job_id}: {final.state}" + (f" ({final.message})" if final.message
                                                   else ""), file=sys.stderr)
    return 0 if final.state == "completed" else 1
