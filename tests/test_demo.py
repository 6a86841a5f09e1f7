"""The README's main job, end to end: the demo's --quick run (as CI runs it)."""
import json

import pytest


@pytest.mark.slow
def test_quick_demo_writes_table_json_and_figures(tmp_path, capsys):
    from afnet import demo
    from afnet.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert [r["label"] for r in report["runs"]] == [
        "TSN", "AFNet RT=1.0", "AFNet RT=0.5", "AFNet RT=0.5 uncalibrated", "AFNet RT=0.5 static-k", "AFNet RT=0.25",
        "AFNet RT=0.25 uncalibrated", "AFNet RT=0.25 static-k", "AFNet uniform 0.5", "AFNet random 0.5"]
    runs = {r["label"]: r for r in report["runs"]}
    for run in report["runs"]:
        assert run["gflops_per_video"] > 0
        assert (run["latency_ms"] is None) == run["label"].endswith("static-k")
        # top-1 is a share of the 24 validation videos
        assert round(run["top1"] * 24) == pytest.approx(run["top1"] * 24, abs=1e-6)
    tsn, uniform = runs["TSN"], runs["AFNet uniform 0.5"]
    assert tsn["kept_ratio"] is None and tsn["precision"] is None
    assert uniform["kept_ratio"] == pytest.approx(0.5) and len(uniform["precision_per_point"]) == 3
    assert uniform["gflops_per_video"] < tsn["gflops_per_video"]  # fewer focal frames computed
    # every model with navigation points reports its precision beside the evidence rate
    rate = report["evidence_rate"]
    assert 2 / 8 <= rate <= 3 / 8
    for label in ("AFNet RT=1.0", "AFNet RT=0.5", "AFNet uniform 0.5", "AFNet random 0.5"):
        assert 0.0 <= runs[label]["precision"] <= 1.0
    assert runs["AFNet RT=1.0"]["kept_ratio"] < 1.0 or runs["AFNet RT=1.0"]["precision"] == pytest.approx(rate)
    # the pre-training stage ran for both backbones, and the video models started from it
    assert sorted(p["model"] for p in report["pretraining"]) == ["af_resnet_small", "tsn_resnet_small"]
    # static-k: the trained RT checkpoint keeping exactly round(RT * 8) frames per video and point
    assert runs["AFNet RT=0.5 static-k"]["checkpoint"] == runs["AFNet RT=0.5 uncalibrated"]["checkpoint"]
    assert runs["AFNet RT=0.5 static-k"]["kept_ratio_per_point"] == [0.5] * 3
    assert runs["AFNet RT=0.25 static-k"]["kept_ratio_per_point"] == [0.25] * 3
    # a learned-RT row runs its threshold calibrated on the training videos (written beside the run's
    # best checkpoint); the threshold as trained is the "uncalibrated" variant
    for rt in ("0.5", "0.25"):
        row, raw = runs[f"AFNet RT={rt}"], runs[f"AFNet RT={rt} uncalibrated"]
        assert row["checkpoint"].endswith("calibrated.ckpt") and raw["checkpoint"].endswith("best.ckpt")
        assert row["checkpoint"].replace("calibrated.ckpt", "best.ckpt") == raw["checkpoint"]
        assert row["kept_ratio"] is not None and raw["kept_ratio"] is not None
    # what the evidence frames are worth to each learned-RT checkpoint; its own choice is its top-1
    # again (through the inference model: one video of 24 may flip where bf16 autocast is on)
    assert [(h["model"], h["seed"]) for h in report["headroom"]] == [("AFNet RT=0.5", 0), ("AFNet RT=0.25", 0)]
    for h in report["headroom"]:
        assert set(demo.HEADROOM_POLICIES) <= set(h) and all(0.0 <= h[p] <= 1.0 for p in demo.HEADROOM_POLICIES)
        assert h["own choice"] == pytest.approx(runs[h["model"]]["top1"], abs=1 / 24 + 1e-6)
    assert [row["model"] for row in report["headroom_summary"]] == ["AFNet RT=0.5", "AFNet RT=0.25"]
    assert "claims" in report and len(report["claims"]) == 8
    assert all(c["verdict"] == "undecided (one seed)" for c in report["claims"].values())
    table = (out / "table.md").read_text()
    assert "| AFNet RT=0.5 |" in table and "less is more" in table and "navigation precision" in table
    assert "| point 1 | point 2 | point 3 |" in table
    assert "| model | own choice | evidence frames | as many other frames | no frame |" in table
    assert table in capsys.readouterr().out
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
    assert len(report["figures"]["explain_precision"]) == 3
    assert report["figures"]["kept_ratio_plots"]
    assert (out / "runs" / "af_resnet_small-navigation0.5-seed0" / "train.log").read_text().count("epoch ") == 2


def test_verdicts_from_means_and_seed_spread():
    from afnet.demo import verdict

    assert verdict((0.80, 0.01), (0.70, 0.01), 3)["verdict"] == "supported"
    assert verdict((0.70, 0.01), (0.80, 0.01), 3)["verdict"] == "refuted"
    v = verdict((0.80, 0.05), (0.75, 0.05), 3)    # 5 points, standard error 4.1: within 2 standard errors
    assert v == {"difference_points": 5.0, "standard_error_points": 4.08, "verdict": "undecided"}
    assert verdict((0.80, 0.0), (0.70, 0.0), 1)["verdict"] == "undecided (one seed)"


@pytest.mark.slow
def test_quick_spatial_demo_compares_region_policies(tmp_path, capsys):
    """``afnet demo --spatial``: Table 5's spatial rows at small scale, every frame kept."""
    from afnet.cli import main

    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--spatial", "--out", str(out)]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["spatial"] is True
    nav, static_k, rnd, centre = report["runs"]
    assert [r["label"] for r in report["runs"]] == ["AFNet spatial navigation RS=0.5",
                                                     "AFNet spatial navigation RS=0.5 static-k",
                                                     "AFNet random regions 0.5", "AFNet centre crop 0.5"]
    assert all(r["kept_ratio"] == pytest.approx(1.0) for r in report["runs"])  # Table 5: no temporal policy
    assert rnd["region_ratio"] == pytest.approx(0.5) and centre["region_ratio"] == pytest.approx(0.5)
    assert 0.0 < nav["region_ratio"] <= 1.0
    assert static_k["region_ratio"] == pytest.approx(0.5)   # the learned regions at exactly RS
    assert static_k["checkpoint"] == nav["checkpoint"]
    assert "static-k regions" in json.dumps(report["claims"])
    assert rnd["gflops_per_video"] == pytest.approx(centre["gflops_per_video"], rel=0.02)
    table = (out / "table.md").read_text()
    assert "spatial navigation beats random regions" in table and "| region ratio |" in table
    assert table in capsys.readouterr().out
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
