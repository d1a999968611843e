"""``scr report --html``: the report as one self-contained page (needs ``scr-core[report]``).

The page is rendered by jinja2 (autoescaped) from ``templates/report.html.j2``; the timeline
of each allocation is inline SVG whose geometry is computed here: one row per node with the
runs as bars, failures as markers on the node that failed, a row of checkpoint ticks with
their flush and scavenge, halts as vertical lines, idle gaps shaded. Every shape carries a
``<title>`` (the hover text) and ``data-*`` attributes naming its run, node or dataset, which
the tests read. No script, no external asset: the page opens offline.
"""

from __future__ import annotations

from typing import Any, Optional

import jinja2

from scr_core.report import format_secs, format_size, format_stamp, nodes_text

__all__ = ["render_html"]

LABEL_W = 150  # left column with node names
PLOT_W = 900
ROW_H = 22
TOP = 30  # room above the rows: the checkpoints row's labels
AXIS_H = 28
_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600,
          43200, 86400)


def _ticks(t0: float, t1: float) -> list[float]:
    span = max(t1 - t0, 1e-9)
    step = next((s for s in _STEPS if span / s <= 8), _STEPS[-1])
    first = (int(t0 // step) + 1) * step
    return [first + i * step for i in range(int((t1 - first) // step) + 1)]


def _outcome_class(run: dict[str, Any]) -> str:
    if run["outcome"] == "failed" or (run["exit_code"] not in (None, 0)
                                      and run["outcome"] != "halted"):
        return "failed"
    if run["outcome"] == "halted" or run["exit_code"] == 0:
        return "ok"
    return "unknown"


def _run_title(run: dict[str, Any]) -> str:
    lines = [f"run {run['id']}" + (f" (scr run's run {run['number']})" if run["number"] else ""),
             f"{format_stamp(run['start'])} to {format_stamp(run['end'], run['start'])}"
             + ("" if run["end_logged"] else " (end not logged)"),
             f"duration {format_secs(run['secs'])}",
             "exit code " + ("?" if run["exit_code"] is None else str(run["exit_code"]))
             + (f", killed: {run['killed']}" if run["killed"] else ""),
             f"nodes {nodes_text(run['nodes'], run['node_count'])}"
             + (f", {run['procs']} processes" if run["procs"] else ""),
             f"outcome {run['outcome']}" + (f" ({run['halt_reason']})"
                                            if run["halt_reason"] else "")]
    if run["restart"]:
        r = run["restart"]
        lines.append(f"restarted from dataset {r['dset']}" if r["ok"]
                     else "restart FAILED")
    return "\n".join(lines)


def _timeline(report: dict[str, Any], alloc: dict[str, Any]) -> dict[str, Any]:
    runs = [r for r in report["runs"] if r["id"] in alloc["runs"]]
    failures = [f for f in report["failures"] if f["run"] in alloc["runs"]]
    ckpts = [c for c in report["checkpoints"] if c["run"] in alloc["runs"]]
    halts = [h for h in report["halts"] if h["run"] in alloc["runs"]]
    idle = [g for g in report["idle"] if g["between"][0] in alloc["runs"]]
    down = [n for n in report["nodes_down_at_start"] if n.get("before_run") in alloc["runs"]]

    times = [alloc["start"], alloc["end"]]
    for f in failures:
        times += [n["detected"] for n in f["nodes"]]
    for c in ckpts:
        for part in (c["flush"], c["scavenge"]):
            if part and part.get("start") is not None:
                times.append(part["start"] + (part.get("secs") or 0))
    times += [h["time"] for h in halts]
    t0, t1 = min(times), max(times)
    pad = max((t1 - t0) * 0.02, 0.5)
    t0, t1 = t0 - pad, t1 + pad

    def x(t: float) -> float:
        return round(LABEL_W + (t - t0) / (t1 - t0) * PLOT_W, 1)

    rows = list(alloc["nodes"]) or sorted({r["host"] or "?" for r in runs})
    row_of = {n: i for i, n in enumerate(rows)}

    def y(node: str) -> int:
        if node not in row_of:
            row_of[node] = len(rows)
            rows.append(node)
        return TOP + ROW_H * (row_of[node] + 1)

    bars = []
    for r in runs:
        nodes = r["nodes"] or [r["host"] or "?"]
        for n in nodes:
            bars.append({"x": x(r["start"]), "w": max(x(r["end"]) - x(r["start"]), 2),
                         "y": y(n) + 3, "h": ROW_H - 6, "cls": _outcome_class(r),
                         "run": r["id"], "node": n, "title": f"{n}\n{_run_title(r)}",
                         "label": f"run {r['id']}" if n == nodes[0] else ""})
    markers = []
    for f in failures:
        lost = (f"time lost {format_secs(f['lost_secs'])}" + (
            f" (from {f['last_checkpoint']['name']} to the relaunch)"
            if f["last_checkpoint"] else ""))
        targets = f["nodes"] or [{"node": (next(r for r in runs if r["id"] == f["run"])
                                           ["nodes"] or [None])[0] or rows[0],
                                  "reason": f["cause"], "found_by": "-", "detected": None}]
        for n in targets:
            markers.append({
                "x": x(f["time"]), "y": y(n["node"]) + ROW_H // 2, "run": f["run"],
                "node": n["node"], "detected_x": None if n["detected"] is None
                else x(n["detected"]),
                "title": f"FAILURE of run {f['run']} on {n['node']}\n"
                         f"{format_stamp(f['time'])}: {f['cause']}\n"
                         f"reason: {n['reason'] or '?'} (found by {n['found_by']}"
                         + (f" at {format_stamp(n['detected'])})" if n["detected"] else ")")
                         + f"\n{lost}"})
    for n in down:
        markers.append({"x": x(n["detected"]), "y": y(n["node"]) + ROW_H // 2, "run": None,
                        "node": n["node"], "detected_x": None,
                        "title": f"{n['node']} down before run {n.get('before_run')}: "
                                 f"{n['reason']} (found by {n['found_by']})"})
    ticks = []
    for c in ckpts:
        at = c["end"] if c["end"] is not None else c["start"]
        if at is None:
            continue
        title = [f"{c['kind']} {c['name'] or ''} (dataset {c['dset']})",
                 f"written {format_stamp(at)} in {format_secs(c['secs'])}, "
                 f"{format_size(c['bytes'])}"]
        fl, sc = c["flush"], c["scavenge"]
        if fl:
            title.append(f"flush ({fl['kind']}) {format_secs(fl['secs'])}")
        if sc:
            title.append(f"scavenged in {format_secs(sc['secs'])}")
        if c["restarted_from"]:
            title.append("a later run restarted from it")
        ticks.append({
            "x": x(at), "dset": c["dset"], "cls": c["kind"], "title": "\n".join(title),
            "flush": None if not fl or fl["start"] is None else {
                "x": x(fl["start"]), "w": max(x(fl["start"] + (fl["secs"] or 0))
                                              - x(fl["start"]), 2),
                "cls": "flush-failed" if fl["kind"] == "failed" else "flush"},
            "scavenge": None if not sc else {
                "x": x(sc["start"]), "w": max(x(sc["start"] + (sc["secs"] or 0))
                                              - x(sc["start"]), 2)},
            "restart": c["restarted_from"]})
    height = TOP + ROW_H * (len(rows) + 1) + AXIS_H
    axis_y = height - AXIS_H
    return {
        "jobid": alloc["jobid"], "width": LABEL_W + PLOT_W + 20, "height": height,
        "rows": [{"name": n, "y": TOP + ROW_H * (i + 1)} for i, n in enumerate(rows)],
        "ckpt_y": TOP, "row_h": ROW_H, "label_w": LABEL_W, "plot_w": PLOT_W,
        "axis_y": axis_y, "bars": bars, "markers": markers, "ticks": ticks,
        "halts": [{"x": x(h["time"]), "title": f"HALT {format_stamp(h['time'])}: "
                   f"{h['reason'] or ''}"} for h in halts],
        "idle": [{"x": x(g["start"]), "w": max(x(g["end"]) - x(g["start"]), 1),
                  "title": f"idle {format_secs(g['secs'])} between runs {g['between'][0]} "
                           f"and {g['between'][1]}"} for g in idle],
        "axis": [{"x": x(t), "label": format_stamp(t, alloc["start"])}
                 for t in _ticks(t0, t1)],
        "title": f"{format_stamp(alloc['start'])} to {format_stamp(alloc['end'], alloc['start'])}"
                 f" ({format_secs(alloc['end'] - alloc['start'])}), "
                 f"{len(runs)} run(s), nodes {nodes_text(alloc['nodes'])}",
    }


def render_html(report: dict[str, Any], title: Optional[str] = None) -> str:
    """The page for a report built by :func:`scr_core.report.build_report`."""
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("scr_core", "templates"),
        autoescape=jinja2.select_autoescape(default=True),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["stamp"] = format_stamp
    env.filters["secs"] = format_secs
    env.filters["size"] = format_size
    env.filters["nodes"] = nodes_text
    template = env.get_template("report.html.j2")
    from scr_core.report import format_text

    return template.render(
        report=report, title=title or f"SCR report: {report['prefix']}",
        timelines=[_timeline(report, a) for a in report["allocations"]],
        summary=format_text(report))
