"""The scaling benchmark (scripts/bench_scaling.py): its memory plan against hand counts, and its report."""

from scripts import bench_scaling as bench


def test_memory_plan_counts_by_hand():
    plan = bench.memory_plan()
    assert plan["gtp"]["A_bytes"] == 1_000_000 * 8192 * 4 and plan["gtp"]["per_device"]["8"] == 4_096_000_000
    e = plan["ekfac"]
    # q, k, v, o [2048, 2048] and the MLP's [2048, 8192], [8192, 2048], 24 layers
    assert e["dense_parameters"] == 24 * (4 * 2048 * 2048 + 2 * 2048 * 8192)
    attention = 2 * 2049**2 + 2 * 2048**2 + 2049 * 2048          # A, Q_A, G, Q_G, S of one q/k/v/o layer
    up, down = 2 * 2049**2 + 2 * 8192**2 + 2049 * 8192, 2 * 8193**2 + 2 * 2048**2 + 8193 * 2048
    assert e["factor_bytes_per_layer"] == 4 * (4 * attention + up + down)
    assert e["factor_bytes"] == 24 * e["factor_bytes_per_layer"] == e["per_device"]["1"]
    assert e["largest_dense_factor_bytes"] == 4 * down
    # whole factor sets on devices: never below an even share, never above it by more than the largest set
    for m in (8, 16, 64):
        share = e["factor_bytes"] / m
        assert share <= e["per_device"][str(m)] <= share + e["largest_dense_factor_bytes"]


def test_report_gives_ratios_to_one_device():
    stage = lambda s, b: {"seconds": s, "bytes": b}  # noqa: E731
    runs = {"1 device": {k: stage(1.0, 800) for k in bench.STAGES},
            "8 devices": {k: stage(2.5, 100) for k in bench.STAGES}}
    text = bench.report({"setup": {"n": 1024, "command": "python scripts/bench_scaling.py --quick", "machine": "x"},
                         "runs": runs, "memory_plan": bench.memory_plan()})
    assert "| bads | 8 devices | 2.500 | 2.50 | 100 | 0.125 |" in text
    assert "| pursuit | 1 device | 1.000 | 1.00 | 800 | 1.000 |" in text
    assert "32.8 GB" in text and "python scripts/bench_scaling.py --quick" in text
