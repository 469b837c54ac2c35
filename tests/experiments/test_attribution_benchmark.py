"""The attribution benchmark's smoke run: tiny MNIST split, the MLP, gradient dot products; checks the report
and the figure it writes."""

import json

import pytest

from experiments import attribution_benchmark
from jdps.data.catalogue import entry


@pytest.mark.slow
def test_smoke_run_writes_the_table_and_the_figure(tmp_path):
    if not entry("mnist_5k").is_installed():
        pytest.skip("mnist_5k is not installed (jdps install mnist_5k)")
    out = tmp_path / "ab"
    assert attribution_benchmark.main(["--smoke", "--datasets", "mnist_5k", "--models", "mlp", "--methods",
                                       "grad_dot", "--out", str(out)]) == 0
    payload = json.loads(out.with_suffix(".json").read_text())
    records = {r["method"]: r for r in payload["records"]}
    assert sorted(records) == ["grad_dot"]
    r = records["grad_dot"]
    assert -1 <= r["lds"] <= 1 and r["se"] > 0 and r["queries"] == attribution_benchmark.SMOKE.n_query
    assert "| grad_dot |" in out.with_suffix(".md").read_text()
    assert (tmp_path / "ab.png").read_bytes()[:4] == b"\x89PNG"
