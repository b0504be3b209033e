"""Cityscapes label ids, names and colours (cityscapesScripts' labels.py table).

Ids are the `labelIds` of gtFine; pix2pixHD feeds them one-hot with label_nc=35.
"""

from typing import NamedTuple

import numpy as np


class Label(NamedTuple):
    name: str
    id: int
    has_instances: bool
    color: tuple


LABELS = (
    Label("unlabeled", 0, False, (0, 0, 0)),
    Label("ego vehicle", 1, False, (0, 0, 0)),
    Label("rectification border", 2, False, (0, 0, 0)),
    Label("out of roi", 3, False, (0, 0, 0)),
    Label("static", 4, False, (0, 0, 0)),
    Label("dynamic", 5, False, (111, 74, 0)),
    Label("ground", 6, False, (81, 0, 81)),
    Label("road", 7, False, (128, 64, 128)),
    Label("sidewalk", 8, False, (244, 35, 232)),
    Label("parking", 9, False, (250, 170, 160)),
    Label("rail track", 10, False, (230, 150, 140)),
    Label("building", 11, False, (70, 70, 70)),
    Label("wall", 12, False, (102, 102, 156)),
    Label("fence", 13, False, (190, 153, 153)),
    Label("guard rail", 14, False, (180, 165, 180)),
    Label("bridge", 15, False, (150, 100, 100)),
    Label("tunnel", 16, False, (150, 120, 90)),
    Label("pole", 17, False, (153, 153, 153)),
    Label("polegroup", 18, False, (153, 153, 153)),
    Label("traffic light", 19, False, (250, 170, 30)),
    Label("traffic sign", 20, False, (220, 220, 0)),
    Label("vegetation", 21, False, (107, 142, 35)),
    Label("terrain", 22, False, (152, 251, 152)),
    Label("sky", 23, False, (70, 130, 180)),
    Label("person", 24, True, (220, 20, 60)),
    Label("rider", 25, True, (255, 0, 0)),
    Label("car", 26, True, (0, 0, 142)),
    Label("truck", 27, True, (0, 0, 70)),
    Label("bus", 28, True, (0, 60, 100)),
    Label("caravan", 29, True, (0, 0, 90)),
    Label("trailer", 30, True, (0, 0, 110)),
    Label("train", 31, True, (0, 80, 100)),
    Label("motorcycle", 32, True, (0, 0, 230)),
    Label("bicycle", 33, True, (119, 11, 32)),
)

NAME_TO_ID = {label.name: label.id for label in LABELS}
ID_TO_NAME = {label.id: label.name for label in LABELS}

# label_nc=35 in the reference: ids 0..33 plus one spare.
NUM_LABEL_IDS = 35


def palette(num_classes: int = 256) -> np.ndarray:
    """(num_classes, 3) uint8 colours: Cityscapes colours for their ids, a fixed hash beyond."""
    rng = np.random.default_rng(1234)
    colors = rng.integers(0, 256, size=(max(num_classes, NUM_LABEL_IDS), 3), dtype=np.uint8)
    for label in LABELS:
        colors[label.id] = label.color
    return colors[:num_classes]
