"""scripts/device_check.sh in its CPU smoke mode: a step runs under its limit, and the summary names the device
and reads the goal's figure from the benchmark's file."""

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cpu_smoke_writes_the_summary_with_the_device_named(tmp_path):
    env = {**os.environ, "STEPS": "sklearn,summary", "DEVICE_RESULTS": str(tmp_path), "OUT": ""}
    done = subprocess.run(["bash", "scripts/device_check.sh", "--cpu-smoke"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = (tmp_path / "steps.tsv").read_text().splitlines()
    assert [row.split("\t")[:2] for row in steps] == [["sklearn", "ok"]]
    text = (tmp_path / "device_check.md").read_text()
    assert text.startswith("# Device check on cpu (CPU smoke run: no GPU figures)")
    assert "| sklearn | ok |" in text
    speed = re.search(r"OMP >= 10x faster than scikit-learn's \(N = 2,000, Td = 64, k = 8\): ([0-9.]+)x", text)
    assert speed and float(speed.group(1)) > 0
    assert "BADS step / SGD step: not measured" in text      # a step not run is said so, not invented
