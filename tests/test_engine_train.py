"""Training on the synthetic dataset: the API the demo calls, checkpoints, fine-tuning, NaN stop."""
import csv
import json

import pytest
import torch

import afnet
from afnet.checkpoint import read_checkpoint
from afnet.engine import ConfigError, evaluate, load_config, train
from afnet.engine.datamodule import VideoDataModule
from afnet.engine.module import AFNetModule, NonFiniteLoss
from afnet.engine.run import _trainer, build_model
from afnet.models.layers import Navigation
from tests.helpers import SYNTHETIC_CONFIG, tiny_overrides, tiny_synthetic


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return tiny_synthetic(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    """One epoch of af_resnet_small with the uniform policy (ratio 0.5), as the demo runs it."""
    run = tmp_path_factory.mktemp("run")
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, run, **{
        "model.selection": "uniform", "model.ratio": 0.5, "optim.epochs": 1, "seed": 1}))
    return cfg, train(cfg)


def test_short_training_lowers_the_loss_and_moves_the_kept_ratio_toward_rt(synth, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{
        "objective.target_ratio": 0.25, "objective.rt_begin": 0, "objective.rt_end": 0, "objective.ratio_weight": 2.0,
        "optim.lr": 0.01, "optim.navigation_lr_mult": 50.0, "model.dropout": 0.0, "trainer.limit_val_batches": 1}))
    torch.manual_seed(0)
    model, _ = build_model(cfg)
    with torch.no_grad():  # a navigation past its all-keep start (keep logit 2 over skip 0: ~85% kept)
        for m in model.modules():
            if isinstance(m, Navigation):
                m.conv2.bias[0::2], m.conv2.bias[1::2] = 0.0, 2.0
    trainer = _trainer(cfg, max_epochs=2, logger=CSVLogger(tmp_path, name="csv", version=""),
                       enable_checkpointing=False, log_every_n_steps=1, gradient_clip_val=20.0)
    trainer.fit(AFNetModule(model, cfg), datamodule=VideoDataModule(cfg.data, seed=cfg.seed))
    rows = [r for r in csv.DictReader(open(tmp_path / "csv" / "metrics.csv")) if r.get("train/loss")]
    loss = [float(r["train/loss"]) for r in rows]
    kept = [float(r["train/kept_ratio"]) for r in rows]
    assert len(rows) == 12
    print(f"loss {loss[0]:.3f} -> {loss[-1]:.3f}, kept {kept[0]:.3f} -> {kept[-1]:.3f}")
    assert sum(loss[-3:]) / 3 < sum(loss[:3]) / 3
    assert sum(kept[-3:]) / 3 < sum(kept[:3]) / 3 - 0.04      # toward RT = 0.25


