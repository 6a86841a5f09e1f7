"""The README's main job, end to end: the demo's --quick run (as CI runs it), one run shared
by named tests; and the demo's plan and statistics, checked without training."""
import json

import pytest

LEARNED = ("AFNet RT=0.5", "AFNet RT=0.25", "AFNet RT=0.5 + saliency", "AFNet RT=0.25 + saliency")
ROWS = ["TSN", "AFNet RT=1.0", "AFNet RT=0.5", "AFNet RT=0.25", "AFNet uniform 0.5", "AFNet random 0.5",
        "AFNet RT=0.5 + saliency", "AFNet RT=0.25 + saliency", "AFNet uniform 0.25", "AFNet random 0.25"]


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """``afnet demo --quick`` run once: (output folder, results.json, what it printed)."""
    import contextlib
    import io

    from afnet.cli import main

    out = tmp_path_factory.mktemp("demo") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["demo", "--quick", "--out", str(out)]) == 0
    return out, json.loads((out / "results.json").read_text()), printed.getvalue()


@pytest.mark.slow
def test_every_row_and_its_variants_are_reported(quick):
    _, report, _ = quick
    labels = [r["label"] for r in report["runs"]]
    expected = []
    for label in ROWS:
        expected.append(label)
        if label in LEARNED:
            expected += [f"{label} uncalibrated", f"{label} static-k"]
    assert labels == expected
    assert [row["model"] for row in report["summary"]][:len(ROWS)] == ROWS
    assert report["accelerator"] == "cpu" and report["size"]["frames"] == 8


@pytest.mark.slow
def test_rows_report_their_cost_and_budget(quick):
    _, report, _ = quick
    runs = {r["label"]: r for r in report["runs"]}
    for run in report["runs"]:
        assert run["gflops_per_video"] > 0
        assert (run["latency_ms"] is None) == run["label"].endswith("static-k")
        assert round(run["top1"] * 24) == pytest.approx(run["top1"] * 24, abs=1e-6)   # a share of 24 videos
    tsn, uniform = runs["TSN"], runs["AFNet uniform 0.5"]
    assert tsn["kept_ratio"] is None and tsn["precision"] is None
    assert uniform["kept_ratio"] == pytest.approx(0.5)
    assert runs["AFNet random 0.25"]["kept_ratio"] == pytest.approx(0.25)
    assert uniform["gflops_per_video"] < tsn["gflops_per_video"]  # fewer focal frames computed
    for rt in ("0.5", "0.25"):
        for suffix in ("", " + saliency"):
            assert runs[f"AFNet RT={rt}{suffix} static-k"]["kept_ratio_per_point"] == [float(rt)] * 3


@pytest.mark.slow
def test_precision_is_measured_beside_the_evidence_rate(quick):
    _, report, _ = quick
    runs = {r["label"]: r for r in report["runs"]}
    rate = report["evidence_rate"]
    assert 2 / 8 <= rate <= 3 / 8
    for label in ("AFNet RT=1.0", *LEARNED, "AFNet uniform 0.5", "AFNet random 0.25"):
        assert 0.0 <= runs[label]["precision"] <= 1.0 and len(runs[label]["precision_per_point"]) == 3
    assert runs["AFNet RT=1.0"]["kept_ratio"] < 1.0 or runs["AFNet RT=1.0"]["precision"] == pytest.approx(rate)
    bars = {(b["model"]): b for b in report["precision_bars"]}
    assert set(bars) == {label for label in LEARNED} | {f"{label} static-k" for label in LEARNED}
    assert bars["AFNet RT=0.25"]["bar"] == 0.6 and bars["AFNet RT=0.5"]["bar"] == pytest.approx(1.6 * rate, abs=1e-3)


@pytest.mark.slow
def test_learned_rows_run_calibrated_and_start_from_the_pretrained_backbones(quick):
    _, report, _ = quick
    runs = {r["label"]: r for r in report["runs"]}
    assert sorted(p["model"] for p in report["pretraining"]) == ["af_resnet_small", "tsn_resnet_small"]
    for label in LEARNED:
        row, raw = runs[label], runs[f"{label} uncalibrated"]
        assert runs[f"{label} static-k"]["checkpoint"] == raw["checkpoint"]
        assert row["checkpoint"].endswith("calibrated.ckpt") and raw["checkpoint"].endswith("best.ckpt")
        assert row["checkpoint"].replace("calibrated.ckpt", "best.ckpt") == raw["checkpoint"]
    # the saliency rows train with the saliency term; the paper's rows without it
    out = quick[0]
    import yaml
    with_term = yaml.safe_load((out / "configs" / "af_resnet_small-navigation0.5-saliency-seed0.yaml").read_text())
    paper = yaml.safe_load((out / "configs" / "af_resnet_small-navigation0.5-seed0.yaml").read_text())
    assert with_term["objective"]["saliency_weight"] == 16.0 and with_term["objective"]["t_min"] == 1.0
    assert "saliency_weight" not in paper["objective"]


