"""``scr report`` (issue 23): reports built from logs of real runs -- the local demo with a
node crash, run here; a log written by the real libscr (tests/fixtures/real_libscr_log); a
Slurm lab job with a node crash and a relaunch -- whose numbers must match the log's records;
the HTML page opened in Debian's headless chromium; partial and unreadable inputs; the
``--json`` outputs of the other commands."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from scr_core.ckpt_interval import analyze, optimum_interval
from scr_core.control.index import IndexFile
from scr_core.report import build_report
from scr_core.scrlog import parse_file

HERE = Path(__file__).parent
REAL = HERE / "fixtures" / "real_libscr_log"
SCREENSHOT = HERE.parent / "docs" / "report-demo.png"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DEMO = [sys.executable, "-m", "scr_core.demo", "--step-seconds", "0.1", "--ckpt-every", "5",
        "--size-kb", "16"]


def scr(*args: str) -> list[str]:
    return [sys.executable, "-m", "scr_core", *args]


def clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_"))}
    env.update(PATH=os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", ""),
               HOME=str(tmp / "home"), SCR_RUN_SETTLE_SECONDS="1", **extra)
    return env


def records_of(prefix: Path, label: str, kind: str = "event") -> list:
    return [r for r in parse_file(str(prefix / ".scr" / "log"))
            if r.label == label and r.kind == kind]


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    """The local demo with a crash, as dev/demo runs it: 4 virtual nodes, vnode4 dies at
    step 12 (after ckpt.10), scr run relaunches on the 3 others, which resume and finish."""
    tmp = tmp_path_factory.mktemp("report-demo")
    prefix = tmp / "prefix"
    prefix.mkdir()
    env = clean_env(tmp, SCR_RUNS="3", SCR_MIN_NODES="3", SCR_LOG_ENABLE="1")
    r = subprocess.run(
        scr("local", "alloc", "-N", "4", "--", *scr("run", "local", "-N", "4", *DEMO,
                                                     "--steps", "30",
                                                     "--crash-node-at-step", "12")),
        env=env, cwd=prefix, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return prefix


# ------------------------------------------------------------------ numbers match the log


def test_demo_report_matches_the_log(demo):
    rep = build_report(str(demo))
    assert rep["schema"] == "scr.report/1" and rep["missing"] == []
    starts, ends = records_of(demo, "RUN_START"), records_of(demo, "RUN_END")
    node_fail = records_of(demo, "NODE_FAIL")
    ckpt_end = {r.dset: r for r in records_of(demo, "CHECKPOINT_END")}
    xfer = {r.dset: r for r in records_of(demo, "CHECKPOINT", "xfer")}
    flush = {r.dset: r for r in records_of(demo, "FLUSH_SYNC", "xfer")}

    (alloc,) = rep["allocations"]
    assert alloc["nodes"] == ["vnode1", "vnode2", "vnode3", "vnode4"]
    assert alloc["runs"] == [1, 2] and alloc["jobid"] == starts[0].jobid
    r1, r2 = rep["runs"]
    assert (r1["start"], r1["end"], r1["exit_code"]) == (starts[0].time, ends[0].time, 137)
    assert (r2["start"], r2["end"], r2["exit_code"]) == (starts[1].time, ends[1].time, 0)
    assert r1["nodes"] == ["vnode1", "vnode2", "vnode3", "vnode4"] and r1["procs"] == 4
    assert r2["nodes"] == ["vnode1", "vnode2", "vnode3"] and r2["procs"] == 3
    assert r1["outcome"] == "failed" and r2["outcome"] == "halted"
    assert r2["restart"]["dset"] == 10 and r2["restart"]["ok"]

    (fail,) = rep["failures"]
    (node,) = fail["nodes"]
    assert node == {"node": "vnode4",
                    "reason": "step watch, resource manager: Not responding (node crashed)",
                    "found_by": "step watch", "detected": node_fail[0].time,
                    "jobid": starts[0].jobid}
    assert fail["run"] == 1 and fail["time"] == ends[0].time
    assert fail["last_checkpoint"] == {"dset": 10, "name": "ckpt.10",
                                       "time": ckpt_end[10].time}
    assert fail["relaunch"] == starts[1].time and fail["relaunch_run"] == 2
    assert fail["lost_secs"] == pytest.approx(starts[1].time - ckpt_end[10].time)

    ckpts = {c["dset"]: c for c in rep["checkpoints"]}
    sizes = {e.id: e.dataset.size for e in IndexFile(demo).entries()}
    assert sorted(ckpts) == [5, 10, 15, 20, 25, 30]
    for dset, c in ckpts.items():
        assert c["end"] == ckpt_end[dset].time and c["secs"] == ckpt_end[dset].secs
        assert c["bytes"] == xfer[dset].bytes and c["files"] == (4 if dset <= 10 else 3)
        assert c["flush"]["secs"] == flush[dset].secs and c["flush"]["kind"] == "sync"
        assert c["flush"]["bandwidth"] == pytest.approx(flush[dset].bytes / flush[dset].secs)
        assert c["index"]["valid"] and c["run"] == (1 if dset <= 10 else 2)
        assert c["bytes"] == sizes[dset] > 16 * 1024 * c["files"]  # the index agrees
    assert ckpts[30]["index"]["current"] and ckpts[10]["restarted_from"]
    # no settle pause after the step watch's kill (issue 17): the gap may round to nothing
    idle = [(i["start"], i["end"]) for i in rep["idle"]][:1]
    assert idle == ([] if ends[0].time == starts[1].time else [(ends[0].time, starts[1].time)])
    assert "finished" in rep["end"]["reason"]

    stats = analyze(parse_file(str(demo / ".scr" / "log")))
    assert rep["interval"]["daly"] == optimum_interval(stats, "daly")
    assert rep["interval"]["young"] == optimum_interval(stats, "young")
    assert rep["interval"]["failures"] == 1


def test_real_libscr_log(tmp_path):
    """SCR v3.1.0's own lines: no RUN_START/RUN_END (runs begin at START), run 1 killed, run 2
    restarted from the cached ckpt.6 (RESTART_SUCCESS) and finalized."""
    rep = build_report(str(REAL))
    assert rep["missing"] == []
    log = parse_file(str(REAL / ".scr" / "log"))
    starts = [r for r in log if r.label == "START"]
    ends = {}
    for r in log:
        if r.label == "CHECKPOINT_END":
            ends.setdefault(r.dset, []).append(r)
    r1, r2 = rep["runs"]
    assert (r1["start"], r2["start"]) == (starts[0].time, starts[1].time)
    assert r1["nodes"] == r2["nodes"] == ["vm"] and r1["procs"] == 2
    assert r1["outcome"] == "failed" and not r1["end_logged"] and r1["exit_code"] is None
    assert r2["halt_reason"] == "SCR_FINALIZE_CALLED" and r2["restart"]["dset"] == 6
    (fail,) = rep["failures"]
    assert fail["nodes"] == [] and fail["last_checkpoint"]["name"] == "ckpt.6"
    assert fail["lost_secs"] == starts[1].time - ends[6][0].time
    ckpts = rep["checkpoints"]
    assert [c["dset"] for c in ckpts] == [1, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10]
    assert all(c["bytes"] == 524303.0 and c["files"] == 2 for c in ckpts)
    flushed = {c["dset"]: c["flush"]["secs"] for c in ckpts if c["flush"]}
    assert flushed == {2: 0.010672, 4: 0.008188, 6: 0.008034, 8: 0.009205, 10: 0.008597}
    assert [c["dset"] for c in ckpts if c["index"] and c["index"]["valid"]] == [2, 4, 6, 8, 10]
    assert next(c for c in ckpts if c["dset"] == 6)["restarted_from"]
    assert next(c for c in ckpts if c["dset"] == 10)["index"]["current"]
    assert [h["reason"] for h in rep["halts"]] == ["SCR_FINALIZE_CALLED"]
    assert "finished" in rep["end"]["reason"]
    assert rep["interval"]["daly"] is not None


def test_two_allocations_scavenge_down_at_start_and_a_halt(tmp_path):
    """Lines as scr run, scavenge and libscr write them (ScrLog), over two allocations."""
    from scr_core.scrlog import ScrLog

    t = 1_800_000_000
    a = ScrLog(str(tmp_path), "100", host="n1")
    a.event("NODE_FAIL", note="n9: User excluded via SCR_EXCLUDE_NODES", secs=0, start=t)
    a.event("RUN_START", note="run=1 nodes=n[1-2]", start=t)
    a.start(procs=2, nodes=2, start=t + 1)
    a.event("CHECKPOINT_START", dset=1, name="ckpt.1", start=t + 100)
    a.event("CHECKPOINT_END", dset=1, name="ckpt.1", secs=4.0, start=t + 104)
    a.transfer("CHECKPOINT", dset=1, name="ckpt.1", secs=4.0, bytes=8e9, files=2, start=t + 100)
    a.event("RUN_END", note="run=1 rc=1", secs=200, start=t + 200)
    a.event("NODE_FAIL", note="n2: Not responding", secs=0, start=t + 201)
    a.event("SCAVENGE_START", dset=1, name="ckpt.1", start=t + 201)
    a.event("SCAVENGE_END", dset=1, name="ckpt.1", secs=9.5, start=t + 211)
    b = ScrLog(str(tmp_path), "200", host="n5")
    b.event("RUN_START", note="run=1 nodes=n[5-6]", start=t + 1000)
    b.event("NODE_FAIL", note="n6: Failed to ping", secs=0, start=t + 1400)
    b.event("RUN_END", note="run=1 rc=137", secs=390, start=t + 1390)
    b.event("HALT", note="no runs left", start=t + 1401)

    rep = build_report(str(tmp_path))
    assert [x["jobid"] for x in rep["allocations"]] == ["100", "200"]
    assert rep["allocations"][0]["nodes"] == ["n1", "n2", "n9"]  # n9 excluded at start
    assert rep["allocations"][1]["nodes"] == ["n5", "n6"]
    (down,) = rep["nodes_down_at_start"]
    assert down["node"] == "n9" and down["found_by"] == "excluded by the user"
    assert down["before_run"] == 1
    f1, f2 = rep["failures"]
    assert f1["run"] == 1 and f1["cause"] == "node failure: n2" and f1["exit_code"] == 1
    assert f1["nodes"][0]["found_by"] == "resource manager"
    assert f1["relaunch_run"] == 2 and not f1["same_allocation"]
    assert f1["lost_secs"] == 1000 - 104  # from ckpt.1 to the next allocation's run
    assert f2["nodes"][0]["node"] == "n6" and f2["nodes"][0]["found_by"] == "node test"
    assert f2["relaunch"] is None and f2["lost_secs"] == 1390 - 104
    (c,) = rep["checkpoints"]
    assert c["scavenge"] == {"start": t + 201, "secs": 9.5} and c["bandwidth"] == 2e9
    assert "stopped by a halt condition after run 2: no runs left" in rep["end"]["reason"]
    assert rep["interval"]["used"] is None and rep["interval"]["failures"] == 2
    assert [r["outcome"] for r in rep["runs"]] == ["failed", "failed"]


# ------------------------------------------------------------------------- the command


def test_cli_text_and_json(demo, tmp_path):
    env = clean_env(tmp_path)
    r = subprocess.run(scr("report", "--prefix", str(demo)), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert re.search(r"^  1 .* 137 .*vnode\[1-4\] .*failed$", out, re.M), out
    assert ("vnode4: step watch, resource manager: Not responding (node crashed) "
            "(found by step watch") in out
    assert re.search(r"time lost .*: from ckpt\.10 \(.*\) to the relaunch \(run 2", out), out
    assert "Why the job ended: the application finished" in out
    assert re.search(r"Recommended \(from 1 observed failure\(s\)\): Daly", out), out
    r = subprocess.run(scr("report", "--json"), env=dict(env, SCR_PREFIX=str(demo)),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rep = json.loads(r.stdout)
    assert rep["schema"] == "scr.report/1" and len(rep["runs"]) == 2
    r = subprocess.run(scr("report", "--prefix", str(tmp_path)), env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and "no .scr directory" in r.stderr


def test_partial_and_unreadable_inputs_give_what_is_known(demo, tmp_path):
    prefix = tmp_path / "p"
    shutil.copytree(demo, prefix)
    log = prefix / ".scr" / "log"
    text = log.read_text()
    cut = text.index("event=RUN_END")  # the log torn in the middle of run 1's end
    log.write_text(text[:cut] + "\nnot an SCR line\n" + text[cut + 20:])
    (prefix / ".scr" / "index.scr").write_bytes(b"garbage, not a kvtree")
    (prefix / ".scr" / "halt.scr").write_bytes(b"garbage, not a kvtree either")
    env = clean_env(tmp_path)
    r = subprocess.run(scr("report", "--json", "-p", str(prefix)), env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rep = json.loads(r.stdout)
    missing = " ".join(rep["missing"])
    assert "line(s) of the SCR log are not SCR records" in missing
    assert "index file" in missing and rep["sources"]["index"]["state"] == "unreadable"
    assert "halt file" in missing and rep["sources"]["halt"]["state"] == "unreadable"
    assert rep["halt_file"] is None  # a corrupt halt file is not read as "no halt"
    assert len(rep["runs"]) == 2 and rep["checkpoints"]  # the rest still reported
    log.unlink()
    log.mkdir()  # unreadable as a file (root reads any file whatever its mode)
    r = subprocess.run(scr("report", "-p", str(prefix)), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert re.search(r"^Missing: the SCR log .* cannot be read", r.stdout, re.M), r.stdout
    assert "Checkpoints and outputs: 0 written" in r.stdout  # nothing invented
    shutil.rmtree(log)
    rep = build_report(str(prefix))
    assert rep["sources"]["log"]["state"] == "missing" and rep["runs"] == []
    assert {c["dset"] for c in rep["checkpoints"]} == {5, 10, 15, 20, 25, 30}  # flush file


def test_any_cut_or_shuffle_of_a_real_log_gives_a_report(tmp_path):
    """Torn, reordered, duplicated or foreign lines: a report and a page, never an exception."""
    import random

    from scr_core.report import format_text
    from scr_core.report_html import render_html

    lines = (REAL / ".scr" / "log").read_text().splitlines(keepends=True)
    rng = random.Random(23)
    (tmp_path / ".scr").mkdir()
    for trial in range(25):
        picked = lines[:]
        if trial % 3 == 0:
            rng.shuffle(picked)
        picked = picked[rng.randrange(len(picked)):] if trial % 2 else picked
        text = "".join(picked)
        cut = rng.randrange(len(text) + 1)
        text = text[:cut] + rng.choice(["", "\x00garbage\n", "2026-13-40T99:00:00: x=1\n"])
        (tmp_path / ".scr" / "log").write_text(text)
        rep = build_report(str(tmp_path))
        json.dumps(rep)
        assert format_text(rep) and "</html>" in render_html(rep)


def test_html_without_the_optional_extra_is_one_line_and_code_7(demo, tmp_path):
    page = str(tmp_path / "r.html")
    code = ("import sys; sys.modules['jinja2'] = None\n"
            "from scr_core.cli.main import main\n"
            f"sys.exit(main(['report', '-p', {str(demo)!r}, '--html', {page!r}]))")
    r = subprocess.run([sys.executable, "-c", code], env=clean_env(tmp_path),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 7, r.stderr
    assert r.stderr.count("\n") == 1 and "pip install 'scr-core[report]'" in r.stderr
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------- the page, in a browser


@pytest.fixture(scope="module")
def browser():
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        if os.environ.get("CI") == "true":
            pytest.fail("Debian's chromium and chromium-driver are missing "
                        "(dev/setup installs them)")
        pytest.skip("chromium/chromium-driver not installed (dev/setup installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--window-size=1200,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    yield driver
    driver.quit()


def open_report(browser, prefix: Path, page: Path) -> dict:
    r = subprocess.run(scr("report", "-p", str(prefix), "--html", str(page)),
                       env=clean_env(page.parent), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"HTML report: {page}" in r.stdout
    html = page.read_text()
    # self-contained: no address to fetch anything from (the SVG namespace is a name)
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)|@import|url\(\s*["']?http""",
                         html)
    browser.get(page.as_uri())
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert errors == [], errors
    return json.loads(browser.find_element("id", "report-data").get_attribute("textContent"))


