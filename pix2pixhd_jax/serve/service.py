"""The interactive editor's service, without HTTP: sessions, validation and edits over
`inference.editing.Editor` (`serve.http` puts it on a port).

    pix2pixhd-jax serve --workdir runs/features [--host 127.0.0.1] [--port 8000]

Standard library HTTP (ThreadingHTTPServer); the page is the static files in
`pix2pixhd_jax/serve/page/` (plain HTML, JS and CSS, no build step), read into memory at
start. No path from a request reaches the filesystem: test-split scenes are chosen by name
or index from the list made at start, uploads are PNG bytes in the JSON body, downloads
come from memory.

API (JSON bodies, `Content-Type: application/json`; errors are {"error": "..."} with a 4xx
status that names the field, the value and the fix):

  GET  /api/info                       model, classes (id, name, colour, thing, k-means
                                       styles and their swatches), scenes, limits
  POST /api/open     {scene | index}   a test-split scene into a new session -> state
  POST /api/upload   {label, inst?, name?}  base64 PNGs (8/16-bit label ids; 16-bit instance
                                       ids, class*1000+k) into a new session -> state
  POST /api/paint    {session, class, points: [[x, y], ...], radius}  brush stroke -> state
  POST /api/fill     {session, class, x, y}  paint bucket: the connected region -> state
  POST /api/select   {session, x, y}   the object under a pixel -> {"selected": ...}
  POST /api/delete   {session, instance, fill_class?}  -> state
  POST /api/relabel  {session, instance, class}  -> state
  POST /api/style    {session, instance, style: K | "random" | "default", seed?}  -> state
                     (K: a k-means style of the object's class; with a generator that reads 3D
                     noise, a draw of the object's own noise, 0..2**31-1)
  POST /api/undo     {session}         -> state
  POST /api/close    {session}
  GET  /api/download/{label,inst,photo,colors}.png?session=ID

A state is {session, name, width, height, edits, can_undo, photo, labels (PNG data URLs),
selected, timing_ms}. Each session holds its own Editor under its own lock; synthesis runs
under one model lock (JAX calls are serialized); the least recently used session is dropped
beyond --max-sessions.
"""

import base64
import binascii
import collections
import dataclasses
import io
import json
import logging
import re
import secrets
import threading
import time
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image

from pix2pixhd_jax.data.cityscapes_labels import palette
from pix2pixhd_jax.data.instances import dataset_classes, instances_from_labels, png_numbering
from pix2pixhd_jax.data.label_maps import image_ids
from pix2pixhd_jax.data.visualize import colorize_labels, png_image
from pix2pixhd_jax.errors import ApiError, DataError, UserError
from pix2pixhd_jax.inference.editing import Editor, Scene
from pix2pixhd_jax.inference.synthesis import random_style_index

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_DRAW = 2 ** 31  # draws of an object's noise: indices 0..MAX_DRAW-1
ID_MAP_FIX = "upload ids in one channel (a grayscale PNG), not colours such as Cityscapes' *_color.png."
DOWNLOADS = ("label", "inst", "photo", "colors")


@dataclasses.dataclass
class Limits:
    max_body_bytes: int = 32 << 20  # a JSON request (base64 uploads are 4/3 of the PNG)
    max_upload_bytes: int = 8 << 20  # one decoded PNG
    max_pixels: int = 2048 * 1024  # Cityscapes' full resolution
    max_side: int = 4096
    min_side: int = 16
    max_sessions: int = 16
    max_history: int = 30  # scenes kept per session for undo ...
    max_history_bytes: int = 128 << 20  # ... fewer for large maps (2048x1024: 16 MiB a scene, so 8)
    max_points: int = 4096  # per brush stroke
    max_radius: int = 256
    request_timeout_s: float = 60.0  # a client that stops sending frees its thread (408)


@dataclasses.dataclass
class Session:
    id: str
    name: str
    editor: Editor
    photo: np.ndarray
    scaled_from: Optional[list] = None  # [width, height] of the map given, when the session works at another size
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


class _Serialized:
    """The synthesizer with every JAX call under one lock (one model, many request threads)."""

    def __init__(self, synth, lock):
        self._synth, self._lock = synth, lock

    def __getattr__(self, name):
        return getattr(self._synth, name)

    def synthesize(self, *args, **kwargs):
        with self._lock:
            return self._synth.synthesize(*args, **kwargs)


