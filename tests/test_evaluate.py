"""train-segmenter and evaluate on tiny models and 64x32 block scenes.

The segmenter must learn (the block scenes' photos are coloured by class), resume exactly
and reproduce itself from the same config and seed; `evaluate`'s numbers are held against
the same measures computed independently from the files on disk (the real photos read with
Pillow, the generated photos it wrote), and it must give identical numbers twice.
"""

import json
import logging
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, load_test_config, make_aligned, make_model_workdir, make_oasis_workdir

# One xdist worker builds the trained segmenter and models once for all the tests here.
pytestmark = pytest.mark.xdist_group("evaluate")

sys.path.insert(0, str(ROOT / "experiments"))

SEG = ("segmenter.width=8", "segmenter.depth=2", "segmenter.batch_size=2", "segmenter.lr=0.01",
       "segmenter.save_freq=10")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("blocks")
    make_aligned(root, "train", n=6, w=64, h=32)
    make_aligned(root, "test", n=3, w=64, h=32, seed=5)
    return root


def seg_config(data, *extra):
    return load_test_config(f"--config.data.dataroot={data}", "--config.data.load_size=64",
                            *[f"--config.{o}" for o in SEG + extra])


@pytest.fixture(scope="module")
def segmenter(data, tmp_path_factory):
    from pix2pixhd_jax.evaluation import segmenter as segmentation

    workdir = tmp_path_factory.mktemp("segmenter")
    _, summary = segmentation.train_segmenter(seg_config(data, "segmenter.steps=100"), str(workdir), progress=False)
    return workdir, summary


def params_of(workdir):
    from pix2pixhd_jax.evaluation.segmenter import load_segmenter

    return load_segmenter(str(workdir))[2]


def test_segmenter_learns_the_block_scenes(data, segmenter):
    workdir, summary = segmenter
    losses = [json.loads(line) for line in open(workdir / "tensorboard" / "metrics.jsonl")]
    assert losses[-1]["loss"] < losses[0]["loss"]
    # Twice the accuracy of always answering the most frequent class.
    labels = np.concatenate([np.asarray(Image.open(p)).ravel() for p in (data / "train_label").glob("*.png")])
    majority = np.bincount(labels).max() / labels.size
    assert summary["train_pixel_accuracy_last_50"] > 2 * majority
    assert json.loads((workdir / "segmenter_done.json").read_text())["step"] == 100
    assert "segmenter" in json.loads((workdir / "config.json").read_text())


def test_the_oracle_is_the_segmenter_on_the_real_test_photos(data, model, segmenter, tmp_path, capsys):
    """segmenter_done.json's oracle, evaluate-segmenter's JSON and evaluate's real-photo score
    are one measure; held against a confusion matrix built here from the files."""
    from pix2pixhd_jax import cli
    from pix2pixhd_jax.evaluation import metrics
    from pix2pixhd_jax.evaluation.segmenter import load_segmenter, segment_fn

    workdir, summary = segmenter
    oracle = summary["oracle"]
    assert oracle == json.loads((workdir / "segmenter_done.json").read_text())["oracle"]
    _, module, params = load_segmenter(str(workdir))
    segment = segment_fn(module, params)
    conf, present = metrics.ConfusionMatrix(35), set()
    for path in sorted((data / "test_label").glob("*.png")):
        label = np.asarray(Image.open(path)).astype(np.int32)
        real = np.asarray(Image.open(data / "test_img" / path.name).convert("RGB"))
        conf.update(np.asarray(segment(real[None])[0])[0], label)
        present |= set(np.unique(label).tolist())
    assert oracle["num_images"] == 3 and oracle["split"] == "test"
    assert oracle["classes_present"] == sorted(present)
    assert oracle["pixel_accuracy"] == pytest.approx(conf.pixel_accuracy())
    assert oracle["mean_iou"] == pytest.approx(conf.mean_iou())
    iou = conf.iou()
    assert oracle["per_class_iou"] == {str(c): pytest.approx(v) for c, v in enumerate(iou) if np.isfinite(v)}

    out = tmp_path / "oracle.json"
    assert cli.main(["evaluate-segmenter", "--segmenter", str(workdir), "--out", str(out), "--batch-size", "2",
                     "--quiet"]) == 0
    assert f"oracle written to {out}" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert {k: written[k] for k in ("pixel_accuracy", "mean_iou", "per_class_iou")} == {
        k: oracle[k] for k in ("pixel_accuracy", "mean_iou", "per_class_iou")}
    real = run_evaluate(model, segmenter, tmp_path, num_samples=1)["segmentation"]["real"]
    assert real["mean_iou"] == pytest.approx(oracle["mean_iou"]) and real["per_class_iou"].keys() == \
        oracle["per_class_iou"].keys()
    # A split that is not there: the error names the folder.
    assert cli.main(["evaluate-segmenter", "--segmenter", str(workdir), "--split", "val", "--quiet"]) == 2
    assert "val" in capsys.readouterr().err


