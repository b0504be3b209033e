"""Feature embedding on the synthetic scenes, whose per-instance styles are known.

    python experiments/feature_styles.py --workdir runs/features --data demo/synthetic --out experiments/feature_styles

Needs a workdir trained with configs/synthetic_features.py. Runs encode-features (unless
the clusters file exists), then measures:
  purity      per class: how well the k-means clusters of E's features recover the true
              styles (sum over clusters of the largest true-style count / instances), with
              the reference's K = min(N, 10) and with K = the true number of styles; and,
              to tell the encoder from the clustering, the same k-means on each
              instance's mean photo colour (an ideal 3-number encoder);
  separable   per class: 5-fold cross-validated accuracy of a logistic regression from E's
              features to the true style (do the features hold the style at all, k-means aside);
  context     per class without instances (one region per scene): the share of its features'
              variance, within each true style, that the scene's other regions' styles explain
              (out-of-fold R^2 of a linear fit); high means E's instance norms tie the feature to the
              rest of the picture instead of to the region's own look;
  locality    changing one car's style (between its class's two most distant centres):
              mean |difference| (0-255 levels) inside the car, outside the car dilated by
              3 px, beyond 16 px, and the fraction of outside pixels moving by over 8 levels;
  PSNR        against the real test photo: its own encoded features vs random cluster styles.
Writes <out>/results.json, <out>/samples.png (label | real | encoded | 3 random styles) and
<out>/style_change.png.
"""

import argparse
import json
import os

import numpy as np
from PIL import Image


from pix2pixhd_jax.data import visualize
from pix2pixhd_jax.inference import features as features_lib
from pix2pixhd_jax.inference.editing import dilate
from pix2pixhd_jax.inference.synthesis import Synthesizer


def purity(assign, truth):
    total = 0
    for c in np.unique(assign):
        total += np.bincount(truth[assign == c]).max()
    return total / len(assign)


def true_styles(data, phase):
    out = {}
    with open(os.path.join(data, f"{phase}_styles.jsonl")) as f:
        for line in f:
            rec = json.loads(line)
            for inst in rec["instances"]:
                out[(rec["name"], inst["id"])] = (inst["class"], inst["style"])
    return out


def scene_styles(truth):
    """{scene name: {class: style}} for the classes without instances (one region per scene)."""
    out = {}
    for (name, inst_id), (cls, style) in truth.items():
        if inst_id < 1000:
            out.setdefault(name, {})[cls] = style
    return out


def separability(feats, styles):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    folds = min(5, int(np.bincount(styles).min()) if len(np.unique(styles)) > 1 else 0)
    if folds < 2:
        return None
    return float(cross_val_score(LogisticRegression(max_iter=2000), feats, styles, cv=folds).mean())


def context_share(feats, styles, names, scenes, cls):
    """Within-style R^2 of the features on the other regions' styles (one-hot), pooled over styles;
    out-of-fold (5-fold) predictions, so the ~20 one-hot columns cannot fit noise."""
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import cross_val_predict

    others = sorted({c for n in names for c in scenes[n]} - {cls})
    onehot = np.asarray([[scenes[n].get(c, -1) == v for c in others for v in range(-1, 8)] for n in names],
                        np.float32)
    onehot = onehot[:, onehot.std(0) > 0]
    explained = total = 0.0
    for s in np.unique(styles):
        sel = styles == s
        if sel.sum() < 25:
            continue
        centred = feats[sel] - feats[sel].mean(0)
        predicted = cross_val_predict(Ridge(alpha=1.0), onehot[sel], feats[sel], cv=5)
        explained += (centred ** 2).sum() - ((feats[sel] - predicted) ** 2).sum()
        total += (centred ** 2).sum()
    return float(explained / total) if total > 0 else None


def mean_colours(data, rows):
    """Each row's instance's mean photo colour (the k-means step fed an ideal encoder)."""
    out = np.zeros((len(rows["name"]), 3), np.float32)
    for name in np.unique(rows["name"]):
        sel = np.nonzero(rows["name"] == name)[0]
        photo = np.asarray(Image.open(os.path.join(data, "train_img", f"{name}.png")), np.float32) / 127.5 - 1
        inst = np.asarray(Image.open(os.path.join(data, "train_inst", f"{name}.png"))).astype(np.int64)
        ids, means, _ = features_lib.instance_rows(photo, inst)
        lookup = dict(zip(ids.tolist(), means))
        out[sel] = [lookup[int(i)] for i in rows["pool_id"][sel]]
    return out