def shapes(browser, css: str) -> list[dict]:
    return [{k: e.get_attribute(f"data-{k}") for k in ("run", "node", "dset")}
            for e in browser.find_elements("css selector", css)]


def test_demo_page_in_chromium(browser, demo, tmp_path):
    rep = open_report(browser, demo, tmp_path / "report.html")
    (svg,) = browser.find_elements("css selector", "svg.timeline")
    assert svg.size["width"] > 500 and svg.size["height"] > 100
    bars = shapes(browser, "svg rect.run")
    want = {(str(r["id"]), n) for r in rep["runs"] for n in r["nodes"]}
    assert {(b["run"], b["node"]) for b in bars} == want and len(bars) == 7
    marks = shapes(browser, "svg path.failure")
    assert [(m["run"], m["node"]) for m in marks] == [("1", "vnode4")]
    ticks = {t["dset"] for t in shapes(browser, "svg line.tick")}
    assert ticks == {str(c["dset"]) for c in rep["checkpoints"]}
    rows = browser.find_elements("css selector", "#runs tr[data-run]")
    assert [r.get_attribute("data-run") for r in rows] == ["1", "2"]
    assert "vnode4" in browser.find_element("id", "failures").text
    # hover text: the failure marker's <title>
    title = browser.find_element("css selector", "svg path.failure title")
    assert "Not responding (node crashed)" in title.get_attribute("textContent")
    if os.environ.get("SCR_UPDATE_SCREENSHOT") == "1":  # refresh docs/report-demo.png
        browser.set_window_size(1200, 900)
        browser.save_screenshot(str(SCREENSHOT))