def test_segmenter_reproduces_and_resumes_exactly(data, segmenter, tmp_path):
    import shutil

    from pix2pixhd_jax.evaluation import segmenter as segmentation

    straight = tmp_path / "straight"
    segmentation.train_segmenter(seg_config(data, "segmenter.steps=100"), str(straight), progress=False)
    for a, b in zip(jax.tree_util.tree_leaves(params_of(straight)), jax.tree_util.tree_leaves(params_of(segmenter[0]))):
        np.testing.assert_array_equal(a, b)  # same config and seed: the same network, bit for bit

    # Lose the last checkpoint (100): the same command resumes at 90 and ends where the straight run did.
    resumed = tmp_path / "resumed"
    shutil.copytree(straight, resumed)
    shutil.rmtree(resumed / "checkpoints" / "100")
    _, summary = segmentation.train_segmenter(seg_config(data, "segmenter.steps=100"), str(resumed), progress=False)
    assert summary["step"] == 100
    for a, b in zip(jax.tree_util.tree_leaves(params_of(resumed)), jax.tree_util.tree_leaves(params_of(straight))):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_an_exported_segmenter_judges_as_its_workdir(data, model, segmenter, tmp_path, capsys):
    """export-segmenter keeps a judge as config.json and its parameters; --segmenter reads the
    folder like the workdir, every score names the judge by its digest, and a damaged file is an
    error that names it and the fix."""
    from pix2pixhd_jax import cli
    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.evaluation.segmenter import PARAMS_FILE, params_digest, score_real_photos

    workdir = segmenter[0]
    out = tmp_path / "judge"
    assert cli.main(["export-segmenter", "--workdir", str(workdir), "--out", str(out)]) == 0
    digest = params_digest(params_of(workdir))
    assert f"digest {digest[:16]}" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "segmenter_done.json", PARAMS_FILE]
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["dataroot"] == "" and "segmenter" in config
    done = json.loads((out / "segmenter_done.json").read_text())
    assert done["step"] == 100 and {"segmenter", "dataroot"}.isdisjoint(done["oracle"])
    exported = params_of(out)
    assert jax.tree_util.tree_structure(exported) == jax.tree_util.tree_structure(params_of(workdir))
    for a, b in zip(jax.tree_util.tree_leaves(exported), jax.tree_util.tree_leaves(params_of(workdir))):
        np.testing.assert_array_equal(a, b)
    assert params_digest(exported) == digest
    nudged = jax.tree_util.tree_map(np.array, exported)
    first = jax.tree_util.tree_leaves(nudged)[0]
    first.flat[0] = np.nextafter(first.flat[0], np.inf)
    assert params_digest(nudged) != digest
    oracles = [score_real_photos(str(out), dataroot=str(data)), score_real_photos(str(workdir))]
    assert [{k: v for k, v in o.items() if k != "segmenter"} for o in oracles] == [
        {k: v for k, v in oracles[1].items() if k != "segmenter"}] * 2
    result = run_evaluate(model, (out,), tmp_path, num_samples=1)
    assert result["segmenter_digest"] == digest
    assert result["segmentation"] == run_evaluate(model, segmenter, tmp_path, num_samples=1)["segmentation"]

    data_bytes = (out / PARAMS_FILE).read_bytes()
    (out / PARAMS_FILE).write_bytes(data_bytes[: len(data_bytes) // 2])
    with pytest.raises(UserError, match=f"{out / PARAMS_FILE}: not a segmenter's parameters .*export it again"):
        params_of(out)
    assert (out / PARAMS_FILE).stat().st_size == len(data_bytes) // 2  # nothing removed
    assert cli.main(["export-segmenter", "--workdir", str(tmp_path / "none"), "--out", str(tmp_path / "o")]) == 2
    assert "no segmenter here" in capsys.readouterr().err


def test_segmenter_refuses_rgb_label_datasets(data, tmp_path):
    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.evaluation.segmenter import train_segmenter

    with pytest.raises(UserError, match="label_nc must be > 0"):
        train_segmenter(seg_config(data, "data.label_nc=0"), str(tmp_path), progress=False)


@pytest.fixture(scope="module")
def model(data, tmp_path_factory):
    """A random tiny model with the feature encoder and a clusters file for every class."""
    from pix2pixhd_jax.inference import features

    workdir = tmp_path_factory.mktemp("model")
    config, _ = make_model_workdir(workdir, f"data.dataroot={data}", "data.load_size=64")
    rng = np.random.default_rng(0)
    centers = {c: rng.normal(size=(3, config.model.feat_num)).astype(np.float32) for c in range(35)}
    features.save_clusters(str(workdir / features.CLUSTERS_FILE),
                           features.FeatureClusters(centers=centers, feat_num=int(config.model.feat_num)))
    return workdir


def run_evaluate(model, segmenter, tmp_path, **kw):
    from pix2pixhd_jax.evaluation.evaluate import evaluate

    return evaluate(str(model), str(segmenter[0]), "test", samples_dir=str(tmp_path / "samples"), progress=False,
                    batch_size=2, **kw)


def test_evaluate_matches_independent_measures(data, model, segmenter, tmp_path):
    from pix2pixhd_jax.evaluation import metrics, spectrum
    from pix2pixhd_jax.evaluation.segmenter import load_segmenter, segment_fn

    result = run_evaluate(model, segmenter, tmp_path)
    assert result["num_images"] == 3 and result["style"] == "encode"
    _, module, params = load_segmenter(str(segmenter[0]))
    segment = segment_fn(module, params)
    names = sorted(p.stem for p in (data / "test_label").glob("*.png"))
    real_conf, fake_conf = metrics.ConfusionMatrix(35), metrics.ConfusionMatrix(35)
    psnrs, photos = [], {"generated": [], "real": []}
    for name in names:
        label = np.asarray(Image.open(data / "test_label" / f"{name}.png")).astype(np.int32)
        real = np.asarray(Image.open(data / "test_img" / f"{name}.png").convert("RGB"))
        fake = np.asarray(Image.open(tmp_path / "samples" / f"{name}.png"))
        assert fake.shape == real.shape
        real_conf.update(np.asarray(segment(real[None])[0])[0], label)
        fake_conf.update(np.asarray(segment(fake[None])[0])[0], label)
        psnrs.append(metrics.psnr(fake, real))
        photos["generated"].append(fake)
        photos["real"].append(real)
    seg = result["segmentation"]
    assert seg["real"]["pixel_accuracy"] == pytest.approx(real_conf.pixel_accuracy())
    assert seg["real"]["mean_iou"] == pytest.approx(real_conf.mean_iou())
    assert seg["generated"]["pixel_accuracy"] == pytest.approx(fake_conf.pixel_accuracy())
    assert result["paired"]["psnr"] == pytest.approx(np.mean(psnrs), rel=1e-6)
    expected = spectrum.compare(*(spectrum.spectra(photos[k]) for k in ("generated", "real")))
    assert set(result["spectrum"]) == set(expected) and expected["2-4px"] is not None
    for band, values in expected.items():
        assert result["spectrum"][band] == (None if values is None else pytest.approx(values, rel=1e-6)), band
    # The oracle sees the photos the segmenter learnt from; a random generator's photos are not those.
    assert seg["real"]["pixel_accuracy"] > seg["generated"]["pixel_accuracy"]
    assert result["frechet_distance_segmenter_features"] > 0
    assert result["diversity"]["num_samples"] == 3 and result["diversity"]["mean_l1"] > 0
    assert result["fid"] is None and "skipped" in result["inception"]
    assert result["config"]["model"]["instance_feat"] is True

    again = run_evaluate(model, segmenter, tmp_path / "2")
    for key in ("segmentation", "frechet_distance_segmenter_features", "paired", "spectrum", "diversity"):
        assert again[key] == result[key]


def test_evaluate_fid_and_kid_through_the_inception_hook(data, model, segmenter, tmp_path, monkeypatch):
    """The FID path with a stand-in feature network (the real one's weights are the user's file;
    its own tests are in test_inception.py): the numbers must be the Frechet distance and KID
    of exactly those features of the real and generated photos."""
    import flax.linen as nn

    from pix2pixhd_jax.evaluation import metrics
    from pix2pixhd_jax.evaluation import evaluate as evaluate_module

    class MeanLevel(nn.Module):
        @nn.compact
        def __call__(self, x):
            # One feature (the mean level): with 3 images a wider feature has a singular covariance.
            x = x.astype("float32") / 255.0
            return x.reshape(x.shape[0], -1).mean(1, keepdims=True) * self.param("scale", nn.initializers.ones, (1,))

    seen = {}

    def fake_loader(path):
        seen["path"] = path
        return MeanLevel(), {"params": {"scale": np.ones(1, np.float32)}}

    monkeypatch.setattr(evaluate_module, "load_fid_inception", fake_loader)
    result = run_evaluate(model, segmenter, tmp_path, inception=str(tmp_path / "weights.npz"), style="random")
    assert seen["path"].endswith("weights.npz")
    names = sorted(p.name for p in (tmp_path / "samples").glob("*.png"))
    fake = np.stack([np.asarray(Image.open(tmp_path / "samples" / n)) for n in names]).astype(np.float32) / 255
    real = np.stack([np.asarray(Image.open(data / "test_img" / n).convert("RGB")) for n in names])
    real = real.astype(np.float32) / 255
    f_fake, f_real = fake.reshape(len(fake), -1).mean(1, keepdims=True), real.reshape(len(real), -1).mean(1, keepdims=True)
    want = metrics.frechet_distance_of(metrics.FeatureStats().update(f_real), metrics.FeatureStats().update(f_fake))
    assert result["fid"] == pytest.approx(want, rel=1e-4)
    assert result["kid"]["mean"] == pytest.approx(metrics.kid(f_real, f_fake)[0], rel=1e-4, abs=1e-7)


def test_evaluate_errors(model, segmenter, data, tmp_path):
    from pix2pixhd_jax import cli

    assert cli.main(["evaluate", "--workdir", str(model), "--segmenter", str(tmp_path), "--quiet"]) == 2
    other = tmp_path / "other_seg"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"data": {"label_nc": 35}}))
    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.evaluation.evaluate import evaluate

    with pytest.raises(UserError, match="not a train-segmenter workdir"):
        evaluate(str(model), str(other), progress=False)
    with pytest.raises(UserError, match="--style 'sideways': expected auto, encode or random"):
        evaluate(str(model), str(segmenter[0]), style="sideways", progress=False)


