"""The scenes' classes and their appearance: each class's styles (the ground truth of the
one-to-many label -> photo mapping) and the part codes that add photo-only detail inside an id."""

import functools

import numpy as np

from pix2pixhd_jax.data.cityscapes_labels import NAME_TO_ID


CLASS_IDS: dict[str, int] = {
    name: NAME_TO_ID[name]
    for name in ("road", "sidewalk", "building", "fence", "pole", "traffic light", "traffic sign",
                 "vegetation", "terrain", "sky", "person", "car")
}
INSTANCE_CLASSES = ("person", "car")
ID_TO_CLASS = {v: k for k, v in CLASS_IDS.items()}

# Style tables: name -> colours. Base colours of one class are far apart in RGB so
# that per-instance mean colours cluster by style despite texture, shading and noise.
_CAR = {  # paint
    "red": (172, 28, 32), "blue": (30, 62, 155), "white": (228, 228, 222), "black": (30, 30, 34),
    "yellow": (218, 182, 32), "silver": (132, 138, 146), "green": (32, 108, 58),
}
_PERSON = {  # (top, trousers)
    "red_jacket": ((178, 32, 38), (45, 45, 62)), "blue_jacket": ((38, 72, 172), (70, 70, 72)),
    "white_shirt": ((228, 226, 220), (95, 85, 70)), "dark_coat": ((34, 34, 38), (34, 34, 38)),
    "yellow_vest": ((228, 198, 40), (48, 52, 88)), "green_hoodie": ((48, 128, 62), (128, 104, 80)),
}
_ROAD = {"asphalt": (80, 80, 85), "cobblestone": (132, 112, 92)}
_SIDEWALK = {"grey_slabs": (158, 158, 154), "red_pavers": (165, 82, 68), "beige_tiles": (205, 190, 152)}
_BUILDING = {  # (wall, window glass)
    "brick": ((150, 72, 52), (42, 50, 60)), "glass": ((58, 78, 94), (128, 168, 196)),
    "plaster": ((218, 204, 170), (58, 68, 84)), "concrete": ((128, 128, 126), (44, 52, 62)),
}
_VEGETATION = {"summer": ((62, 112, 40), (34, 74, 26)), "autumn": ((192, 128, 42), (142, 62, 28))}
_TERRAIN = {"grass": (92, 142, 52), "dry": (176, 156, 102)}
_SKY = {  # (zenith, horizon)
    "clear": ((62, 120, 205), (168, 204, 236)), "overcast": ((196, 199, 205), (218, 220, 224)),
    "sunset": ((84, 76, 148), (248, 158, 82)),
}
_FENCE = {"wood": (140, 100, 60), "metal": (96, 102, 112)}
_POLE = {"grey": (128, 128, 124)}
_TRAFFIC_LIGHT = {"standard": (42, 42, 40)}
_TRAFFIC_SIGN = {"blue_plate": (34, 84, 172)}

_STYLE_TABLES = {
    "road": _ROAD, "sidewalk": _SIDEWALK, "building": _BUILDING, "fence": _FENCE, "pole": _POLE,
    "traffic light": _TRAFFIC_LIGHT, "traffic sign": _TRAFFIC_SIGN, "vegetation": _VEGETATION,
    "terrain": _TERRAIN, "sky": _SKY, "person": _PERSON, "car": _CAR,
}
STYLES: dict[str, tuple[str, ...]] = {cls: tuple(table) for cls, table in _STYLE_TABLES.items()}


def style_colors(cls: str, style: int):
    return list(_STYLE_TABLES[cls].values())[style]


# Part codes (photo-only detail inside one id). A float entry in a class's part
# table scales the painted base colour, a tuple replaces it.
P_BASE, P_SHADE, P_LIGHT, P_GLASS, P_TIRE, P_TAIL, P_PLATE, P_SKIN, P_HAIR, P_LEGS = range(10)
P_MARK, P_WINDOW, P_WINDOW_FAR, P_LAMP_R, P_LAMP_Y, P_LAMP_G, P_LAMP_OFF, P_BORDER, P_TRUNK = range(10, 19)

_FIXED_PARTS = {
    P_SHADE: 0.74, P_LIGHT: 1.14, P_GLASS: (40, 48, 58), P_TIRE: (22, 22, 24), P_TAIL: (190, 26, 26),
    P_PLATE: (232, 232, 226), P_SKIN: (214, 168, 138), P_HAIR: (52, 38, 30), P_MARK: (228, 228, 222),
    P_LAMP_R: (255, 48, 40), P_LAMP_Y: (255, 190, 30), P_LAMP_G: (40, 230, 120), P_LAMP_OFF: (22, 22, 22),
    P_BORDER: (235, 235, 235), P_TRUNK: (82, 60, 44),
}


@functools.lru_cache(maxsize=None)
def part_table(cls: str, style: int) -> dict:
    colors = style_colors(cls, style)
    if cls == "car":
        codes = (P_LIGHT, P_GLASS, P_TIRE, P_TAIL, P_PLATE)
        return {P_SHADE: 0.82, **{c: _FIXED_PARTS[c] for c in codes}}
    if cls == "person":
        return {P_SKIN: _FIXED_PARTS[P_SKIN], P_HAIR: _FIXED_PARTS[P_HAIR], P_LEGS: colors[1],
                P_SHADE: _FIXED_PARTS[P_SHADE]}
    if cls == "building":
        wall, glass = np.array(colors[0], np.float32), np.array(colors[1], np.float32)
        # Far windows are sub-pixel: a strip of the average of glass and wall.
        return {P_SHADE: 0.72, P_WINDOW: tuple(glass), P_WINDOW_FAR: tuple(0.55 * glass + 0.45 * wall)}
    if cls == "road":
        return {P_MARK: _FIXED_PARTS[P_MARK]}
    if cls in ("sidewalk", "terrain", "fence"):
        return {P_SHADE: 0.7}
    if cls == "vegetation":
        return {P_TRUNK: _FIXED_PARTS[P_TRUNK]}
    if cls == "traffic light":
        return {c: _FIXED_PARTS[c] for c in (P_LAMP_R, P_LAMP_Y, P_LAMP_G, P_LAMP_OFF)}
    if cls == "traffic sign":
        return {P_BORDER: _FIXED_PARTS[P_BORDER], P_SHADE: 0.8}
    return {}
