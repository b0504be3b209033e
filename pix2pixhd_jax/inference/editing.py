"""Object-level editing of a scene (paper sec. 3.4 and 4: add, remove, relabel objects,
change one object's look), each edit followed by synthesis in one call.

A `Scene` is immutable: (label ids, instance ids, chosen styles); every edit returns a
new Scene, which makes undo a list. Instance ids follow Cityscapes: an object of a class
with instances (a "thing": car, person, ...) gets label*1000+k (1000+n across the image where
a thing class is above 64, as make-instances numbers them, so that ids fit 16 bits); a region
of a "stuff" class (road, sky) has the label id itself, so painting stuff merges with that
class's region, as in the real annotations.

    synth = Synthesizer.from_workdir("runs/features")
    editor = Editor(synth, Scene.from_arrays(label, inst), seed=0)
    photo = editor.set_style(26001, 3)        # car 26001 takes k-means style 3 of its class
                                              # (with 3D noise, OASIS: its noise draw 3)
    photo = editor.remove(26002)              # filled with the class around it
    photo = editor.paste(mask, label=26)      # a new car where mask is True
    photo = editor.undo()

Masks for a painting tool: `brush_mask` (a stroke of round brush dabs along a polyline)
and `Scene.fill_mask` (the connected region under a pixel, as a paint bucket).
"""

import dataclasses
from typing import Dict, FrozenSet, Optional, Tuple

import numpy as np
from scipy import ndimage

from pix2pixhd_jax.data.instances import MAX_OBJECTS_PER_CLASS, THINGS, png_numbering
from pix2pixhd_jax.errors import EditError

CITYSCAPES_THINGS = THINGS["cityscapes"]
MAX_INSTANCE_ID = int(np.iinfo(np.uint16).max)  # the editor's instance maps download as 16-bit PNGs


def _frozen(styles) -> Tuple:
    return tuple(sorted((int(k), int(v) if isinstance(v, (int, np.integer)) else tuple(np.ravel(v).tolist()))
                        for k, v in styles.items()))


def dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    out = mask.copy()
    for _ in range(radius):
        grown = out.copy()
        grown[1:] |= out[:-1]
        grown[:-1] |= out[1:]
        grown[:, 1:] |= out[:, :-1]
        grown[:, :-1] |= out[:, 1:]
        out = grown
    return out