def test_evaluate_cli_writes_json_and_prints_the_config(model, segmenter, tmp_path, capsys):
    from pix2pixhd_jax import cli

    out = tmp_path / "m.json"
    assert cli.main(["evaluate", "--workdir", str(model), "--segmenter", str(segmenter[0]), "--out", str(out),
                     "--num-samples", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "config of the evaluated model" in printed and '"instance_feat": true' in printed
    written = json.loads(out.read_text())
    assert set(written) >= {"segmentation", "frechet_distance_segmenter_features", "fid", "kid", "paired",
                            "diversity", "config", "num_images"}
    assert written["diversity"] is None  # one sample per map: no pairs
    # The printed summary leaves the per-class table out; the file keeps it.
    assert "per_class_iou" not in printed
    assert written["segmentation"]["generated"]["per_class_iou"]


def test_evaluation_during_training_equals_a_standalone_evaluate_and_keeps_one_step_program(
        data, segmenter, tmp_path, caplog, capsys):
    from pix2pixhd_jax.evaluation.evaluate import evaluate
    from pix2pixhd_jax.training.train import train

    config = load_test_config(f"--config.data.dataroot={data}", "--config.data.load_size=64",
                              "--config.data.resize_or_crop=scale_width", "--config.model.ngf=4",
                              "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=1",
                              "--config.model.ndf=4", "--config.model.num_D=1", "--config.model.n_layers_D=1",
                              "--config.train.batch_size=2", "--config.train.max_steps=3",
                              "--config.train.eval_every=1", f"--config.train.eval_segmenter={segmenter[0]}")
    workdir = tmp_path / "run"
    with caplog.at_level(logging.WARNING), jax.log_compiles():
        train(config, str(workdir), progress=False)
    # One program for the train step, whatever the evaluations in between compiled.
    compiles = [r for r in caplog.records if "Compiling" in r.getMessage() and "step_fn" in r.getMessage()]
    assert len(compiles) == 1, [r.getMessage()[:120] for r in compiles]
    rows = [json.loads(line) for line in open(workdir / "tensorboard" / "metrics.jsonl")]
    evals = [r for r in rows if "eval/mean_iou" in r]
    assert [r["step"] for r in evals] == [1, 2, 3]
    # The scores reach the console too; no warning about FID, which training does not compute.
    printed = [ln for ln in capsys.readouterr().out.splitlines() if "eval/mean_iou" in ln]
    assert [ln.split(":")[0] for ln in printed] == ["train step 1", "train step 2", "train step 3"]
    assert f"eval/mean_iou {evals[-1]['eval/mean_iou']:.4g}" in printed[-1]
    assert not [r for r in caplog.records if "FID" in r.getMessage()]
    standalone = evaluate(str(workdir), str(segmenter[0]), "test", progress=False, num_samples=1)
    last, seg = evals[-1], standalone["segmentation"]
    assert last["eval/mean_iou"] == pytest.approx(seg["generated"]["mean_iou"], rel=1e-6)
    assert last["eval/pixel_accuracy"] == pytest.approx(seg["generated"]["pixel_accuracy"], rel=1e-6)
    assert last["eval/oracle_mean_iou"] == pytest.approx(seg["real"]["mean_iou"], rel=1e-6)
    assert last["eval/psnr"] == pytest.approx(standalone["paired"]["psnr"], rel=1e-6)
    assert last["eval/frechet_distance_segmenter"] == pytest.approx(
        standalone["frechet_distance_segmenter_features"], rel=1e-5)
    assert evals[0]["eval/psnr"] != last["eval/psnr"]  # the generator moved between evaluations


def test_training_evaluation_needs_a_judge(data, tmp_path):
    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.training.train import train

    config = load_test_config(f"--config.data.dataroot={data}", "--config.train.eval_every=10")
    with pytest.raises(UserError, match="train.eval_segmenter=DIR"):
        train(config, str(tmp_path / "run"), progress=False)


def test_class_weights_favour_rare_classes():
    from pix2pixhd_jax.evaluation.segmenter import class_weights, cross_entropy

    counts = np.array([900, 90, 10, 0])
    for weighting in ("inverse_sqrt_frequency", "median_frequency"):
        w = class_weights(counts, weighting)
        assert w[3] == 0 and w[2] > w[1] > w[0] > 0 and np.isclose(w[:3].mean(), 1.0)
    assert (class_weights(counts, "none") == 1).all()
    logits = jnp.zeros((1, 1, 2, 3))
    ids = jnp.array([[[0, 2]]])
    plain = float(cross_entropy(logits, ids, 3))
    weighted = float(cross_entropy(logits, ids, 3, jnp.array([1.0, 1.0, 3.0])))
    assert plain == pytest.approx(np.log(3)) and weighted == pytest.approx(np.log(3))  # uniform logits
    logits = jnp.array([[[[5.0, 0, 0], [0, 0, 0]]]])  # class 0 right, class 2 unsure
    assert float(cross_entropy(logits, ids, 3, jnp.array([1.0, 1.0, 3.0]))) > float(cross_entropy(logits, ids, 3))


@pytest.fixture(scope="module")
def oasis_run(data, segmenter, tmp_path_factory):
    """(workdir, config, state, the score train.eval_every gives it) of a tiny OASIS run's step 2."""
    from pix2pixhd_jax.evaluation.evaluate import TrainingEvaluator

    workdir = tmp_path_factory.mktemp("oasis")
    config, state = make_oasis_workdir(workdir, f"data.dataroot={data}", "data.load_size=64",
                                       f"train.eval_segmenter={segmenter[0]}")
    return workdir, config, state, TrainingEvaluator(config)(2, state)


def test_evaluate_scores_the_moving_average_of_an_oasis_model(data, segmenter, oasis_run, tmp_path):
    """An OASIS workdir is scored on its moving average of G, with the noise of (config.seed,
    sample 0), standalone and during training alike; its samples' diversity is measured."""
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.evaluation.evaluate import scalars
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    workdir, config, state, during = oasis_run
    result = run_evaluate(workdir, segmenter, tmp_path, num_samples=2)
    assert result["num_images"] == 3 and result["style"] == "none"
    assert result["diversity"]["num_samples"] == 2 and result["diversity"]["mean_l1"] > 0
    ema, g = (Synthesizer(config, checkpoint.network_variables(p, s))
              for p, s in ((state.ema_params, state.ema_stats), (state.g_params, state.g_stats)))
    for path in sorted((data / "test_label").glob("*.png")):
        label = np.asarray(Image.open(path))
        written = np.asarray(Image.open(tmp_path / "samples" / path.name))
        np.testing.assert_array_equal(written, ema.synthesize(label, seed=config.seed))
        assert np.abs(written.astype(int) - g.synthesize(label, seed=config.seed).astype(int)).mean() > 1
    assert during == pytest.approx(scalars(result), rel=1e-6)


def test_a_run_trained_before_its_judge_is_scored_afterwards(data, segmenter, oasis_run, tmp_path):
    """experiments/paper_comparison.py's score stage: each kept state at a multiple of the
    comparison's eval period gets the score train.eval_every would have given it (the moving
    average), or G's own for the oasis_no_ema curve; scored steps are not scored again, and the
    curve joins them to the steps scored during training."""
    import shutil

    import paper_comparison
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.evaluation.evaluate import Evaluation, scalars
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    workdir = tmp_path / "oasis"
    shutil.copytree(oasis_run[0], workdir)
    _, config, state, during = oasis_run
    paper_comparison.score_kept(str(workdir), 3, str(segmenter[0]), str(data))
    assert not (workdir / "scores").exists()  # step 2 is not a multiple of 3
    for own_g in (False, True):
        paper_comparison.score_kept(str(workdir), 2, str(segmenter[0]), str(data), own_g=own_g)
    scored, own = (json.loads((workdir / f / "2.json").read_text())["scalars"] for f in ("scores", "scores_raw"))
    assert scored == pytest.approx(during, rel=1e-6)
    g = Synthesizer(config, checkpoint.network_variables(state.g_params, state.g_stats))
    assert own == pytest.approx(scalars(Evaluation(config, str(segmenter[0]), "test").run(g, "auto", 1, None, False)),
                                rel=1e-6)
    assert own["eval/psnr"] != pytest.approx(scored["eval/psnr"], rel=1e-3)
    before = (workdir / "scores" / "2.json").stat().st_mtime_ns
    paper_comparison.score_kept(str(workdir), 2, str(segmenter[0]), str(data))
    assert (workdir / "scores" / "2.json").stat().st_mtime_ns == before
    (workdir / "tensorboard").mkdir()
    (workdir / "tensorboard" / "metrics.jsonl").write_text('{"step": 4, "loss_G": 1.0, "eval/mean_iou": 0.5}\n')
    assert paper_comparison.curve(str(workdir)) == {2: scored, 4: {"eval/mean_iou": 0.5}}
    assert paper_comparison.curve(str(workdir), "scores_raw") == {2: own}
