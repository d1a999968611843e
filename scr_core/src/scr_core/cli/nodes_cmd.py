"""``scr nodes``: the node inventory of the resource manager, per partition, and chunks.

``scr nodes`` lists every node (state, CPUs, memory, partitions); ``--summary`` one line per
partition; ``--chunks N`` cuts the usable nodes of ``--partition`` into N equal chunks
(Pavilion's chunking; ``--selection`` contiguous, distributed, random or rand_dist) and
prints one hostlist per chunk.
"""

from __future__ import annotations

import argparse
import dataclasses
import json


def configure_parser(parser: argparse.ArgumentParser) -> None:
    from ..batch.scheduler import EXTRA_MODES, NODE_SELECTIONS

    parser.add_argument("-p", "--partition", help="only this partition")
    parser.add_argument("--rm", help="resource manager plugin (default: detected)")
    parser.add_argument("--state", choices=("up", "available"), default="up",
                        help="nodes counted as usable: up, or up and not allocated "
                             "(default up)")
    parser.add_argument("--summary", action="store_true", help="one line per partition")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--chunks", type=int, metavar="N", help="cut into N equal chunks")
    group.add_argument("--chunk-size", type=int, metavar="K", help="chunks of K nodes")
    parser.add_argument("--selection", choices=NODE_SELECTIONS, default="contiguous",
                        help="how a chunk's nodes are picked (default contiguous)")
    parser.add_argument("--extra", choices=EXTRA_MODES, default="discard",
                        help="leftover nodes: dropped, or one more chunk topped up from the "
                             "previous one (backfill)")
    parser.add_argument("--seed", type=int, help="seed of the random selections")
    parser.add_argument("--json", action="store_true", help="JSON output")
    parser.epilog = (
        "Exit codes: 0 ok, 2 usage (unknown partition name for chunking, more chunks than "
        "usable nodes), 3 configuration, 4 plugins, 5 the resource manager failed, "
        "7 the resource manager has no node inventory.")


def run(args: argparse.Namespace) -> int:
    from ..batch import scheduler
    from ..engine.jobenv import JobEnv
    from ..hostlist import fold

    rm = JobEnv(resource_manager=args.rm).resource_manager
    nodes = scheduler.inventory(rm, args.partition)
    if args.chunks is not None or args.chunk_size is not None:
        names = scheduler.usable_nodes(nodes, args.partition, args.state)
        if not names:
            from ..errors import UsageError

            raise UsageError(f"no {args.state} node"
                             + (f" in partition '{args.partition}'" if args.partition else ""))
        chunks = scheduler.chunk_nodes(names, chunks=args.chunks, size=args.chunk_size,
                                       selection=args.selection, extra=args.extra,
                                       seed=args.seed)
        if args.json:
            print(json.dumps({"partition": args.partition, "selection": args.selection,
                              "chunks": chunks}))
        else:
            for i, chunk in enumerate(chunks):
                print(f"{i}\t{len(chunk)}\t{fold(chunk)}")
        return 0
    if args.summary:
        summary = scheduler.partition_summary(nodes)
        if args.json:
            print(json.dumps(summary))
            return 0
        print("PARTITION\tNODES\tUP\tAVAIL\tCPUS\tMEMORY_MB\tNODELIST")
        for name, row in summary.items():
            print(f"{name}\t{row['nodes']}\t{row['up']}\t{row['available']}\t"
                  f"{row['cpus'] if row['cpus'] is not None else '-'}\t"
                  f"{row['memory_mb'] if row['memory_mb'] is not None else '-'}\t"
                  f"{fold(row['names'])}")
        return 0
    if args.json:
        print(json.dumps([dataclasses.asdict(n) for n in nodes]))
        return 0
    print("NODE\tSTATE\tCPUS\tMEMORY_MB\tPARTITIONS\tREASON")
    for n in nodes:
        state = n.state or ("up" if n.up else "down")
        print(f"{n.name}\t{state}\t{n.cpus if n.cpus is not None else '-'}\t"
              f"{n.memory_mb if n.memory_mb is not None else '-'}\t"
              f"{','.join(n.partitions) or '-'}\t{n.reason}")
    return 0
