"""training/: pix2pixHD's training (paper sec. 3.2-3.4).

Lives here: the train state, the optimizers and the one pure train step (`step`), the
objective (`losses`: GAN, feature matching, VGG, L1), the lr schedule and the G1 freeze
(`schedule`), the image pool (`image_pool`), the conversion of checkpoints saved with the
earlier optimizer layout (`old_checkpoints`), the `train` command (`train`: its loop, top to
bottom, with the runtime's shared parts; initial weights, sample grids, evaluation during
training, the test split at the end), and the `benchmark` command.

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""
