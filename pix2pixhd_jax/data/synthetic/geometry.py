"""Where a scene is drawn: a pinhole camera looking down a straight street, the street's
widths, and the canvas the objects are drawn into (instance ids, and part codes for the photo)."""

import dataclasses
import math

from PIL import Image, ImageDraw

from pix2pixhd_jax.data.synthetic.styles import CLASS_IDS, INSTANCE_CLASSES, P_BASE


@dataclasses.dataclass(frozen=True)
class Camera:
    width: int
    height: int
    f: float  # focal length in pixels
    vx: float  # vanishing point
    vy: float
    hc: float  # camera height above the ground, metres

    def xy(self, X, Y, Z):
        return (self.vx + self.f * X / Z, self.vy + self.f * (self.hc - Y) / Z)

    def poly(self, points):
        return [self.xy(*p) for p in points]

    # Axis-aligned rectangles in world space, as projected polygons.
    def ground(self, x0, x1, z0, z1, y=0.0):
        return self.poly([(x0, y, z0), (x1, y, z0), (x1, y, z1), (x0, y, z1)])

    def wall_x(self, X, y0, y1, z0, z1):  # plane X = const (facades, car sides)
        return self.poly([(X, y0, z0), (X, y1, z0), (X, y1, z1), (X, y0, z1)])

    def wall_z(self, Z, x0, x1, y0, y1):  # plane Z = const (faces towards the camera)
        return self.poly([(x0, y0, Z), (x1, y0, Z), (x1, y1, Z), (x0, y1, Z)])

    @property
    def z_bottom(self):  # depth of the ground at the bottom image row
        return self.f * self.hc / (self.height - self.vy)


def make_camera(rng, width, height) -> Camera:
    # Focal length from the geometric mean of W and 2H: a 2:1 image is nominal,
    # other aspect ratios still get a sensible field of view.
    f = 0.8 * math.sqrt(width * 2.0 * height)
    return Camera(width, height, f, vx=rng.uniform(0.42, 0.58) * width,
                   vy=rng.uniform(0.35, 0.5) * height, hc=rng.uniform(1.35, 1.65))


@dataclasses.dataclass
class Street:
    road: dict  # side (-1 left, +1 right) -> |X| of the road edge
    verge: dict  # side -> width of a grass strip between road and sidewalk (0: none)
    walk: dict  # side -> sidewalk width
    z_near: float  # nearest depth drawn (behind the bottom image row)
    z_far: float = 3000.0

    def walk_inner(self, side):
        return side * (self.road[side] + self.verge[side])

    def walk_outer(self, side):
        return side * (self.road[side] + self.verge[side] + self.walk[side])


def make_street(rng, cam) -> Street:
    sides = (-1, 1)
    return Street(
        road={s: rng.uniform(3.5, 7.0) for s in sides},
        verge={s: (rng.uniform(0.8, 1.6) if rng.random() < 0.3 else 0.0) for s in sides},
        walk={s: rng.uniform(2.2, 4.5) for s in sides},
        z_near=0.6 * cam.z_bottom,
    )


class Canvas:
    """Painter-style drawing into an int32 id image and a uint8 part image.

    Tracks a pixel bounding box per id, so the photo is only computed inside it.
    """

    def __init__(self, width, height):
        self.width, self.height = width, height
        self.ids = Image.new("I", (width, height), 0)
        self.parts = Image.new("L", (width, height), 0)
        self._draw_ids = ImageDraw.Draw(self.ids)
        self._draw_parts = ImageDraw.Draw(self.parts)
        self.boxes: dict[int, list] = {}
        self.styles: dict[int, int] = {}
        self._next_k = {cls: 0 for cls in INSTANCE_CLASSES}

    def new_id(self, cls: str, style: int) -> int:
        if cls in INSTANCE_CLASSES:
            k = self._next_k[cls]
            self._next_k[cls] = k + 1
            ident = CLASS_IDS[cls] * 1000 + k
        else:
            ident = CLASS_IDS[cls]
        self.styles[ident] = int(style)
        return ident

    def _grow_box(self, ident, x0, y0, x1, y1) -> bool:
        # Pad by 2 px: the rasteriser may touch pixels just outside the float extent.
        x0, y0 = max(0, int(x0) - 2), max(0, int(y0) - 2)
        x1, y1 = min(self.width, int(x1) + 3), min(self.height, int(y1) + 3)
        if x0 >= x1 or y0 >= y1:
            return False  # entirely off-screen
        box = self.boxes.get(ident)
        if box is None:
            self.boxes[ident] = [x0, y0, x1, y1]
        else:
            box[0], box[1] = min(box[0], x0), min(box[1], y0)
            box[2], box[3] = max(box[2], x1), max(box[3], y1)
        return True

    def polygon(self, pts, ident, part=P_BASE):
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if self._grow_box(ident, min(xs), min(ys), max(xs), max(ys)):
            self._draw_ids.polygon(pts, fill=ident)
            self._draw_parts.polygon(pts, fill=part)

    def ellipse(self, cx, cy, rx, ry, ident, part=P_BASE):
        box = (cx - rx, cy - ry, cx + rx, cy + ry)
        if rx > 0 and ry > 0 and self._grow_box(ident, *box):
            self._draw_ids.ellipse(box, fill=ident)
            self._draw_parts.ellipse(box, fill=part)

    def decal(self, pts, part):
        """Photo-only detail (window, lane marking) on whatever id lies below."""
        self._draw_parts.polygon(pts, fill=part)
