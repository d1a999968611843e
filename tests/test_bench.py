"""bench/run.py --quick runs every benchmark and prints its table (no timing asserts)."""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_quick_runs_and_prints_a_table(tmp_path):
    out_json = tmp_path / "bench.json"
    env = dict(os.environ)
    for name in list(env):
        if name.startswith(("SCR_", "SLURM_", "LSB_", "FLUX_")):
            del env[name]
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "run.py"), "--quick", "--json",
         str(out_json)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    header = [i for i, line in enumerate(lines) if line.split()[:3] == ["benchmark", "case",
                                                                         "ours"]]
    assert header, proc.stdout[-3000:]
    assert set(lines[header[0] + 1]) <= {"-", " "}
    assert out_json.exists()
    for name in ("startup", "relaunch", "hostlist", "kvtree"):
        assert any(line.startswith(name + " ") for line in lines), name