def png_bytes(image: np.ndarray, compress_level: int = 1) -> bytes:
    """A PNG of (H, W[, C]) uint8 or uint16 levels (one-channel photos as grayscale, 16-bit kept)."""
    buf = io.BytesIO()
    png_image(image).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def data_url(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:80].strip("._") or "scene"


# ----- validation of request fields -------------------------------------------------------------
def _number(body: dict, field: str, lo: float, hi: float, fix: str, integer: bool = True):
    if field not in body:
        raise ApiError(400, f"field '{field}' is missing; {fix}")
    value = body[field]
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or (isinstance(value, float) and not np.isfinite(value)):
        kind = "an integer" if integer else "a number"
        raise ApiError(400, f"field '{field}': {json.dumps(value)[:40]} is not {kind}; {fix}")
    if not lo <= value <= hi:
        raise ApiError(400, f"field '{field}': {value} is out of range ({lo}..{hi}); {fix}")
    return value


def _random_draws(body: dict) -> np.random.Generator:
    """The generator a 'random' style draws from: the request's seed, or a fresh one."""
    seed = body.get("seed", secrets.randbits(31))
    return np.random.default_rng(_number({"seed": seed}, "seed", 0, 2 ** 31 - 1, "an integer seed, or leave it out."))


def check_instances(label: np.ndarray, inst: np.ndarray, where: str):
    """Instance ids: the class id for a stuff region, an id >= 1000 for an object, either
    Cityscapes' class*1000+k or make-instances' 1000+n (objects numbered across the image,
    each on one class)."""
    obj = inst >= 1000
    cityscapes_bad = inst != np.where(obj, label * 1000 + inst % 1000, label)
    if not cityscapes_bad.any():
        return
    bad = ~obj & (inst != label)
    if not bad.any():
        pairs, pixels = np.unique(np.stack([inst[obj], label[obj]], 1), axis=0, return_counts=True)
        ids, classes = np.unique(pairs[:, 0], return_counts=True)
        if not (classes > 1).any():
            return  # numbered across the image, every object on one class
        if cityscapes_bad[obj].mean() < 0.5:  # mostly class*1000+k: report against that convention
            bad = cityscapes_bad
        else:  # an object on two classes: its pixels off its main class are wrong
            split = ids[classes > 1][0]
            main = pairs[pairs[:, 0] == split][np.argmax(pixels[pairs[:, 0] == split]), 1]
            bad = (inst == split) & (label != main)
    y, x = (int(v) for v in np.argwhere(bad)[0])
    raise ApiError(400, f"{where}: instance id {int(inst[y, x])} at pixel ({x}, {y}) lies on class "
                        f"{int(label[y, x])}; ids must be the class id (stuff) or an object's id: class*1000+k, as "
                        "in Cityscapes' *_gtFine_instanceIds.png, or 1000+n across the image, one class per object "
                        "(make-instances). Upload the matching instance map, or none.")