def test_train_and_evaluate_api(trained):
    cfg, result = trained
    run = result.run_dir
    assert result.best_checkpoint == run / "checkpoints" / "best.ckpt" and result.best_checkpoint.is_file()
    assert result.last_checkpoint.is_file() and (run / "config.yaml").is_file()
    assert (run / "csv" / "metrics.csv").is_file() and any((run / "tensorboard").iterdir())
    assert load_config(run / "config.yaml") == cfg
    for key in ("top1", "top5", "class_mean_acc", "gflops_per_video", "kept_ratio", "mean_kept_ratio"):
        assert key in result.metrics
    assert result.metrics["kept_ratio"] == pytest.approx([0.5, 0.5, 0.5])   # uniform 4 of 8 frames

    ckpt = read_checkpoint(result.last_checkpoint)     # weights-only readable
    assert ckpt["format"] == "afnet" and ckpt["arch"] == "af_resnet_small" and ckpt["epoch"] == 0
    assert ckpt["step"] == 6 and ckpt["optimizer_states"] and ckpt["config"] == cfg.to_dict()
    assert set(ckpt["schedule"]) == {"lr", "target_ratio", "temperature"}
    assert ckpt["lr_schedulers"][0]["last_epoch"] == 6        # the LambdaLR, stepped per iteration
    # one epoch: the last checkpoint is the best; top-1 is a share of the 16 validation videos
    assert ckpt["metrics"]["top1"] == pytest.approx(result.metrics["top1"])
    assert (result.metrics["top1"] * 16) == pytest.approx(round(result.metrics["top1"] * 16))
    model = afnet.create_model("af_resnet_small", num_classes=8, num_frames=8)
    assert afnet.load_checkpoint(model, result.best_checkpoint).source == "afnet"
    assert ckpt["class_names"] == afnet.data.load_class_names(f"{cfg.data.root}/category.txt")

    metrics = evaluate(cfg, result.best_checkpoint)
    assert metrics["top1"] == pytest.approx(result.metrics["top1"])
    assert metrics["mean_kept_ratio"] == pytest.approx(0.5)
    assert (run / "eval" / "metrics.json").is_file() and (run / "eval" / "kept_ratio.png").is_file()
    views = evaluate(load_config(run / "config.yaml", ["eval.num_clips=2", "eval.num_crops=3"]),
                     result.best_checkpoint)
    assert views["gflops_per_video"] == pytest.approx(6 * metrics["gflops_per_video"], rel=1e-6)


def test_fine_tune_on_another_label_set(trained):
    cfg, result = trained
    other = load_config(SYNTHETIC_CONFIG, [f"data.root={cfg.data.root}", "data.num_classes=5",
                                           f"model.pretrained={result.best_checkpoint}"])
    with pytest.raises(ConfigError, match="skip_classifier"):
        build_model(other)
    other.model.skip_classifier = True
    model, mult = build_model(other)
    state = read_checkpoint(result.best_checkpoint)["state_dict"]
    assert model.classifier().out_features == 5 and mult == [1.0, 1.0]
    first = next(iter(state))
    assert torch.equal(model.state_dict()[first], state[first])


def test_fine_tune_from_an_imagenet_backbone_uses_classifier_multipliers(tmp_path, synth):
    backbone = afnet.create_model("af_resnet_small", num_classes=1000, num_frames=8)
    state = {f"module.{k}": v for k, v in backbone.state_dict().items() if ".navigation." not in k}
    torch.save({"state_dict": state}, tmp_path / "imagenet.pth.tar")
    cfg = load_config(SYNTHETIC_CONFIG, [f"data.root={synth}", f"model.pretrained={tmp_path / 'imagenet.pth.tar'}"])
    model, mult = build_model(cfg)
    assert mult == [5.0, 10.0] and model.classifier().out_features == 8


def test_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(synth, tmp_path, monkeypatch):
    import afnet.engine.module as module

    real = module.afnet_loss

    def poisoned(logits, *args, **kwargs):  # NaN from epoch 1 on (6 steps per epoch)
        loss = real(logits, *args, **kwargs)
        return loss._replace(total=loss.total * float("nan")) if poisoned.calls >= 6 else loss
    poisoned.calls = 0

    def counting(*args, **kwargs):
        out = poisoned(*args, **kwargs)
        poisoned.calls += 1
        return out

    monkeypatch.setattr(module, "afnet_loss", counting)
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path))
    with pytest.raises(NonFiniteLoss, match="non-finite loss .* epoch 1, step 6"):
        train(cfg)
    ckpt = read_checkpoint(tmp_path / "checkpoints" / "last.ckpt")
    assert ckpt["epoch"] == 0 and ckpt["step"] == 6
    assert all(torch.isfinite(v).all() for v in ckpt["state_dict"].values() if v.is_floating_point())