def measure_purity(rows, data):
    from sklearn.cluster import KMeans

    truth = true_styles(data, "train")
    scenes = scene_styles(truth)
    kept = rows["cluster"] >= 0
    colours = mean_colours(data, rows)
    result = {}
    for label in np.unique(rows["label"][kept]):
        sel = kept & (rows["label"] == label)
        keys = [(n, int(i)) for n, i in zip(rows["name"][sel], rows["pool_id"][sel])]
        cls = truth[keys[0]][0]
        styles = np.asarray([truth[k][1] for k in keys])
        n_true = len(np.unique(styles))
        feats = rows["feature"][sel]
        k_true = min(n_true, len(feats))
        own = KMeans(n_clusters=k_true, random_state=0, n_init=10).fit(feats).labels_ if k_true > 1 else \
            np.zeros(len(feats), int)
        k = int(rows["cluster"][sel].max() + 1)
        ideal = KMeans(n_clusters=k, random_state=0, n_init=10).fit(colours[sel]).labels_
        result[cls] = {"label": int(label), "instances": int(sel.sum()), "true_styles": n_true,
                       "purity_mean_colour": round(float(purity(ideal, styles)), 4),
                       "clusters": int(rows["cluster"][sel].max() + 1),
                       "purity": round(float(purity(rows["cluster"][sel], styles)), 4),
                       "purity_k_true": round(float(purity(own, styles)), 4)}
        acc = separability(feats, styles)
        if acc is not None:
            result[cls]["separable"] = round(acc, 4)
        names = rows["name"][sel]
        if all(i < 1000 for i in rows["pool_id"][sel]) and len(set(names)) == len(names) and n_true > 1:
            share = context_share(feats, styles, names, scenes, cls)
            if share is not None:
                result[cls]["context_r2"] = round(share, 4)
    return result


def load(data, name, role, folder):
    return np.asarray(Image.open(os.path.join(data, f"test_{folder}", f"{name}.png")))


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * np.log10(255.0 ** 2 / max(mse, 1e-10))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--data", required=True, help="the synthetic scenes the model was trained on")
    parser.add_argument("--out", required=True)
    parser.add_argument("--samples", type=int, default=6)
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    if not os.path.isfile(os.path.join(args.workdir, features_lib.CLUSTERS_FILE)):
        from pix2pixhd_jax.inference.encode import encode_features

        encode_features(args.workdir)
    with np.load(os.path.join(args.workdir, features_lib.INSTANCES_FILE)) as f:
        rows = {k: f[k] for k in f.files}
    results = {"purity": measure_purity(rows, args.data)}

    synth = Synthesizer.from_workdir(args.workdir)
    names = sorted(os.path.splitext(f)[0] for f in os.listdir(os.path.join(args.data, "test_label")))
    car = 26
    psnr_enc, psnr_rand, inside, outside, moved, distant = [], [], [], [], [], []
    grid_rows, change_rows = [], []
    for i, name in enumerate(names):
        label, inst = load(args.data, name, "label", "label"), load(args.data, name, "inst", "inst").astype(np.int32)
        real = load(args.data, name, "img", "img")
        encoded = synth.encode_styles(real, label, inst)
        out_enc = synth.synthesize(label, inst, encoded)
        out_rand = [synth.synthesize(label, inst, seed=0, sample=k) for k in range(3)]
        psnr_enc.append(psnr(out_enc, real))
        psnr_rand.append(np.mean([psnr(o, real) for o in out_rand]))
        if i < args.samples:
            grid_rows.append([visualize.colorize_labels(label), real, out_enc] + out_rand)
        cars = [(int((inst == k).sum()), int(k)) for k in np.unique(inst) if k // 1000 == car]
        n_styles = synth.clusters.num_styles(car)
        if cars and n_styles > 1:
            target = max(cars)[1]
            mask = inst == target
            centres = synth.clusters.centers[car]
            a, b = np.unravel_index(np.argmax(((centres[:, None] - centres[None]) ** 2).sum(-1)), (n_styles,) * 2)
            base = {k: v for k, v in encoded.items()}
            photo_a = synth.synthesize(label, inst, {**base, target: int(a)})
            photo_b = synth.synthesize(label, inst, {**base, target: int(b)})
            diff = np.abs(photo_a.astype(np.float64) - photo_b.astype(np.float64)).mean(-1)
            far = ~dilate(mask, 3)
            farther = ~dilate(mask, 16)
            inside.append(diff[mask].mean())
            outside.append(diff[far].mean())
            moved.append((diff[far] > 8).mean())
            distant.append(diff[farther].mean())
            if len(change_rows) < 4:
                change_rows.append([visualize.colorize_labels(label), visualize.gray(mask), photo_a, photo_b,
                                    np.clip(diff * 4, 0, 255).astype(np.uint8)[..., None].repeat(3, -1)])
    results["psnr_encoded"] = round(float(np.mean(psnr_enc)), 3)
    results["psnr_random_styles"] = round(float(np.mean(psnr_rand)), 3)
    results["test_images"] = len(names)
    if inside:
        results["style_change"] = {
            "cars": len(inside),
            "mean_abs_diff_inside": round(float(np.mean(inside)), 3),
            "mean_abs_diff_outside_dilated_3px": round(float(np.mean(outside)), 3),
            "fraction_outside_moved_over_8_levels": round(float(np.mean(moved)), 5),
            "mean_abs_diff_beyond_16px": round(float(np.mean(distant)), 3)}
    visualize.save_png(os.path.join(args.out, "samples.png"), visualize.grid(grid_rows))
    if change_rows:
        visualize.save_png(os.path.join(args.out, "style_change.png"), visualize.grid(change_rows))
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=2)
    print(json.dumps(results, indent=2))
    print(f"pictures and results.json in {os.path.abspath(args.out)}")


if __name__ == "__main__":
    main()