class EditorService:
    """The editor's state and operations, without HTTP: sessions, validation, edits."""

    def __init__(self, synth, scenes: Optional[Dict[str, Tuple[str, Optional[str]]]] = None,
                 limits: Optional[Limits] = None, seed: int = 0, resize: str = "config"):
        if synth.maps.label_nc == 0:
            raise UserError("this model takes RGB label images (data.label_nc=0); the editor paints label ids, "
                            "so it needs a model trained on label maps (label_nc > 0).")
        self.synth = synth
        self.model_lock = threading.Lock()
        self._serialized = _Serialized(synth, self.model_lock)
        self.scenes = collections.OrderedDict(scenes or {})  # name -> (label file, inst file | None)
        self.limits = limits or Limits()
        self.seed = seed
        if resize not in ("config", "none"):
            raise UserError(f"resize={resize!r} is not 'config' or 'none'.")
        self.resize = resize
        self.names, self.things = dataset_classes(synth.config.data)
        self.sessions: "collections.OrderedDict[str, Session]" = collections.OrderedDict()
        self._sessions_lock = threading.Lock()
        self.label_nc = synth.maps.label_nc
        self.styled = synth.has_encoder and not synth.label_feat and synth.clusters is not None
        self.noise = bool(synth.z_dim)  # restyling draws an object's own 3D noise
        self.info = self._info()

    # ----- model description --------------------------------------------------------------
    def _swatches(self, cls: int):
        """One colour per k-means style: the centre's first three features, scaled over the class's
        centres (a hint to tell styles apart, not the colour G paints)."""
        centers = self.synth.clusters.centers.get(cls) if self.styled else None
        if centers is None or len(centers) == 0:
            return []
        c = np.asarray(centers, np.float64)[:, :3]
        if c.shape[1] < 3:
            c = np.pad(c, [(0, 0), (0, 3 - c.shape[1])])
        lo, hi = c.min(0), c.max(0)
        rgb = np.round(255 * (c - lo) / np.where(hi > lo, hi - lo, 1.0)).astype(int)
        return ["#%02x%02x%02x" % tuple(v) for v in rgb]

    def _info(self) -> dict:
        colours = palette(max(self.label_nc, 1))
        classes = [{"id": i, "name": self.names.get(i, f"class {i}"), "color": "#%02x%02x%02x" % tuple(colours[i]),
                    "thing": i in self.things, "styles": self._swatches(i)} for i in range(self.label_nc)]
        lim = self.limits
        data = self.synth.config.data
        size = ("label maps as they come" if self.resize == "none" else
                f"label maps scaled as the model's test transform scales them ({data.resize_or_crop}, load_size "
                f"{data.load_size}): a 2048x1024 map is worked on at "
                f"{'x'.join(map(str, self.synth.maps.test_size(2048, 1024)))}")
        return {"label_nc": self.label_nc, "styles": self.styled, "noise": self.noise,
                "has_encoder": bool(self.synth.has_encoder),
                "classes": classes, "scenes": list(self.scenes), "size": size, "resize": self.resize,
                "limits": {"max_upload_bytes": lim.max_upload_bytes, "max_pixels": lim.max_pixels,
                           "max_side": lim.max_side, "min_side": lim.min_side, "max_radius": lim.max_radius,
                           "max_points": lim.max_points, "max_history": lim.max_history,
                           "max_history_bytes": lim.max_history_bytes}}

    # ----- sessions ---------------------------------------------------------------------------
    def _new_session(self, name: str, label: np.ndarray, inst: Optional[np.ndarray]) -> dict:
        """A session on (label, inst) (validated), scaled to the model's test size unless resize is
        'none'; without an instance map, every connected region of a thing class is an object."""
        start = time.perf_counter()
        given = label.shape[::-1]
        if self.resize == "config":
            label, inst, _ = self.synth.maps.prepare(label, inst, where=name)
        inst = instances_from_labels(label, self.things, png_numbering(self.things)) if inst is None else inst
        # The dataset's thing classes, and any class the map already splits into objects.
        scene = Scene.from_arrays(label, inst, things=self.things | frozenset(np.unique(label[inst >= 1000]).tolist()))
        per_scene = scene.label.nbytes + scene.inst.nbytes
        keep = max(2, min(self.limits.max_history, self.limits.max_history_bytes // per_scene))
        editor = Editor(self._serialized, scene, seed=self.seed, max_history=keep)
        photo = editor.render()
        session = Session(secrets.token_urlsafe(12), name, editor, photo,
                          scaled_from=list(given) if given != label.shape[::-1] else None)
        with self._sessions_lock:
            self.sessions[session.id] = session
            while len(self.sessions) > self.limits.max_sessions:
                self.sessions.popitem(last=False)
        with session.lock:
            return self._state(session, start)

    def _session(self, body: dict) -> Session:
        sid = body.get("session")
        if not isinstance(sid, str):
            raise ApiError(400, "field 'session' is missing or not a string; send the id that /api/open or "
                                "/api/upload returned.")
        with self._sessions_lock:
            session = self.sessions.get(sid)
            if session is not None:
                self.sessions.move_to_end(sid)
        if session is None:
            raise ApiError(404, f"field 'session': {sid[:40]!r} is unknown or expired (the server keeps the "
                                f"{self.limits.max_sessions} most recently used); open a scene again.")
        return session

    def close(self, body: dict) -> dict:
        session = self._session(body)
        with self._sessions_lock:
            self.sessions.pop(session.id, None)
        return {"closed": session.id}

    # ----- loading scenes -----------------------------------------------------------------------
    def open_scene(self, body: dict) -> dict:
        names = list(self.scenes)
        if not names:
            raise ApiError(404, "this server has no test-split scenes (the workdir's data.dataroot has none, or "
                                "--dataroot was not given); upload a label map instead.")
        if "index" in body:
            name = names[_number(body, "index", 0, len(names) - 1, f"pick one of the {len(names)} scenes.")]
        else:
            name = body.get("scene")
            if not isinstance(name, str) or name not in self.scenes:
                shown = json.dumps(name)[:60] if name is not None else "missing"
                raise ApiError(404, f"field 'scene': {shown} is not one of the test-split scenes; pick a name from "
                                    f"/api/info's 'scenes' (e.g. {names[0]!r}) or give 'index' 0..{len(names) - 1}.")
        label_file, inst_file = self.scenes[name]
        try:
            with open(label_file, "rb") as f:
                label_bytes = f.read()
            inst_bytes = None
            if inst_file:
                with open(inst_file, "rb") as f:
                    inst_bytes = f.read()
        except OSError as e:
            logging.error("test scene %s: %s", name, e)
            raise ApiError(500, f"scene {name!r}: its files cannot be read any more ({e.strerror}); the test split "
                                "changed after the server started: restart it.") from None
        label = self._decode_png(label_bytes, f"scene {name!r} label map", "label map", 16 << 20)
        self._check_labels(label, f"scene {name!r}")
        inst = None
        if inst_bytes is not None:
            inst = self._decode_png(inst_bytes, f"scene {name!r} instance map", "instance map", 16 << 20)
        return self._new_session(name, label, self._instances(label, inst, f"scene {name!r}"))

    def upload(self, body: dict) -> dict:
        label = self._decode_field(body, "label", "label map")
        self._check_labels(label, "field 'label'")
        inst = self._decode_field(body, "inst", "instance map") if body.get("inst") is not None else None
        name = body.get("name", "upload")
        name = _safe_name(name) if isinstance(name, str) else "upload"
        return self._new_session(name, label, self._instances(label, inst, "field 'inst'"))

    def _decode_field(self, body: dict, field: str, what: str) -> np.ndarray:
        value = body.get(field)
        if not isinstance(value, str):
            raise ApiError(400, f"field '{field}' is {'missing' if value is None else type(value).__name__}; send the "
                                f"{what} as a base64 PNG string (a data: URL works too).")
        if value.startswith("data:"):
            head, _, value = value.partition(",")
            if head != "data:image/png;base64":
                raise ApiError(415, f"field '{field}': a {head[5:40]!r} data URL; upload a PNG "
                                    "(data:image/png;base64,...).")
        cap = self.limits.max_upload_bytes
        if len(value) > cap * 4 // 3 + 4:
            raise ApiError(413, f"field '{field}': about {len(value) * 3 // 4 / 2 ** 20:.1f} MiB, over the "
                                f"{cap / 2 ** 20:.1f} MiB cap per image; upload a smaller PNG.")
        try:
            data = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, f"field '{field}': not valid base64; encode the PNG file's bytes with base64.") \
                from None
        return self._decode_png(data, f"field '{field}'", what, cap)

    def _decode_png(self, data: bytes, where: str, what: str, cap: int) -> np.ndarray:
        if len(data) > cap:
            raise ApiError(413, f"{where}: {len(data) / 2 ** 20:.1f} MiB, over the {cap / 2 ** 20:.1f} MiB cap; "
                                "upload a smaller PNG.")
        if not data.startswith(PNG_MAGIC):
            raise ApiError(415, f"{where}: not a PNG (it starts with {data[:8]!r}); the {what} must be a PNG file.")
        lim = self.limits
        try:
            img = Image.open(io.BytesIO(data), formats=["PNG"])
            w, h = img.size  # read from the header: checked before any pixel is decoded
            if w * h > lim.max_pixels or max(w, h) > lim.max_side:
                raise ApiError(413, f"{where}: {w}x{h} pixels, over this server's cap of {lim.max_pixels} pixels "
                                    f"(and {lim.max_side} per side); downscale it with nearest-neighbour, or start "
                                    "the server with a larger --max-pixels.")
            if min(w, h) < lim.min_side:
                raise ApiError(400, f"{where}: {w}x{h} pixels; both sides must be at least {lim.min_side}.")
            img.load()
        except ApiError:
            raise
        except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise ApiError(400, f"{where}: the PNG cannot be decoded ({e}); re-export the {what}.") from None
        try:
            return image_ids(img, where, what, ID_MAP_FIX)
        except DataError as e:
            raise ApiError(400, str(e)) from None

    def _check_labels(self, label: np.ndarray, where: str):
        try:
            self.synth.maps.check_label(label, where)
        except UserError as e:
            raise ApiError(400, str(e)) from None

    def _instances(self, label: np.ndarray, inst: Optional[np.ndarray], where: str) -> Optional[np.ndarray]:
        if inst is None:
            return None
        if inst.shape != label.shape:
            raise ApiError(400, f"{where}: the instance map is {inst.shape[1]}x{inst.shape[0]}, the label map "
                                f"{label.shape[1]}x{label.shape[0]}; upload the instance map of the same scene.")
        check_instances(label, inst, where)
        return inst

    # ----- edits -------------------------------------------------------------------------------
    def _class(self, body: dict, field: str = "class") -> int:
        return _number(body, field, 0, self.label_nc - 1, f"a class id of this model (0..{self.label_nc - 1}).")

    def _xy(self, body: dict, editor: Editor) -> Tuple[int, int]:
        h, w = editor.scene.label.shape
        x = _number(body, "x", 0, w - 1, f"a pixel column inside the {w}x{h} image.")
        y = _number(body, "y", 0, h - 1, f"a pixel row inside the {w}x{h} image.")
        return x, y

    def _instance(self, body: dict, editor: Editor) -> int:
        iid = _number(body, "instance", 0, 2 ** 31 - 1, "an instance id from /api/select.")
        if not (editor.scene.inst == iid).any():
            raise ApiError(404, f"field 'instance': {iid} is not in the scene (it may have been edited away); "
                                "select the object again.")
        return iid

    def _edit(self, body: dict, fn) -> dict:
        session = self._session(body)
        with session.lock:
            start = time.perf_counter()
            try:
                session.photo, selected = fn(session.editor)
            except UserError as e:
                raise ApiError(400, str(e)) from None
            return self._state(session, start, selected)

    def paint(self, body: dict) -> dict:
        cls = self._class(body)
        points = body.get("points")

        def run(editor):
            h, w = editor.scene.label.shape
            if not isinstance(points, list) or not 1 <= len(points) <= self.limits.max_points:
                raise ApiError(400, f"field 'points': expected a list of 1..{self.limits.max_points} [x, y] pairs, "
                                    f"got {json.dumps(points)[:60]}.")
            for p in points:
                if (not isinstance(p, list) or len(p) != 2
                        or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p)):
                    raise ApiError(400, f"field 'points': {json.dumps(p)[:40]} is not an [x, y] pair of numbers.")
                if not (0 <= p[0] <= w - 1 and 0 <= p[1] <= h - 1):
                    raise ApiError(400, f"field 'points': [{p[0]}, {p[1]}] is outside the {w}x{h} image (x 0..{w - 1}, "
                                        f"y 0..{h - 1}); clamp the stroke to the image.")
            radius = _number(body, "radius", 0.5, self.limits.max_radius, "the brush radius in pixels.", integer=False)
            return editor.brush(points, radius, cls), None
        return self._edit(body, run)

    def fill(self, body: dict) -> dict:
        cls = self._class(body)

        def run(editor):
            x, y = self._xy(body, editor)
            return editor.fill(y, x, cls), None
        return self._edit(body, run)

    def delete(self, body: dict) -> dict:
        fill = self._class(body, "fill_class") if body.get("fill_class") is not None else None

        def run(editor):
            return editor.remove(self._instance(body, editor), fill), None
        return self._edit(body, run)

    def relabel(self, body: dict) -> dict:
        cls = self._class(body)

        def run(editor):
            iid = self._instance(body, editor)
            new_id = editor.scene.new_instance_id(cls)  # the id Scene.relabel gives the object
            return editor.relabel(iid, cls), new_id
        return self._edit(body, run)

    def style(self, body: dict) -> dict:
        if self.noise:
            return self._noise_style(body)
        if not self.styled:
            why = ("has no feature encoder" if not self.synth.has_encoder else
                   "pools styles per class (model.label_feat)" if self.synth.label_feat else
                   "has no clusters file (run `pix2pixhd-jax encode-features` first)")
            raise ApiError(400, f"styles do not apply: this model {why}.")
        style = body.get("style")

        def run(editor):
            iid = self._instance(body, editor)
            cls = int(editor.scene.label[editor.scene.inst == iid][0])
            n = self.synth.clusters.num_styles(cls)
            if style == "default":
                return editor.set_style(iid, None), iid
            if n == 0:
                raise ApiError(400, f"class {cls} ({self.names.get(cls, cls)}) has no k-means styles in this "
                                    "model's clusters file; pick an object of a class with styles.")
            if style == "random":
                current = self._current_style(editor, iid, cls)
                choices = [k for k in range(n) if k != current] or [0]
                index = choices[int(_random_draws(body).integers(len(choices)))]
            else:
                index = _number(body, "style", 0, n - 1, f"a style of class {cls}: 0..{n - 1}, 'random' or 'default'.")
            return editor.set_style(iid, int(index)), iid
        return self._edit(body, run)

    def _noise_style(self, body: dict) -> dict:
        """An object of a generator with 3D noise restyled: its own draw of the noise (K, or a random
        draw other than its current one), or the picture's noise again ("default")."""
        style = body.get("style")

        def run(editor):
            iid = self._instance(body, editor)
            if style == "default":
                return editor.set_style(iid, None), iid
            if style == "random":
                current = editor.scene.style_map.get(iid)
                index = int(_random_draws(body).integers(MAX_DRAW))
                if index == current:
                    index = (index + 1) % MAX_DRAW
            else:
                index = _number(body, "style", 0, MAX_DRAW - 1,
                                f"a draw of the object's noise: 0..{MAX_DRAW - 1}, 'random' or 'default'.")
            return editor.set_style(iid, int(index)), iid
        return self._edit(body, run)

    def undo(self, body: dict) -> dict:
        return self._edit(body, lambda editor: (editor.undo(), None))

    def select(self, body: dict) -> dict:
        session = self._session(body)
        with session.lock:
            x, y = self._xy(body, session.editor)
            return {"selected": self._selected(session.editor, session.editor.scene.instance_at(y, x))}

    # ----- responses ----------------------------------------------------------------------------
    def _current_style(self, editor: Editor, iid: int, cls: int):
        style = editor.scene.style_map.get(iid)
        if isinstance(style, int):
            return style
        if style is not None:
            return None  # a feature vector (not one of the palette's)
        n = self.synth.clusters.num_styles(cls) if self.styled else 0
        return random_style_index(editor.seed, 0, iid, n) if n else None

    def _selected(self, editor: Editor, iid: int) -> dict:
        scene = editor.scene
        mask = scene.inst == iid
        ys, xs = np.nonzero(mask)
        cls = int(scene.label[ys[0], xs[0]])
        overlay = np.zeros(mask.shape + (4,), np.uint8)
        overlay[mask] = (255, 255, 255, 255)
        chosen = scene.style_map.get(iid)
        return {"instance": int(iid), "class": cls, "name": self.names.get(cls, f"class {cls}"),
                "thing": iid >= 1000, "pixels": int(mask.sum()),
                "bbox": [int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())],
                "styles": self.synth.clusters.num_styles(cls) if self.styled else 0,
                "style": (self._current_style(editor, iid, cls) if self.styled else
                          chosen if self.noise and isinstance(chosen, int) else None),
                "style_kind": "chosen" if isinstance(chosen, int) else "vector" if chosen is not None else "default",
                "mask": data_url(png_bytes(overlay))}

    def _state(self, session: Session, start: float, selected: Optional[int] = None) -> dict:
        editor = session.editor
        edit_ms = (time.perf_counter() - start) * 1000
        photo = data_url(png_bytes(session.photo))
        labels = data_url(png_bytes(colorize_labels(editor.scene.label)))
        h, w = editor.scene.label.shape
        return {"session": session.id, "name": session.name, "width": w, "height": h,
                "scaled_from": session.scaled_from,
                "edits": len(editor.history) - 1, "can_undo": len(editor.history) > 1,
                "photo": photo, "labels": labels,
                "selected": self._selected(editor, selected) if selected is not None else None,
                "timing_ms": {"edit_and_synthesis": round(edit_ms, 1),
                              "total": round((time.perf_counter() - start) * 1000, 1)}}

    def download(self, session_id: str, what: str) -> Tuple[bytes, str]:
        if what not in DOWNLOADS:
            raise ApiError(404, f"no download {what!r}; one of {', '.join(d + '.png' for d in DOWNLOADS)}.")
        session = self._session({"session": session_id})
        with session.lock:
            scene = session.editor.scene
            if what == "label":
                image = scene.label.astype(np.uint8 if self.label_nc <= 256 else np.uint16)
            elif what == "inst":
                top = int(scene.inst.max())
                if top > np.iinfo(np.uint16).max:  # never cast silently: the ids would wrap into other objects'
                    raise ApiError(409, f"instance id {top} does not fit the 16-bit instance PNG (ids up to 65535); "
                                        "renumber the uploaded instance map's objects below 65536.")
                image = scene.inst.astype(np.uint16)
            elif what == "photo":
                image = session.photo
            else:
                image = colorize_labels(scene.label)
            return png_bytes(image, compress_level=6), f"{_safe_name(session.name)}_{what}.png"
