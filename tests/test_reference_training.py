"""experiments/reference_training.py: one config drives both implementations, and the logs of both
sides are read alike (the reference itself is not needed here)."""

import argparse
import json
import sys

import pytest

from conftest import ROOT
from pix2pixhd_jax.config_loading import load_config

sys.path.insert(0, str(ROOT / "experiments"))
import nvidia_reference  # noqa: E402
import reference_training  # noqa: E402

CONFIG = str(ROOT / "configs" / "reference_training.py")


def options(argv):
    """argv -> {option: value} (flags map to True)."""
    out, i = {}, 0
    while i < len(argv):
        if i + 1 < len(argv) and not argv[i + 1].startswith("--"):
            out[argv[i]], i = argv[i + 1], i + 2
        else:
            out[argv[i]], i = True, i + 1
    return out


def test_the_reference_gets_the_comparisons_settings():
    config = load_config(f"{CONFIG}:gan_fm")
    comparison = load_config(str(ROOT / "configs" / "paper_comparison.py") + ":pix2pixhd_gan_fm")
    assert config.model == comparison.model and config.loss == comparison.loss and config.data == comparison.data
    opt = options(nvidia_reference.training_options(config, steps_per_epoch=50))
    assert opt["--gpu_ids"] == "-1" and opt["--label_nc"] == "35" and "--no_instance" not in opt
    assert (opt["--netG"], opt["--ngf"], opt["--n_downsample_global"], opt["--n_blocks_global"]) == ("global", "16", "3", "3")
    assert (opt["--ndf"], opt["--num_D"], opt["--n_layers_D"], opt["--norm"]) == ("8", "2", "3", "instance")
    assert (opt["--resize_or_crop"], opt["--loadSize"], opt["--fineSize"]) == ("scale_width_and_crop", "256", "128")
    assert (opt["--batchSize"], opt["--niter"], opt["--niter_decay"], float(opt["--lr"])) == ("4", "32", "16", 2e-4)
    assert float(opt["--lambda_feat"]) == 10.0 and opt["--pool_size"] == "0"
    assert opt["--no_vgg_loss"] is True and "--no_lsgan" not in opt and "--no_flip" not in opt
    # Frequencies count images in the reference: 10 steps of 4; G saved every 300 steps = 6 epochs.
    assert opt["--print_freq"] == "40" and opt["--save_epoch_freq"] == "6"


def test_the_vgg_variant_turns_the_vgg_term_on_on_both_sides():
    config = load_config(f"{CONFIG}:vgg", ["loss.vgg_weights=/x/vgg19.pth"])
    assert config.loss.no_vgg_loss is False and config.loss.lambda_l1 == 0
    assert "--no_vgg_loss" not in options(nvidia_reference.training_options(config, 50))


def test_settings_the_reference_cannot_express_are_refused():
    pix2pix = load_config(str(ROOT / "configs" / "paper_comparison.py") + ":pix2pix")
    with pytest.raises(nvidia_reference.ReferenceUnsupported, match="lambda_l1=100.0.*netG='unet_128'"):
        nvidia_reference.train_options(pix2pix)
    config = load_config(f"{CONFIG}:gan_fm", ["train.save_latest_freq=70"])
    with pytest.raises(nvidia_reference.ReferenceUnsupported, match="save_latest_freq=70"):
        nvidia_reference.training_options(config, 50)


def test_both_sides_losses_are_read_per_step(tmp_path):
    ref = tmp_path / "reference"
    ref.mkdir()
    (ref / "loss_log.txt").write_text(
        "================ Training Loss (Sun Dec  6 01:13:02 2026) ================\n"
        "(epoch: 1, iters: 40, time: 0.096) G_GAN: 0.980 G_GAN_Feat: 7.854 D_real: 1.017 D_fake: 0.366 \n"
        "(epoch: 2, iters: 200, time: 0.092) G_GAN: 0.801 G_GAN_Feat: 8.482 D_real: 0.404 D_fake: 0.311 \n")
    points = reference_training.loss_log(str(ref), "reference", examples=200, batch=4)
    assert points == {10: {"G_GAN": 0.98, "G_GAN_Feat": 7.854, "D_real": 1.017, "D_fake": 0.366},
                      100: {"G_GAN": 0.801, "G_GAN_Feat": 8.482, "D_real": 0.404, "D_fake": 0.311}}
    ours = tmp_path / "ours" / "tensorboard"
    ours.mkdir(parents=True)
    (ours / "metrics.jsonl").write_text('{"step": 10, "loss_G_GAN": 0.5, "loss_D_real": 0.25, "lr": 0.0002}\n'
                                        '{"step": 300, "eval/mean_iou": 0.3}\n')
    assert reference_training.loss_log(str(tmp_path / "ours"), "ours", 200, 4) == {10: {"G_GAN": 0.5, "D_real": 0.25}}
    means = reference_training.window_means({10: {"G_GAN": 1.0}, 50: {"G_GAN": 3.0}, 60: {"G_GAN": 5.0}}, 50, 100)
    assert means == {50: {"G_GAN": 2.0}, 100: {"G_GAN": 5.0}}


