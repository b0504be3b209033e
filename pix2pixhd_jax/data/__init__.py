"""data/: everything between files on disk and the arrays the networks read.

Lives here: the readers of every dataset layout (`readers`), decoding of label, instance and
photo files (`decode`), the one way in for label and instance maps and photos (`label_maps`:
the data settings read once, ids checked, maps prepared for a trained model), the reference's
transforms (`transforms`), the tf.data input pipeline (`pipeline`), the TFDS builders
(`tfds_builders`), synthetic street and block scenes (`synthetic`), Cityscapes' and ADE20K's
label tables, instance maps from label maps (`instances`) and pictures of inputs and outputs
(`visualize`).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""
