"""ADE20K's scene-parsing classes (ADEChallengeData2016: 150 classes, objectInfo150).

Annotation ids: 0 is "other" (unlabelled), class k is id k for k in 1..150, so pix2pixHD feeds
them one-hot with label_nc=151. `THING_IDS` are the classes whose regions are countable objects
(ADE20K's panoptic split: 100 things, 50 stuff), the default of `make-instances --dataset ade20k`.
"""

NAMES = (
    "other", "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "window", "grass",
    "cabinet", "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair",
    "car", "water", "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field",
    "armchair", "seat", "fence", "desk", "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion",
    "base", "box", "column", "signboard", "chest of drawers", "counter", "sand", "sink", "skyscraper",
    "fireplace", "refrigerator", "grandstand", "path", "stairs", "runway", "case", "pool table", "pillow",
    "screen door", "stairway", "river", "bridge", "bookcase", "blind", "coffee table", "toilet", "flower",
    "book", "hill", "bench", "countertop", "stove", "palm", "kitchen island", "computer", "swivel chair",
    "boat", "bar", "arcade machine", "hovel", "bus", "towel", "light", "truck", "tower", "chandelier",
    "awning", "streetlight", "booth", "television", "airplane", "dirt track", "apparel", "pole", "land",
    "bannister", "escalator", "ottoman", "bottle", "buffet", "poster", "stage", "van", "ship", "fountain",
    "conveyer belt", "canopy", "washer", "plaything", "swimming pool", "stool", "barrel", "basket",
    "waterfall", "tent", "bag", "minibike", "cradle", "oven", "ball", "food", "step", "tank", "trade name",
    "microwave", "pot", "animal", "bicycle", "lake", "dishwasher", "screen", "blanket", "sculpture", "hood",
    "sconce", "vase", "traffic light", "tray", "ashcan", "fan", "pier", "crt screen", "plate", "monitor",
    "bulletin board", "shower", "radiator", "glass", "clock", "flag",
)
NUM_LABEL_IDS = len(NAMES)  # 151
ID_TO_NAME = dict(enumerate(NAMES))

THING_IDS = frozenset((
    8, 9, 11, 13, 15, 16, 19, 20, 21, 23, 24, 25, 28, 31, 32, 33, 34, 36, 37, 38, 39, 40, 42, 43, 44, 45, 46,
    48, 50, 51, 54, 56, 57, 58, 59, 63, 65, 66, 67, 68, 70, 71, 72, 73, 74, 75, 76, 77, 79, 81, 82, 83, 84,
    86, 87, 88, 89, 90, 91, 93, 94, 96, 98, 99, 103, 104, 105, 108, 109, 111, 112, 113, 116, 117, 119, 120,
    121, 122, 124, 125, 126, 127, 128, 130, 131, 133, 134, 135, 136, 137, 138, 139, 140, 143, 144, 145,
    147, 148, 149, 150,
))