def test_a_reference_snapshot_counts_once_iter_txt_has_moved_past_it(tmp_path):
    assert not reference_training.reference_saved(str(tmp_path), 6)
    (tmp_path / "iter.txt").write_text("7\n0\n")
    assert reference_training.reference_saved(str(tmp_path), 6)
    assert not reference_training.reference_saved(str(tmp_path), 12)


def test_spread_statistics():
    st = reference_training.stats([0.2, 0.3, 0.4])
    assert st["n"] == 3 and st["mean"] == pytest.approx(0.3) and st["std"] == pytest.approx(0.1)
    assert (st["min"], st["max"]) == (0.2, 0.4)
    assert reference_training.stats([0.5])["std"] == 0.0


def test_the_reference_synthesizer_answers_what_evaluation_asks_of_a_synthesizer():
    """Evaluation.run takes the reference's G through nvidia_reference.ReferenceSynthesizer: every
    attribute it reads of a synthesizer must be there (encode_styles is read only of one with an
    encoder, which the reference's wrapper never has)."""
    import ast
    import inspect

    from pix2pixhd_jax.evaluation import evaluate

    tree = ast.parse(inspect.getsource(evaluate.Evaluation))
    used = {n.attr for n in ast.walk(tree)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "synth"}
    assert {"synthesize_batch", "random_samples"} <= used
    wrapper = nvidia_reference.ReferenceSynthesizer
    assert wrapper.has_encoder is False
    assert [a for a in sorted(used - {"encode_styles"}) if not hasattr(wrapper, a)] == []
    assert object.__new__(wrapper).random_samples() is False  # one picture per map: no noise