def test_image_folder_pretraining_runs_with_one_frame(synth, tmp_path):
    import shutil

    for split, videos in (("train", range(0, 8)), ("val", range(8, 12))):
        for i in videos:
            label = ("left", "right")[i % 2]
            (tmp_path / "images" / split / label).mkdir(parents=True, exist_ok=True)
            shutil.copy(synth / "frames" / "train" / f"video_{i:05d}" / "00001.jpg",
                        tmp_path / "images" / split / label / f"{i}.jpg")
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(tmp_path / "images", tmp_path / "run", **{
        "data.preset": "imagefolder", "data.train_list": "train", "data.val_list": "val", "data.num_frames": "null",
        "data.num_classes": 2, "data.input_size": 28, "data.scale_size": 32, "model.selection": "all",
        "optim.epochs": 1, "data.batch_size": 4}))
    assert cfg.data.num_frames == 1
    result = train(cfg)
    assert read_checkpoint(result.last_checkpoint)["model_args"]["num_frames"] == 1
    # top-1 over the 4 validation images, and the same when the checkpoint is evaluated again
    assert result.metrics["top1"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    assert evaluate(cfg, result.best_checkpoint)["top1"] == pytest.approx(result.metrics["top1"])


def test_best_checkpoint_comes_from_an_epoch_at_the_final_targets(synth, tmp_path):
    """With learned selection the best checkpoint is chosen among the epochs trained at the
    final RT (here from epoch 2 of 3): an earlier epoch keeps more frames than the budget."""
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{
        "optim.epochs": 3, "objective.rt_begin": 1, "objective.rt_end": 2, "trainer.limit_val_batches": 1,
        "trainer.limit_train_batches": 2}))
    result = train(cfg)
    assert read_checkpoint(result.best_checkpoint)["epoch"] == 2
    model = build_model(cfg)[0]
    module = AFNetModule(model, cfg)
    from afnet.engine.run import best_from_epoch
    assert best_from_epoch(cfg, module) == 2
    fixed = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{"model.selection": "uniform",
                                                                             "model.ratio": 0.5}))
    assert best_from_epoch(fixed, AFNetModule(build_model(fixed)[0], fixed)) == 0  # no ratio schedule to wait for
    late = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{"objective.rt_end": 9}))
    assert best_from_epoch(late, AFNetModule(build_model(late)[0], late)) == 1   # capped: the last epoch


def test_class_names_travel_with_the_checkpoint(trained, tmp_path, capsys):
    """A model trained with a class file predicts names, with no --labels (which still overrides)."""
    from afnet.cli import main
    from afnet.inference import explain_video, load_model_for_inference

    cfg, result = trained
    names = afnet.data.load_class_names(f"{cfg.data.root}/category.txt")
    im = load_model_for_inference(result.best_checkpoint)
    assert im.class_names == names
    video = f"{cfg.data.root}/frames/val/video_00000"
    assert main(["predict", video, "--checkpoint", str(result.best_checkpoint), "--json", "--no-flops"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert all(t["name"] == names[t["class"]] for t in top)
    assert explain_video(video, im).prediction.top[0]["name"] in names      # afnet explain's title
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"label {i}\n" for i in range(8)))
    assert main(["predict", video, "--checkpoint", str(result.best_checkpoint), "--labels", str(labels),
                 "--json", "--no-flops"]) == 0
    top = json.loads(capsys.readouterr().out)["top"]
    assert all(t["name"] == f"label {t['class']}" for t in top)


def test_stop_at_ends_training_once_the_validation_score_is_reached(synth, tmp_path):
    """trainer.stop_at: a threshold every epoch reaches stops after the first; each epoch
    trained is one line of train.log."""
    cfg = load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{
        "model.selection": "all", "optim.epochs": 3, "trainer.stop_at": 1e-9}))
    result = train(cfg)
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{tmp_path.name}: epoch 1/3, loss ")
    assert result.metrics["epoch"] == 1   # counted from 1, as train.log counts
    with pytest.raises(ConfigError, match=r"trainer.stop_at=1.5; accepted: a top-1 \(mAP\) in \(0, 1\], or null"):
        load_config(SYNTHETIC_CONFIG, tiny_overrides(synth, tmp_path, **{"trainer.stop_at": 1.5}))