@pytest.mark.slow
def test_what_the_evidence_is_worth_to_each_learned_row(quick):
    from afnet import demo

    _, report, _ = quick
    runs = {r["label"]: r for r in report["runs"]}
    assert [(h["model"], h["seed"]) for h in report["headroom"]] == [(label, 0) for label in
                                                                     ("AFNet RT=0.5", "AFNet RT=0.25",
                                                                      "AFNet RT=0.5 + saliency",
                                                                      "AFNet RT=0.25 + saliency")]
    for h in report["headroom"]:
        assert set(demo.HEADROOM_POLICIES) <= set(h) and all(0.0 <= h[p] <= 1.0 for p in demo.HEADROOM_POLICIES)
        # its own choice is its top-1 again (through the inference model: one video of 24 may flip under bf16)
        assert h["own choice"] == pytest.approx(runs[h["model"]]["top1"], abs=1 / 24 + 1e-6)
    assert [w["model"] for w in report["evidence_worth"]] == [row["model"] for row in report["headroom_summary"]]


@pytest.mark.slow
def test_claims_table_and_figures(quick):
    out, report, printed = quick
    assert len(report["claims"]) == len(__import__("afnet.demo", fromlist=["CLAIMS"]).CLAIMS) == 16
    assert all(c["verdict"] == "undecided (one seed)" for c in report["claims"].values())
    table = (out / "table.md").read_text()
    assert "| AFNet RT=0.5 + saliency |" in table and "less is more" in table and "navigation precision" in table
    assert "| point 1 | point 2 | point 3 |" in table and "against the bars" in table
    assert "| model | own choice | evidence frames | as many other frames | no frame |" in table
    assert table in printed
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
    assert len(report["figures"]["explain_precision"]) == 3
    assert report["figures"]["kept_ratio_plots"]
    assert (out / "runs" / "af_resnet_small-navigation0.5-seed0" / "train.log").read_text().count("epoch ") == 2


def test_rows_are_dotted_overrides_read_by_the_config_loader(tmp_path):
    from afnet.demo import QUICK, RUNS, SPATIAL_RUNS, demo_config, demo_overrides
    from afnet.engine import load_config

    by = {r.label: r for r in RUNS + SPATIAL_RUNS}
    rt = by["AFNet RT=0.25 + saliency"]
    assert rt.learned_frames and not rt.learned_regions
    assert rt.setting("objective.target_ratio") == 0.25 and rt.setting("model.navigation_bias") == [0.0, 1.0]
    assert rt.setting("objective.saliency_weight") == 16.0 and rt.setting("no.such.key", "x") == "x"
    assert rt.slug() == "navigation0.25-saliency"
    assert by["TSN"].slug() == "all" and not by["TSN"].learned_frames
    assert by["AFNet RT=1.0"].slug() == "navigation1.0" and not by["AFNet RT=1.0"].learned_frames
    assert by["AFNet random regions 0.25"].slug() == "regions-random0.25"
    assert by["AFNet spatial navigation RS=0.25"].learned_regions
    region_saliency = by["AFNet spatial navigation RS=0.25 + region saliency"]
    assert region_saliency.learned_regions and region_saliency.slug() == "regions-navigation0.25-saliency"
    assert region_saliency.setting("objective.region_saliency_weight") == 16.0
    assert by["AFNet every region"].slug() == "all" and not by["AFNet every region"].learned_regions
    items = demo_overrides(tmp_path, tmp_path / "data", QUICK, 3, rt, "backbone.ckpt", "cpu")
    assert all("=" in item for item in items) and items[-len(rt.overrides):] == list(rt.overrides)
    cfg = load_config(demo_config(tmp_path, tmp_path / "data", QUICK, 3, rt, "backbone.ckpt"), resolve=False)
    assert cfg.seed == 3 and cfg.data.num_frames == QUICK.frames == 8
    assert cfg.objective.target_ratio == 0.25 and cfg.objective.saliency_weight == 16.0
    assert cfg.model.pretrained == "backbone.ckpt" and cfg.model.skip_classifier is True
    assert cfg.run_dir.endswith("af_resnet_small-navigation0.25-saliency-seed3")