def test_a_kept_record_stands_in_for_a_run_folder_that_is_gone(tmp_path):
    data = tmp_path / "data" / "train_label"
    data.mkdir(parents=True)
    for i in range(200):
        (data / f"{i:03d}.png").write_bytes(b"")
    args = argparse.Namespace(root=str(tmp_path / "runs"), out=str(tmp_path / "out"), data=str(tmp_path / "data"),
                              judge=str(tmp_path / "judge"), eval_data=str(tmp_path / "eval"), ref=None, override=[])
    exp = reference_training.Experiment(args)

    def score(v, oracle=0.87):
        return {**{key: v for key, _ in reference_training.KEYS}, "eval/oracle_mean_iou": oracle}

    # Seed 0 trained elsewhere: only its record is here.
    kept = tmp_path / "out" / "runs"
    kept.mkdir(parents=True)
    (kept / "reference_gan_fm_seed0.json").write_text(json.dumps(
        {"scores": {"300": score(0.1), "600": score(0.2)}, "losses": {"300": {"G_GAN": 1.0}},
         "step0_pixels": {"values": 10, "equal": 1.0, "max_difference": 0}}))
    (kept / "ours_gan_fm_seed0.json").write_text(json.dumps(
        {"scores": {"600": score(0.3)}, "losses": {}, "step0_pixels": {"values": 10, "equal": 1.0, "max_difference": 0}}))
    # Seed 1's folder is here: its scores refresh the record, and a kept step it lacks stays.
    (kept / "reference_gan_fm_seed1.json").write_text(json.dumps(
        {"scores": {"300": score(0.9), "2400": score(0.4)}, "losses": {}}))
    scores = tmp_path / "runs" / "reference" / "gan_fm_seed1" / "scores"
    scores.mkdir(parents=True)
    (scores / "00300.json").write_text(json.dumps({"scalars": score(0.3)}))
    assert reference_training.known_seeds(exp, "gan_fm", "reference") == [0, 1]
    assert reference_training.known_seeds(exp, "gan_fm", "ours") == [0]
    kept0 = reference_training.run_record(exp, "reference", "gan_fm", 0)
    assert kept0["scores"] == {300: score(0.1), 600: score(0.2)} and kept0["losses"] == {300: {"G_GAN": 1.0}}
    assert reference_training.run_record(exp, "ours", "gan_fm", 0)["step0_pixels"]["values"] == 10
    record = reference_training.run_record(exp, "reference", "gan_fm", 1)
    assert record["scores"] == {300: score(0.3), 2400: score(0.4)}
    assert json.loads((kept / "reference_gan_fm_seed1.json").read_text())["scores"]["300"] == score(0.3)
    runs, summary, _, pixels = reference_training.collect(exp, ["gan_fm"])
    assert sorted(runs["gan_fm"]["reference"]) == [0, 1]
    assert pixels == {"gan_fm_seed0": {"values": 10, "equal": 1.0, "max_difference": 0}}
    assert summary["gan_fm"][300]["reference"]["eval/mean_iou"]["mean"] == pytest.approx(0.2)
    assert summary["gan_fm"][600]["reference"]["eval/mean_iou"]["n"] == 1
    # The final pictures' spectrum, from the final JSON of each run that has one.
    band = {"log10_ratio": -0.5, "peak_log10_ratio": 0.75, "peak_period": 2.0}
    (tmp_path / "out" / "reference_seed1.json").write_text(json.dumps({"spectrum": {"2-4px": band, "8-16px": None}}))
    table = reference_training.spectrum_table(exp, runs)
    assert "| reference 1 | -0.50; peak +0.75 at 2.0 |  |" in table and "reference 0" not in table
    assert reference_training.spectrum_table(exp, {"vgg": {side: {} for side in reference_training.SIDES}}) == ""

    # Runs scored by another judge do not pool with these.
    (kept / "ours_gan_fm_seed2.json").write_text(json.dumps({"scores": {"300": score(0.5, oracle=0.86)}}))
    with pytest.raises(SystemExit, match="different judges.*0.86: ours seed 2.*0.87: "):
        reference_training.collect(exp, ["gan_fm"])
    (kept / "ours_gan_fm_seed2.json").unlink()
    # A score names its judge by its parameters' digest; one made without a digest joins the digest
    # whose scores show its oracle; another digest does not pool, even at the same oracle.
    (scores / "00600.json").write_text(json.dumps({"scalars": score(0.3), "segmenter_digest": "a" * 64}))
    assert reference_training.run_record(exp, "reference", "gan_fm", 1)["scores"][600]["judge"] == "a" * 64
    assert sorted(reference_training.collect(exp, ["gan_fm"])[0]["gan_fm"]["ours"]) == [0]
    (kept / "ours_gan_fm_seed2.json").write_text(json.dumps({"scores": {"300": dict(score(0.5), judge="b" * 64)}}))
    with pytest.raises(SystemExit, match="different judges \\(judge a{16}: ours seed 0, reference seed 0, reference "
                                         "seed 1; judge b{16}: ours seed 2\\)"):
        reference_training.collect(exp, ["gan_fm"])
    (kept / "ours_gan_fm_seed2.json").unlink()
    # A record kept for other settings is refused, not merged.
    args.override = ["train.niter=1"]
    with pytest.raises(SystemExit, match="kept for other settings than this run's \\(train.niter differ"):
        reference_training.run_record(reference_training.Experiment(args), "reference", "gan_fm", 0)


def test_a_runs_late_average_needs_every_late_step_and_the_table_shows_it():
    def score(v):
        return {key: v for key, _ in reference_training.KEYS}

    runs = {"ours": {0: {1200: score(0.1), 1800: score(0.3), 2400: score(0.2)}, 1: {1200: score(0.5), 2400: score(0.5)}},
            "reference": {0: {0: score(0.9), 1200: score(0.2), 1800: score(0.2), 2400: score(0.2)}}}
    averages = reference_training.late_averages(runs, [1200, 1800, 2400])
    assert averages["ours"] == {0: {"eval/mean_iou": pytest.approx(0.2), "eval/pixel_accuracy": pytest.approx(0.2)}}
    assert averages["reference"][0]["eval/mean_iou"] == pytest.approx(0.2)  # step 0 is not in the average
    summary = {"gan_fm": {s: {side: {k: reference_training.stats([0.0]) for k, _ in reference_training.KEYS}
                              for side in reference_training.SIDES} for s in (0, 1200, 1800, 2400)}}
    text = reference_training.tables(summary, {"gan_fm": runs}, {"gan_fm": {"ours": {}, "reference": {}}}, 300)
    assert "scored steps 1200-2400 of each run" in text and "| ours | 1 | 0.2000 ± 0.0000 [0.2000, 0.2000]" in text
    assert "per seed (mean IoU) |" in text and "| 0: 0.2000 |" in text