def test_real_libscr_page_in_chromium(browser, tmp_path):
    rep = open_report(browser, REAL, tmp_path / "real.html")
    bars = shapes(browser, "svg rect.run")
    assert [(b["run"], b["node"]) for b in bars] == [("1", "vm"), ("2", "vm")]
    marks = shapes(browser, "svg path.failure")
    assert [(m["run"], m["node"]) for m in marks] == [("1", "vm")]
    assert len(shapes(browser, "svg line.tick")) == len(rep["checkpoints"]) == 11
    assert len(browser.find_elements("css selector", "svg line.halt")) == 1


# ----------------------------------------------------------- --json of the other commands


def test_json_of_index_halt_down_nodes_and_should_exit(demo, tmp_path):
    env = clean_env(tmp_path, SCR_PREFIX=str(demo))
    r = subprocess.run(scr("index", "--list", "--json"), env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    idx = json.loads(r.stdout)
    assert idx["schema"] == "scr.index/1" and idx["current"] == "ckpt.30"
    assert [d["id"] for d in idx["datasets"]] == [30, 25, 20, 15, 10, 5]
    assert all(d["valid"] and d["checkpoint"] for d in idx["datasets"])
    r = subprocess.run(scr("halt", "--list", "--json"), env=env, capture_output=True,
                       text=True, timeout=60)
    (hf,) = json.loads(r.stdout)["halt_files"]
    assert hf["exit_reason"] == "SCR_FINALIZE_CALLED" and hf["exists"]
    r = subprocess.run(scr("halt", "--json"), env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "--json goes with --list" in r.stderr
    script = ("scr local crash vnode3 >/dev/null; scr list-down-nodes --reason --json; "
              "scr should-exit --json --min-nodes 3; echo rc=$?; "
              "scr should-exit --json --min-nodes 2; echo rc=$?")
    r = subprocess.run(scr("local", "alloc", "-N", "3", "--", "sh", "-c", script),
                       env=clean_env(tmp_path), cwd=tmp_path, capture_output=True, text=True,
                       timeout=120)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith(("{", "rc="))]
    down, stop, rc_stop, go, rc_go = lines
    assert json.loads(down) == {"schema": "scr.down-nodes/1", "hostlist": "vnode3",
                                "down": [{"node": "vnode3",
                                          "reason": "Not responding (node crashed)"}]}
    stop = json.loads(stop)
    assert stop["schema"] == "scr.should-exit/1" and stop["stop"] and stop["kind"] == "nodes"
    assert stop["exit_code"] == 0 and rc_stop == "rc=0" and "2 healthy" in stop["reason"]
    go = json.loads(go)
    assert not go["stop"] and go["exit_code"] == 1 and rc_go == "rc=1"


# ---------------------------------------------------------------------------- Slurm lab


@pytest.mark.slurm
def test_slurm_node_crash_and_relaunch_report(slurm, tmp_path):
    """A real sbatch job on 3 of the lab's nodes: the last one crashes after the first
    checkpoint, scr run relaunches on the other two, which resume; the report names the runs,
    their nodes and the failure as the log has them."""
    from scr_core.hostlist import expand
    from test_slurm_scr_run import env_lines, exit_code, finish, submit, wait_file

    py = sys.executable
    prefix = tmp_path / "prefix"
    prefix.mkdir()
    body = (env_lines(prefix, SCR_RUNS="3", SCR_MIN_NODES="2", SCR_LOG_ENABLE="1") +
            f"{py} -m scr_core run srun -N3 {py} -m scr_core.demo --step-seconds 0.1 "
            "--ckpt-every 10 --size-kb 4 --steps 150\n"
            "echo SCR_RUN_EXIT=$?\n")
    jid, out = submit(slurm, tmp_path, body, "-N3", "-t", "10", name="report")
    wait_file(prefix / ".scr" / "index.scr", 90, "the first checkpoint")
    (first,) = records_of(prefix, "RUN_START")
    nodes = expand(re.search(r"nodes=(\S+)", first.note).group(1))
    assert len(nodes) == 3, first.note
    victim = nodes[-1]
    slurm.lab("crash", victim)
    text = finish(slurm, jid, out)
    assert exit_code(text) == 0, text
    rep = build_report(str(prefix))
    starts, ends = records_of(prefix, "RUN_START"), records_of(prefix, "RUN_END")
    (alloc,) = rep["allocations"]
    assert alloc["jobid"] == jid and alloc["nodes"] == nodes
    r1, r2 = rep["runs"]
    assert r1["nodes"] == nodes and r2["nodes"] == nodes[:2]
    assert (r1["start"], r1["end"]) == (starts[0].time, ends[0].time)
    assert r1["exit_code"] != 0 and r2["exit_code"] == 0 and r2["start"] == starts[1].time
    (fail,) = rep["failures"]
    (node,) = fail["nodes"]
    # the step watch's ping finds the crash before Slurm does (issue 17)
    assert node["node"] == victim and node["found_by"] == "step watch", node
    assert "failed to ping" in node["reason"].lower()
    assert node["detected"] == records_of(prefix, "NODE_FAIL")[0].time
    point = fail["last_checkpoint"]
    restart = records_of(prefix, "RESTART_SUCCESS")[0].dset
    assert point["dset"] == restart
    ckpt_end = {r.dset: r.time for r in records_of(prefix, "CHECKPOINT_END")}
    assert fail["lost_secs"] == pytest.approx(starts[1].time - ckpt_end[restart])
    assert "finished" in rep["end"]["reason"]
    # (a checkpoint the crash cut short is known from the flush file only)
    assert set(ckpt_end) <= {c["dset"] for c in rep["checkpoints"]}
    assert all(rep_c["end"] == ckpt_end[rep_c["dset"]] for rep_c in rep["checkpoints"]
               if rep_c["dset"] in ckpt_end)