def test_accelerator_auto_follows_the_device_torch_sees(monkeypatch):
    import torch

    from afnet.demo import accelerator

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert accelerator("auto") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert accelerator("auto") == "gpu" and accelerator("cpu") == "cpu"
    with pytest.raises(ValueError, match="accelerator='tpu'"):
        accelerator("tpu")


def test_precision_bars_count_a_row_only_on_its_budget():
    from afnet.demo import evidence_worth, precision_bars

    summary = [
        {"model": "AFNet RT=0.25", "precision": (0.7, 0.0), "kept_ratio": (0.26, 0.0)},
        {"model": "AFNet RT=0.25 + saliency", "precision": (0.9, 0.0), "kept_ratio": (0.12, 0.0)},  # off budget
        {"model": "AFNet RT=0.5 static-k", "precision": (0.45, 0.0), "kept_ratio": (0.5, 0.0)},
        {"model": "AFNet RT=0.5 uncalibrated", "precision": (0.9, 0.0), "kept_ratio": (0.5, 0.0)},   # not a row
        {"model": "AFNet uniform 0.5", "precision": (0.3, 0.0), "kept_ratio": (0.5, 0.0)},
        {"model": "TSN", "precision": (None, None), "kept_ratio": (None, None)},
    ]
    bars = {b["model"]: b for b in precision_bars(summary, 0.31)}
    assert set(bars) == {"AFNet RT=0.25", "AFNet RT=0.25 + saliency", "AFNet RT=0.5 static-k"}
    assert bars["AFNet RT=0.25"]["met"] and bars["AFNet RT=0.25"]["bar"] == 0.6
    assert not bars["AFNet RT=0.25 + saliency"]["met"] and not bars["AFNet RT=0.25 + saliency"]["on_budget"]
    assert bars["AFNet RT=0.5 static-k"]["bar"] == pytest.approx(0.496) and not bars["AFNet RT=0.5 static-k"]["met"]
    worth = evidence_worth([{"model": "m", "evidence frames": (0.98, 0.01), "as many other frames": (0.80, 0.02)},
                            {"model": "n", "evidence frames": (0.98, 0.01), "as many other frames": (0.90, 0.02)}])
    assert [(w["model"], w["met"]) for w in worth] == [("m", True), ("n", False)]
    assert worth[0]["gap"] == pytest.approx(0.18)


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
    nav, static_k, salient, salient_k, rnd, centre, every = report["runs"]
    assert [r["label"] for r in report["runs"]] == [
        "AFNet spatial navigation RS=0.25", "AFNet spatial navigation RS=0.25 static-k",
        "AFNet spatial navigation RS=0.25 + region saliency",
        "AFNet spatial navigation RS=0.25 + region saliency static-k",
        "AFNet random regions 0.25", "AFNet centre crop 0.25", "AFNet every region"]
    assert all(r["kept_ratio"] == pytest.approx(1.0) for r in report["runs"])  # Table 5: no temporal policy
    assert rnd["region_ratio"] == pytest.approx(0.25) and centre["region_ratio"] == pytest.approx(0.25)
    assert 0.0 <= nav["region_ratio"] <= 1.0 and every["region_ratio"] is None   # 2 tiny epochs: may collapse
    assert static_k["region_ratio"] == pytest.approx(0.25)   # the learned regions at exactly RS
    assert static_k["checkpoint"] == nav["checkpoint"] and salient_k["checkpoint"] == salient["checkpoint"]
    # region evidence: every spatial row measures its region precision per block (blind: 1 / 4)
    assert all(len(r["region_precision_per_point"]) == 3 for r in report["runs"][:-1])
    assert report["region_rate"] == pytest.approx(0.25)
    assert sorted(b["model"] for b in report["region_precision_bars"]) == sorted(r["label"] for r in report["runs"][:4])
    assert "static-k regions" in json.dumps(report["claims"])
    assert rnd["gflops_per_video"] == pytest.approx(centre["gflops_per_video"], rel=0.02)
    table = (out / "table.md").read_text()
    assert "spatial navigation beats random regions" in table and "| region precision |" in table
    assert "Region precision per spatial block" in table and "less is more in space" in table
    assert table in capsys.readouterr().out
    assert (out / "figures" / "explain_afnet.png").stat().st_size > 0
