"""Shared by the editor server's tests: a tiny model workdir with clusters and a hand-made test
split, the server on a free port in a thread, and small HTTP helpers."""

import base64
import io
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
from PIL import Image

from conftest import make_model_workdir, save

W, H = 128, 64
ROAD, SIDEWALK, BUILDING, SKY, PERSON, CAR = 7, 8, 11, 23, 24, 26
CAR_A, CAR_B, PERSON_A = 26000, 26001, 24000
N_CAR_STYLES = 4


def box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


BOXES = {CAR_A: box(38, 50, 14, 40), CAR_B: box(36, 46, 84, 104), PERSON_A: box(22, 44, 62, 68)}


def scene_arrays(variant=0):
    """Sky on top, buildings, a sidewalk, the road; two cars and a person (ids as in Cityscapes)."""
    label = np.full((H, W), ROAD, np.uint8)
    label[:16] = SKY
    label[16:32] = BUILDING
    label[32:36] = SIDEWALK
    if variant:
        label[16:32, 100:] = SKY
    inst = label.astype(np.uint16)
    for i, m in BOXES.items():
        label[m], inst[m] = i // 1000, i
    return label, inst


def car_clusters(feat_num=3):
    """Car styles far apart (the corners of the feature cube), other classes random."""
    from pix2pixhd_jax.inference import features

    rng = np.random.default_rng(5)
    centers = {c: rng.uniform(-1, 1, size=(3, feat_num)).astype(np.float32) for c in (ROAD, BUILDING, SKY)}
    centers[CAR] = np.array([[-1, -1, -1], [1, 1, 1], [1, -1, 1], [-1, 1, -1]], np.float32)[:N_CAR_STYLES, :feat_num]
    return features.FeatureClusters(centers=centers, feat_num=feat_num)


def make_editor_workdir(root):
    """A workdir with a random tiny model, its clusters file and a 2-scene test split; returns it."""
    from pix2pixhd_jax.inference import features

    data = os.path.join(root, "data")
    for i in range(2):
        label, inst = scene_arrays(i)
        save(f"{data}/test_label/scene_{i}.png", label)
        save(f"{data}/test_inst/scene_{i}.png", inst)
        save(f"{data}/test_img/scene_{i}.png", np.zeros((H, W, 3), np.uint8))
    workdir = os.path.join(root, "model")
    # Trained (as it were) at the scenes' width: the editor works on them at their own size.
    config, _ = make_model_workdir(workdir, f"data.dataroot={data}", f"data.load_size={W}")
    features.save_clusters(os.path.join(workdir, features.CLUSTERS_FILE), car_clusters(int(config.model.feat_num)))
    return workdir


class RunningServer:
    """make_server(...) serving in a daemon thread; .url, .stop()."""

    def __init__(self, service, host="127.0.0.1"):
        from pix2pixhd_jax.serve import make_server

        self.service = service
        self.server = make_server(service, host, 0)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def request(url, body=None, method=None, headers=None, raw=None):
    """(status, parsed JSON or bytes, headers) without raising on 4xx/5xx."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    hdrs = {"Content-Type": "application/json"} if data is not None else {}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=hdrs, method=method or ("POST" if data is not None else "GET"))
    try:
        with urllib.request.urlopen(req, timeout=120) as res:
            status, payload, rh = res.status, res.read(), res.headers
    except urllib.error.HTTPError as e:
        status, payload, rh = e.code, e.read(), e.headers
    if rh.get("Content-Type", "").startswith("application/json"):
        payload = json.loads(payload)
    return status, payload, rh


def png_b64(array, mode=None) -> str:
    buf = io.BytesIO()
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def decode_data_url(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def download(base, session, what) -> np.ndarray:
    status, payload, headers = request(f"{base}/api/download/{what}.png?session={session}")
    assert status == 200 and headers["Content-Type"] == "image/png", payload
    return np.asarray(Image.open(io.BytesIO(payload)))


def dilate(mask, radius):
    from scipy import ndimage

    return ndimage.binary_dilation(mask, iterations=radius)


def change_inside_vs_outside(before, after, mask, margin):
    """Mean |photo change| inside the mask and beyond the mask grown by `margin` pixels."""
    diff = np.abs(after.astype(float) - before.astype(float)).mean(-1)
    far = ~dilate(mask, margin)
    return diff[mask].mean(), diff[far].mean()
