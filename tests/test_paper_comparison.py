"""experiments/paper_comparison.py's report: a run folder can go once reported, and the next report
still draws its curve and its grid pictures from what the first one kept."""

import json
import shutil
import sys

import numpy as np
from PIL import Image

from conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import paper_comparison  # noqa: E402

H, W = 16, 32


def scenes(path, n=5):
    """Held-out scenes: label maps and photos, one flat colour each."""
    for folder in ("test_label", "test_img"):
        (path / folder).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full((H, W), i % 3, np.uint8)).save(path / "test_label" / f"s{i}.png")
        Image.fromarray(np.full((H, W, 3), 40 * i, np.uint8)).save(path / "test_img" / f"s{i}.png")


def trained(root, method, shade, steps):
    """A run folder as `train` and `evaluate` leave it: eval scores in metrics.jsonl and the
    evaluate samples (one shade per method)."""
    (root / method / "tensorboard").mkdir(parents=True)
    (root / method / "eval_samples").mkdir()
    with open(root / method / "tensorboard" / "metrics.jsonl", "w") as f:
        for s in steps:
            f.write(json.dumps({"step": s, "loss_G": 1.0, "eval/mean_iou": shade / 1000 + s / 1e5,
                                "eval/pixel_accuracy": 0.5}) + "\n")
    for name in (root.parent / "eval" / "test_label").iterdir():
        Image.fromarray(np.full((H, W, 3), shade, np.uint8)).save(root / method / "eval_samples" / name.name)


def evaluated(out, method, iou):
    per_class = {"0": iou, "1": iou}
    result = {"segmentation": {"real": {"pixel_accuracy": 0.99, "mean_iou": 0.9, "per_class_iou": per_class},
                               "generated": {"pixel_accuracy": 0.6, "mean_iou": iou, "per_class_iou": per_class}},
              "paired": {"psnr": 14.0, "ssim": 0.3}, "frechet_distance_segmenter_features": 2.0, "num_images": 5}
    (out / f"{method}.json").write_text(json.dumps(result))


def test_a_report_keeps_what_it_needs_of_runs_whose_folders_go(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(paper_comparison, "plot_curves", lambda curves, path: None)  # matplotlib: experiments extra
    data, root, out = tmp_path / "eval", tmp_path / "runs", tmp_path / "out"
    scenes(data)
    out.mkdir()
    trained(root, "pix2pix", 60, (300, 600))
    trained(root, "oasis", 200, (300, 600, 900))
    for m, iou in (("pix2pix", 0.35), ("oasis", 0.30)):
        evaluated(out, m, iou)
    paper_comparison.report(str(root), str(data), str(out))
    first = json.loads((out / "results.json").read_text())
    assert set(first["curves"]["oasis"]) == {"300", "600", "900"}
    assert sorted(p.name for p in (out / "samples" / "oasis").iterdir()) == [f"s{i}.jpg" for i in range(4)]

    shutil.rmtree(root / "oasis")
    trained(root, "oasis_no_noise", 120, (300,))
    evaluated(out, "oasis_no_noise", 0.32)
    evaluated(out, "oasis_patch_d", 0.28)  # evaluated, but no folder and nothing kept
    capsys.readouterr()
    paper_comparison.report(str(root), str(data), str(out))
    second = json.loads((out / "results.json").read_text())
    assert second["curves"]["oasis"] == first["curves"]["oasis"]
    assert set(second["curves"]["oasis_no_noise"]) == {"300"}
    assert "grid.jpg leaves out oasis_patch_d" in capsys.readouterr().out

    grid = np.asarray(Image.open(out / "grid.jpg")).astype(int)
    assert grid.shape == (2 + 4 * (H + 2), 2 + 5 * (W + 2), 3)  # label | real | pix2pix | oasis | no noise
    for row in range(4):
        for col, shade in ((2, 60), (3, 200), (4, 120)):
            y, x = 2 + row * (H + 2), 2 + col * (W + 2)
            assert np.abs(grid[y:y + H, x:x + W] - shade).mean() < 4, (row, col)  # JPEG twice
        real = grid[2 + row * (H + 2):2 + row * (H + 2) + H, 2 + W + 2:2 + 2 * W + 2]
        assert np.abs(real - 40 * row).mean() < 4


def test_every_configured_method_is_labelled():
    """The methods trained are configs/paper_comparison.py's, so a method added there is in the
    report; the curves and tables name each by its label, which it must have."""
    from configs.paper_comparison import METHODS

    assert paper_comparison.TRAINED == METHODS
    assert set(paper_comparison.METHODS) == set(paper_comparison.LABELS)
