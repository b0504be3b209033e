"""pix2pix, pix2pixHD and OASIS on the synthetic street scenes (the paper's Table 1, small):
`configs/paper_comparison.py:METHOD`, trained by experiments/paper_comparison.py.

  pix2pix           the pix2pix baseline (configs/ablation_synthetic.py:pix2pix)
  pix2pixhd         the demo's pix2pixHD: LSGAN + feature matching + L1 (weight 10) standing in
                    for the VGG term, instance boundaries, 2-scale D
  pix2pixhd_gan_fm  pix2pixHD with the paper's losses without VGG (GAN + feature matching only)

  oasis             OASIS as configs/oasis_synthetic.py has it: SPADE blocks with 3D noise, the U-Net D
                    with the class-balanced (N+1)-class loss and LabelMix, spectral norm, no VGG or L1
                    term, Adam (0, 0.999), lr G 1e-4 and D 4e-4, a moving average of G that the
                    judge scores, at OASIS's decay 0.999 here and in every ablation below
  oasis_no_labelmix   OASIS without LabelMix (loss.lambda_labelmix 0)
  oasis_no_noise    OASIS without 3D noise (model.z_dim 0)
  oasis_no_balancing  OASIS's (N+1) loss without its class-balancing weights
  oasis_patch_d     OASIS's G with pix2pixHD's D and losses instead of the (N+1)-class segmenter D:
                    the 2-scale PatchGAN, LSGAN + feature matching (what the (N+1) loss buys)
  oasis_ema_995     OASIS with its moving average at decay 0.995 instead of 0.999 (the synthetic
                    config's default): an average over about G's last 200 steps, matched to a
                    2400-step budget (OASIS's 0.9999 is for its 30k+ steps)
  oasis_ema_995_seed1  the same with seed 1 (initial weights, noise and data order): the spread
                    of one G's score between seeds

Every method trains on the same 200 scenes at 256x128 (random 128x128 crops, batch 4, lr 2e-4)
for 2400 steps, four times the first comparison's 600, with the same form of schedule: a
constant lr for two thirds of the epochs, then a linear decay to 0. Every 300 steps the judge
(`configs/ablation_synthetic.py:segmenter`, trained by experiments/judge.py) scores the current
generator on the 100 held-out scenes; the scores go to TensorBoard and metrics.jsonl.
Paths are relative to the project's root, as the demo's are.
"""

from configs import ablation_synthetic, oasis_synthetic

METHODS = ("pix2pix", "pix2pixhd", "pix2pixhd_gan_fm", "oasis", "oasis_no_labelmix", "oasis_no_noise",
           "oasis_no_balancing", "oasis_patch_d", "oasis_ema_995", "oasis_ema_995_seed1")


def oasis_variant(method):
    config = oasis_synthetic.get_config()
    model, loss = config.model, config.loss
    # The comparison's OASIS and its ablations were trained and scored with OASIS's decay.
    config.train.ema_decay = 0.999
    if method == "oasis_no_labelmix":
        loss.lambda_labelmix = 0.0
    elif method == "oasis_no_noise":
        model.z_dim = 0
    elif method == "oasis_no_balancing":
        loss.no_balancing_inloss = True
    elif method == "oasis_patch_d":
        model.netD = "multiscale"  # the demo's pix2pixHD D: 2 scales of 3 layers (the defaults), ndf 8
        model.ndf = 8
        loss.no_ganFeat_loss = False
    elif method in ("oasis_ema_995", "oasis_ema_995_seed1"):
        config.train.ema_decay = 0.995
    if method == "oasis_ema_995_seed1":
        config.seed = 1
    return config


def get_config(method="pix2pixhd"):
    if method not in METHODS:
        raise ValueError(f"configs/paper_comparison.py:{method}: not one of {', '.join(METHODS)}")
    config = oasis_variant(method) if method.startswith("oasis") else ablation_synthetic.get_config(method)
    config.name = f"paper_comparison_{method}"
    train = config.train
    train.niter = 32  # 50 steps per epoch: 1600 steps at the full lr, then 800 decaying to 0
    train.niter_decay = 16
    train.save_latest_freq = 300
    train.keep_checkpoints = 20  # every scored step's generator stays, to be scored again by another judge
    train.eval_every = 300
    train.eval_segmenter = "runs/judge/long"
    train.eval_dataroot = "runs/judge/eval_scenes"
    train.eval_split = "test"
    return config
