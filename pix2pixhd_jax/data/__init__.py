"""data/: everything between files on disk and the arrays the networks read.

Lives here: the readers of every dataset layout (`readers`), decoding and validation of
label, instance and photo files (`decode`), the reference's transforms (`transforms`), the
tf.data input pipeline (`pipeline`), the TFDS builders (`tfds_builders`), the synthetic
street scenes (`synthetic`), Cityscapes' label table (`cityscapes_labels`), the photo's
pixel scales (`pixels`) and pictures of inputs and outputs (`visualize`).

May import: `models` (G's size divisor and input channels), `errors`, `atomic`. TensorFlow
is imported when a pipeline is built (`pipeline`); only `tfds_builders` imports it, and
TFDS, at its top.
"""