def brush_mask(shape, points, radius: float) -> np.ndarray:
    """(H, W) bool: a round brush of `radius` pixels dragged along the polyline `points`
    ((x, y) pairs in pixel coordinates); one point is one dab. Parts outside the image are cut."""
    h, w = shape
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    if len(pts) == 0:
        raise EditError("the brush stroke has no points.")
    if not np.isfinite(pts).all():
        raise EditError("the brush stroke has a coordinate that is not a finite number.")
    if not radius > 0:
        raise EditError(f"brush radius {radius}: must be positive.")
    mask = np.zeros((h, w), bool)
    segments = zip(pts, pts[1:]) if len(pts) > 1 else [(pts[0], pts[0])]
    for a, b in segments:
        # Only the segment's bounding box (grown by the radius) can be reached.
        x0, x1 = int(max(np.floor(min(a[0], b[0]) - radius), 0)), int(min(np.ceil(max(a[0], b[0]) + radius), w - 1))
        y0, y1 = int(max(np.floor(min(a[1], b[1]) - radius), 0)), int(min(np.ceil(max(a[1], b[1]) + radius), h - 1))
        if x0 > x1 or y0 > y1:
            continue
        ys, xs = np.mgrid[y0:y1 + 1, x0:x1 + 1].astype(np.float64)
        d = b - a
        length2 = float(d @ d)
        t = 0.0 if length2 == 0 else np.clip(((xs - a[0]) * d[0] + (ys - a[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (xs - (a[0] + t * d[0])) ** 2 + (ys - (a[1] + t * d[1])) ** 2
        mask[y0:y1 + 1, x0:x1 + 1] |= dist2 <= radius * radius
    return mask


@dataclasses.dataclass(frozen=True, eq=False)
class Scene:
    label: np.ndarray  # (H, W) int32 label ids
    inst: np.ndarray  # (H, W) int32 instance ids
    styles: Tuple = ()  # ((instance id, cluster index | feature tuple), ...)
    things: FrozenSet[int] = CITYSCAPES_THINGS

    @classmethod
    def from_arrays(cls, label, inst=None, styles=None, things=None):
        label = np.array(label, np.int32)  # own copies: freezing them must not freeze the caller's arrays
        if label.ndim != 2:
            raise EditError(f"the label map has shape {label.shape}; expected (H, W) ids.")
        inst = label.copy() if inst is None else np.array(inst, np.int32)
        if inst.shape != label.shape:
            raise EditError(f"the instance map is {inst.shape}, the label map {label.shape}: they must match.")
        if things is None:  # Cityscapes' thing classes, plus any class the map already splits into objects
            things = CITYSCAPES_THINGS | frozenset(np.unique(label[inst >= 1000]).tolist())
        label.setflags(write=False)
        inst.setflags(write=False)
        return cls(label, inst, _frozen(styles or {}), frozenset(things))

    # ----- queries -------------------------------------------------------------------
    @property
    def style_map(self) -> Dict[int, object]:
        return {k: (v if isinstance(v, int) else np.asarray(v, np.float32)) for k, v in self.styles}

    def instances(self):
        """[(instance id, label, pixel count)] of the scene, sorted by id."""
        uniq, first, counts = np.unique(self.inst.reshape(-1), return_index=True, return_counts=True)
        return [(int(i), int(self.label.reshape(-1)[f]), int(c)) for i, f, c in zip(uniq, first, counts)]

    def mask(self, instance_id: int) -> np.ndarray:
        m = self.inst == instance_id
        if not m.any():
            raise EditError(f"instance {instance_id} is not in the scene (it has "
                            f"{[i for i, _, _ in self.instances()][:20]}...).")
        return m

    def instance_at(self, y: int, x: int) -> int:
        h, w = self.inst.shape
        if not (0 <= y < h and 0 <= x < w):
            raise EditError(f"pixel ({x}, {y}) is outside the {w}x{h} scene.")
        return int(self.inst[y, x])

    def fill_mask(self, y: int, x: int) -> np.ndarray:
        """The paint bucket's region: the 4-connected pixels of the instance under (x, y) that
        touch it (for a stuff class, its connected piece of that class)."""
        instance_id = self.instance_at(y, x)
        components, _ = ndimage.label(self.inst == instance_id)
        return components == components[y, x]

    def new_instance_id(self, label: int) -> int:
        """The id of a new object of a thing class, numbered as make-instances numbers the scene's
        thing classes (so it fits the 16-bit instance PNG the editor downloads): label*1000+k with
        the smallest free k where every thing class is 64 or less, else the smallest free id from
        1000 up (1000+n across the image, for ADE20K's classes up to 150). Stuff: the label id."""
        if label not in self.things:
            return int(label)
        if png_numbering(self.things) == "class":
            low, high, scheme = label * 1000, label * 1000 + MAX_OBJECTS_PER_CLASS, f"label*1000+k for class {label}"
        else:
            low, high, scheme = 1000, MAX_INSTANCE_ID + 1, "1000+n in a 16-bit instance map"
        used = np.unique(self.inst[(self.inst >= low) & (self.inst < high)])
        free = np.setdiff1d(np.arange(low, high), used, assume_unique=True)
        if free.size == 0:
            raise EditError(f"no free instance id left ({scheme}: {high - low} objects); remove an object first.")
        return int(free[0])

    # ----- edits (each returns a new Scene) ---------------------------------------------
    def relabel(self, instance_id: int, label: int) -> Tuple["Scene", int]:
        """The object becomes class `label` (same shape); returns (scene, its new instance id)."""
        mask = self.mask(instance_id)
        new_id = self.new_instance_id(int(label))
        styles = {k: v for k, v in self.styles if k != instance_id}
        scene = Scene.from_arrays(*_painted(self, mask, int(label), new_id), styles, self.things)
        return scene, new_id

    def remove(self, instance_id: int, fill_label: Optional[int] = None) -> "Scene":
        """Delete the object: its pixels take `fill_label` (default: the most common class around it)."""
        mask = self.mask(instance_id)
        if fill_label is None:
            ring = dilate(mask, 3) & ~mask
            around = self.label[ring] if ring.any() else self.label[~mask]
            if around.size == 0:
                raise EditError("the object covers the whole scene; name the fill class (fill_label).")
            fill_label = int(np.bincount(around).argmax())
        fill_id = self.new_instance_id(int(fill_label))
        styles = {k: v for k, v in self.styles if k != instance_id}
        return Scene.from_arrays(*_painted(self, mask, int(fill_label), fill_id), styles, self.things)

    def paste(self, mask, label: int, style=None) -> Tuple["Scene", int]:
        """A new object of class `label` where mask is True (over whatever was there)."""
        mask = self._check_mask(mask)
        new_id = self.new_instance_id(int(label))
        new_label, new_inst = _painted(self, mask, int(label), new_id)
        # Objects painted over entirely lose their style, or a later object reusing the id would inherit it.
        vanished = set(np.unique(self.inst[mask]).tolist()) - set(np.unique(new_inst).tolist())
        styles = {k: v for k, v in self.styles if k not in vanished}
        if style is not None:
            styles[new_id] = style
        scene = Scene.from_arrays(new_label, new_inst, styles, self.things)
        return scene, new_id

    def paint(self, mask, label: int) -> "Scene":
        """Brush/fill: stuff merges with its class's region; a thing class becomes one new object."""
        return self.paste(mask, label)[0]

    def set_style(self, instance_id: int, style) -> "Scene":
        """style: a cluster index of the object's class, a feature vector, or None (random again); for a
        generator with 3D noise (OASIS) a draw index or a noise vector: the object restyled with
        its own noise."""
        self.mask(instance_id)
        styles = dict(self.styles)
        if style is None:
            styles.pop(instance_id, None)
        else:
            styles[instance_id] = style
        return Scene.from_arrays(self.label, self.inst, styles, self.things)

    def _check_mask(self, mask) -> np.ndarray:
        mask = np.asarray(mask, bool)
        if mask.shape != self.label.shape:
            raise EditError(f"the mask is {mask.shape}, the scene {self.label.shape}: they must match.")
        if not mask.any():
            raise EditError("the mask is empty: nothing to paint.")
        return mask


def _painted(scene: Scene, mask: np.ndarray, label: int, instance_id: int):
    new_label, new_inst = scene.label.copy(), scene.inst.copy()
    new_label[mask], new_inst[mask] = label, instance_id
    return new_label, new_inst


class Editor:
    """A scene, its edit history and a synthesizer: every edit returns the new photo."""

    def __init__(self, synthesizer, scene: Scene, seed: int = 0, max_history: Optional[int] = None):
        """max_history: the most scenes kept for undo (the oldest are dropped); None keeps all."""
        if max_history is not None and max_history < 1:
            raise EditError(f"max_history={max_history}: keep at least the current scene (1).")
        self.synth, self.seed, self.max_history = synthesizer, seed, max_history
        self.history = [scene]

    @property
    def scene(self) -> Scene:
        return self.history[-1]

    def render(self, scene: Optional[Scene] = None, sample: int = 0) -> np.ndarray:
        scene = scene or self.scene
        return self.synth.synthesize(scene.label, scene.inst, scene.style_map, seed=self.seed, sample=sample)

    def _push(self, scene: Scene) -> np.ndarray:
        """Synthesize the edited scene, then keep it: synthesis checks its labels, so a failed edit
        leaves the history as it was."""
        photo = self.render(scene)
        self.history.append(scene)
        if self.max_history is not None and len(self.history) > self.max_history:
            del self.history[:len(self.history) - self.max_history]
        return photo

    def relabel(self, instance_id: int, label: int) -> np.ndarray:
        return self._push(self.scene.relabel(instance_id, label)[0])

    def remove(self, instance_id: int, fill_label: Optional[int] = None) -> np.ndarray:
        return self._push(self.scene.remove(instance_id, fill_label))

    def paste(self, mask, label: int, style=None) -> np.ndarray:
        return self._push(self.scene.paste(mask, label, style)[0])

    def paint(self, mask, label: int) -> np.ndarray:
        return self._push(self.scene.paint(mask, label))

    def brush(self, points, radius: float, label: int) -> np.ndarray:
        """Paint class `label` along a stroke of (x, y) points (see brush_mask)."""
        return self.paint(brush_mask(self.scene.label.shape, points, radius), label)

    def fill(self, y: int, x: int, label: int) -> np.ndarray:
        """Paint class `label` over the connected region under (x, y) (see Scene.fill_mask)."""
        return self.paint(self.scene.fill_mask(y, x), label)

    def set_style(self, instance_id: int, style) -> np.ndarray:
        return self._push(self.scene.set_style(instance_id, style))

    def undo(self) -> np.ndarray:
        if len(self.history) > 1:
            self.history.pop()
        return self.render()
