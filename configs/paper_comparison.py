"""pix2pix against pix2pixHD on the synthetic street scenes (the paper's Table 1, small):
`configs/paper_comparison.py:METHOD`, trained by experiments/paper_comparison.py.

  pix2pix           the pix2pix baseline (configs/ablation_synthetic.py:pix2pix)
  pix2pixhd         the demo's pix2pixHD: LSGAN + feature matching + L1 (weight 10) standing in
                    for the VGG term, instance boundaries, 2-scale D
  pix2pixhd_gan_fm  pix2pixHD with the paper's losses without VGG (GAN + feature matching only)

Every method trains on the same 200 scenes at 256x128 (random 128x128 crops, batch 4, lr 2e-4)
for 2400 steps, four times the first comparison's 600, with the same form of schedule: a
constant lr for two thirds of the epochs, then a linear decay to 0. Every 300 steps the judge
(`configs/ablation_synthetic.py:segmenter`, trained by experiments/judge.py) scores the current
generator on the 100 held-out scenes; the scores go to TensorBoard and metrics.jsonl.
Paths are relative to the project's root, as the demo's are.
"""

from configs import ablation_synthetic

METHODS = ("pix2pix", "pix2pixhd", "pix2pixhd_gan_fm")


def get_config(method="pix2pixhd"):
    if method not in METHODS:
        raise ValueError(f"configs/paper_comparison.py:{method}: not one of {', '.join(METHODS)}")
    config = ablation_synthetic.get_config(method)
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
