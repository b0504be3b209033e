"""weights/: every reader of foreign weight files, and the converters.

Lives here: NVIDIA pix2pixHD state dicts -> Flax variables (`reference`), pix2pix's U-Net
state dicts (`pix2pix`), the VGG19 weights of the perceptual loss (`vgg19`), the FID
InceptionV3 weights (`inception`), the shared readers (`files`: .pth through torch, .npz,
.safetensors, nested-dict helpers), and weights without a file (`filled`: arrays filled by
leaf name, for tests and benchmarks).

Which parts it may import: docs/architecture.md ("Who may import whom"), the one statement of
the rules (tests/test_architecture.py holds the code to them).
"""
