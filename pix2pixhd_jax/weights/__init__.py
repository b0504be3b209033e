"""weights/: every reader of foreign weight files, and the converters.

Lives here: NVIDIA pix2pixHD state dicts -> Flax variables (`reference`), pix2pix's U-Net
state dicts (`pix2pix`), the VGG19 weights of the perceptual loss (`vgg19`), the FID
InceptionV3 weights (`inception`), and the shared readers (`files`: .pth through torch,
.npz, .safetensors, nested-dict helpers).

May import: `models`, `errors`, `atomic`. torch, h5py and safetensors are imported only
when a file of theirs is read.
"""
