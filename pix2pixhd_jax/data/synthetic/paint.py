"""The photo: each id painted with its style's colour, texture and shading inside its
bounding box, part codes applied, then exposure jitter and sensor noise."""

import dataclasses
from typing import Callable

import numpy as np
from PIL import Image

from pix2pixhd_jax.data.synthetic.geometry import Camera, Canvas
from pix2pixhd_jax.data.synthetic.styles import ID_TO_CLASS, STYLES, part_table, style_colors


@dataclasses.dataclass
class PaintContext:
    cam: Camera
    rng: np.random.Generator
    unit: float  # screen-space texture scale: 1.0 at 512x256


def _block_noise(rng, h, w, cell):
    """Uniform [0,1) noise constant over cell x cell blocks (cheap low-frequency texture)."""
    cell = max(1, int(round(cell)))
    grid = rng.random((-(-h // cell), -(-w // cell)), dtype=np.float32)
    return np.repeat(np.repeat(grid, cell, axis=0), cell, axis=1)[:h, :w]


def _smooth_noise(rng, h, w, cell):
    """Bilinearly interpolated [0,1) noise with feature size ~cell px (clouds, stains)."""
    gh, gw = max(2, int(h / max(cell, 1.0)) + 2), max(2, int(w / max(cell, 1.0)) + 2)
    grid = Image.fromarray(rng.random((gh, gw), dtype=np.float32))  # mode "F"
    return np.asarray(grid.resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)


def _rows(y0, y1):
    return np.arange(y0, y1, dtype=np.float32)[:, None]


def _cols(x0, x1):
    return np.arange(x0, x1, dtype=np.float32)[None, :]


def _tint(base, lum):
    """base (3,) times luminance (h,w) or (h,1) -> (h,w,3) or (h,1,3) float32."""
    return np.asarray(base, np.float32) * lum[..., None]


def _full(col, h, w):
    """A fresh, writable (h, w, 3) float32 array from anything broadcastable to it."""
    out = np.empty((h, w, 3), np.float32)
    out[...] = col
    return out


def _hash01(i, j):
    """Deterministic pseudo-random value in [0,1) per integer cell (stone, brick)."""
    v = (i.astype(np.int64) * 374761393 + j.astype(np.int64) * 668265263) & 0xFFFFFFFF
    v = ((v ^ (v >> 13)) * 1274126177) & 0xFFFFFFFF
    return ((v >> 8) & 0xFF).astype(np.float32) / 255.0


def _ground_coords(cam, y0, y1, x0, x1):
    """World (X, Z) of ground pixels, plus metres per pixel along Z (for anti-aliasing)."""
    dy = np.maximum(_rows(y0, y1) + 0.5 - cam.vy, 0.5)
    Z = cam.f * cam.hc / dy
    X = (_cols(x0, x1) + 0.5 - cam.vx) * (Z / cam.f)
    return X, Z, Z * Z / (cam.f * cam.hc)


def _paving(cam, box, size_x, size_z, joint, stagger):
    """Joint lines (0/1 faded with distance) and per-stone tint of a ground grid."""
    X, Z, footprint = _ground_coords(cam, *box)
    zj = Z / size_z
    j = np.floor(zj)
    xi = X / size_x + (0.5 * (j % 2) if stagger else 0.0)
    i = np.floor(xi)
    lines = ((zj - j) < joint) | ((xi - i) < joint)
    fade = np.clip(1.5 - 3.0 * footprint / size_z, 0.0, 1.0)  # joints vanish when sub-pixel
    return lines * fade, _hash01(i, j) * fade


def _paint_sky(ctx, style, box):
    y0, y1, x0, x1 = box
    zenith, horizon = (np.asarray(c, np.float32) for c in style_colors("sky", style))
    t = np.clip(_rows(y0, y1) / max(ctx.cam.vy, 1.0), 0.0, 1.0)[..., None] ** 0.8
    col = _full(zenith + (horizon - zenith) * t, y1 - y0, x1 - x0)
    if STYLES["sky"][style] != "clear":  # soft cloud blotches
        clouds = _smooth_noise(ctx.rng, y1 - y0, x1 - x0, 24 * ctx.unit)
        col *= (0.94 + 0.12 * clouds)[..., None]
    return col


def _paint_road(ctx, style, box):
    h, w = box[1] - box[0], box[3] - box[2]
    base = style_colors("road", style)
    if STYLES["road"][style] == "cobblestone":
        lines, tint = _paving(ctx.cam, box, 0.32, 0.22, 0.14, stagger=True)
        return _full(_tint(base, (0.9 + 0.2 * tint) * (1.0 - 0.35 * lines)), h, w)
    stains = _smooth_noise(ctx.rng, h, w, 12 * ctx.unit)  # wear and repairs
    grain = _block_noise(ctx.rng, h, w, ctx.unit)
    return _tint(base, 0.92 + 0.1 * stains + 0.06 * grain)


def _paint_sidewalk(ctx, style, box):
    h, w = box[1] - box[0], box[3] - box[2]
    name = STYLES["sidewalk"][style]
    size_x, size_z, joint, stagger = {"grey_slabs": (0.6, 0.6, 0.06, False), "red_pavers": (0.2, 0.1, 0.12, True),
                                      "beige_tiles": (0.35, 0.35, 0.07, False)}[name]
    lines, tint = _paving(ctx.cam, box, size_x, size_z, joint, stagger)
    return _full(_tint(style_colors("sidewalk", style), (0.94 + 0.12 * tint) * (1.0 - 0.3 * lines)), h, w)


def _paint_building(ctx, style, box):
    y0, y1, x0, x1 = box
    h, w = y1 - y0, x1 - x0
    name = STYLES["building"][style]
    base = style_colors("building", style)[0]
    yy, xx = _rows(y0, y1).astype(np.int32), _cols(x0, x1).astype(np.int32)
    if name == "brick":  # running bond with light mortar (screen space)
        bh = max(2, int(round(3 * ctx.unit)))
        bw = 3 * bh
        row = yy // bh
        xo = xx + (row % 2) * (bw // 2)
        mortar = ((yy % bh) == 0) | ((xo % bw) == 0)
        lum = (0.9 + 0.2 * _hash01(xo // bw, row)) * (1.0 + 0.35 * mortar)
    elif name == "glass":  # sky reflection: lighter towards the top
        lum = 1.1 - 0.25 * (yy - y0) / max(h, 1)
    elif name == "concrete":  # horizontal panel joints
        lum = 1.0 - 0.2 * ((yy % max(3, int(round(9 * ctx.unit)))) == 0)
    else:  # plaster: soft blotches
        lum = 0.95 + 0.1 * _smooth_noise(ctx.rng, h, w, 8 * ctx.unit)
    return _full(_tint(base, lum), h, w)


def _paint_foliage(ctx, style, box):
    h, w = box[1] - box[0], box[3] - box[2]
    light, dark = (np.asarray(c, np.float32) for c in style_colors("vegetation", style))
    leaves = 0.6 * _block_noise(ctx.rng, h, w, 2 * ctx.unit) + 0.4 * _block_noise(ctx.rng, h, w, 6 * ctx.unit)
    return light + (dark - light) * leaves[..., None]


def _paint_terrain(ctx, style, box):
    h, w = box[1] - box[0], box[3] - box[2]
    tufts = 0.6 * _block_noise(ctx.rng, h, w, 1.5 * ctx.unit) + 0.4 * _smooth_noise(ctx.rng, h, w, 10 * ctx.unit)
    return _tint(style_colors("terrain", style), 0.85 + 0.3 * tufts)


def _paint_fence(ctx, style, box):
    y0, y1, x0, x1 = box
    xx = _cols(x0, x1).astype(np.int32)
    period = max(2, int(round((5 if STYLES["fence"][style] == "wood" else 3) * ctx.unit)))
    stripes = (xx % period == 0).astype(np.float32)
    return _full(_tint(style_colors("fence", style), 1.0 - 0.35 * stripes), y1 - y0, x1 - x0)


def _vertical_gradient(cls, top=1.08, bottom=0.85):
    """Painter for plain objects: flat colour, lit from above."""
    def paint(ctx, style, box):
        y0, y1, x0, x1 = box
        t = (_rows(y0, y1) - y0) / max(y1 - y0, 1)
        return _full(_tint(style_colors(cls, style), top + (bottom - top) * t), y1 - y0, x1 - x0)
    return paint


def _paint_person(ctx, style, box):
    y0, y1, x0, x1 = box
    return _full(np.asarray(style_colors("person", style)[0], np.float32), y1 - y0, x1 - x0)


_PAINTERS: dict[str, Callable] = {
    "sky": _paint_sky, "road": _paint_road, "sidewalk": _paint_sidewalk, "building": _paint_building,
    "vegetation": _paint_foliage, "terrain": _paint_terrain, "fence": _paint_fence,
    "pole": _vertical_gradient("pole"), "traffic light": _vertical_gradient("traffic light"),
    "traffic sign": _vertical_gradient("traffic sign"), "car": _vertical_gradient("car", 1.1, 0.84),
    "person": _paint_person,
}


_PIXEL = np.dtype((np.void, 12))  # one float32 RGB pixel as a single item


def _pixels(rgb):
    """(h, w, 3) float32 -> (h, w) view of whole pixels: masked copies then move all 3
    channels at once, several times faster than copyto with a broadcast (h, w, 1) mask."""
    return rgb.view(_PIXEL)[..., 0]


def _apply_parts(col, parts, table):
    """Overwrite or rescale the painted colour where part codes were drawn.

    Pixels outside the id's mask are never copied to the photo: no need to mask here.
    """
    if not table:
        return
    present = np.bincount(parts.ravel(), minlength=256)
    codes = [code for code in table if present[code]]
    scaled = [code for code in codes if isinstance(table[code], float)]
    if scaled:
        factors = np.ones(256, np.float32)
        factors[scaled] = [table[code] for code in scaled]
        col *= factors[parts][..., None]
    col_px = _pixels(col)
    for code in codes:
        if code not in scaled:
            np.copyto(col_px, _pixels(np.asarray(table[code], np.float32)[None])[0], where=parts == code)


def _tight_box(ids, ident, box):
    """Shrink a drawn bounding box to the id's visible pixels (occlusion hides much)."""
    x0, y0, x1, y1 = box
    mask = ids[y0:y1, x0:x1] == ident
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None, None  # fully occluded
    cols = np.flatnonzero(mask.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    return (y0 + r0, y0 + r1, x0 + c0, x0 + c1), mask[r0:r1, c0:c1]


_SENSOR_NOISE = 3.0  # std of per-pixel luminance noise, in 8-bit levels


def render(cv: Canvas, ids: np.ndarray, ctx: PaintContext) -> np.ndarray:
    h, w = ids.shape
    parts = np.asarray(cv.parts)
    img = np.zeros((h, w, 3), np.float32)
    img_px = _pixels(img)
    for ident, drawn_box in cv.boxes.items():
        box, mask = _tight_box(ids, ident, drawn_box)
        if box is None:
            continue
        y0, y1, x0, x1 = box
        cls = ID_TO_CLASS[ident if ident < 1000 else ident // 1000]
        style = cv.styles[ident]
        col = np.ascontiguousarray(_PAINTERS[cls](ctx, style, box), dtype=np.float32)
        _apply_parts(col, parts[y0:y1, x0:x1], part_table(cls, style))
        np.copyto(img_px[y0:y1, x0:x1], _pixels(col), where=mask)
    # Mild global exposure jitter and sensor noise, kept small so styles stay separable.
    img *= ctx.rng.uniform(0.93, 1.07)
    img += ctx.rng.standard_normal((h, w, 1), dtype=np.float32) * _SENSOR_NOISE
    np.clip(img, 0, 255, out=img)
    return img.astype(np.uint8)
