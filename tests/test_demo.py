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
