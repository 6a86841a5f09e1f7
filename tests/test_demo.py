"""The README's main job, end to end: the demo's --quick run (as CI runs it)."""
import json

import pytest


@pytest.mark.slow
def test_quick_demo_writes_table_json_and_figures(tmp_path, capsys):
    from afnet.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in report["runs"]] == ["TSN", "AFNet RT=0.5", "AFNet uniform 0.5"]
    for run in report["runs"]:
        assert 0.0 <= run["top1"] <= 1.0 and run["gflops_per_video"] > 0 and run["latency_ms"] > 0
    tsn, af, uniform = report["runs"]
    assert tsn["kept_ratio"] is None and af["kept_ratio_per_point"] and uniform["kept_ratio"] == pytest.approx(0.5)
    assert uniform["gflops_per_video"] < tsn["gflops_per_video"]  # fewer focal frames computed
    table = (out / "table.md").read_text()
    assert "| AFNet RT=0.5 |" in table and "less_is_more" in table and "points top-1" in table
    assert table in capsys.readouterr().out
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
    assert report["figures"]["kept_ratio_plots"]


@pytest.mark.slow
def test_quick_spatial_demo_compares_region_policies(tmp_path, capsys):
    """``afnet demo --spatial``: Table 5's spatial rows at small scale, every frame kept."""
    from afnet.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--spatial", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["spatial"] is True
    nav, rnd, centre = report["runs"]
    assert [r["label"] for r in report["runs"]] == ["AFNet spatial navigation RS=0.5", "AFNet random regions 0.5",
                                                     "AFNet centre crop 0.5"]
    assert all(r["kept_ratio"] == pytest.approx(1.0) for r in report["runs"])  # Table 5: no temporal policy
    assert rnd["region_ratio"] == pytest.approx(0.5) and centre["region_ratio"] == pytest.approx(0.5)
    assert 0.0 < nav["region_ratio"] <= 1.0
    assert rnd["gflops_per_video"] == pytest.approx(centre["gflops_per_video"], rel=0.02)
    table = (out / "table.md").read_text()
    assert "spatial_navigation_beats_random" in table and "| region ratio |" in table
    assert table in capsys.readouterr().out
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
