"""Procedural, seeded street scenes: (label map, instance map, photo) triplets.

A tiny stand-in for Cityscapes so label-to-photo GANs can be trained and tested
on a CPU. Everything is pure numpy + Pillow.

How a scene is made:
  1. A pinhole camera looks down a straight street (geometry.py). Every object is
     placed in world metres (X right, Y up, Z forward) and projected, so sizes follow
     perspective and the road is a trapezoid towards the vanishing point (layout.py).
  2. Objects are drawn painter-style (far to near) into ONE int32 canvas of
     instance ids plus a "part" canvas (windows, wheels, skin, ...) that only
     the photo uses. Labels are derived from the ids, so they always agree (scene.py).
  3. Each id (a car, a person, or a whole stuff class such as "all road") gets
     one of a few discrete styles of its class (styles.py); the photo paints every id
     with its style's colour and texture (paint.py). Styles are the ground truth of the
     one-to-many label->photo mapping and are returned as metadata.

A scene depends only on (seed, phase, index, width, height). writer.py writes a dataset of
them in pix2pixHD's layout.
"""

from pix2pixhd_jax.data.synthetic.scene import MAX_SIZE, MIN_SIZE, StreetScene, generate_scene
from pix2pixhd_jax.data.synthetic.styles import CLASS_IDS, INSTANCE_CLASSES, STYLES
from pix2pixhd_jax.data.synthetic.writer import GENERATOR_NAME, write_dataset

__all__ = ["CLASS_IDS", "GENERATOR_NAME", "INSTANCE_CLASSES", "MAX_SIZE", "MIN_SIZE", "STYLES", "StreetScene",
           "generate_scene", "write_dataset"]
