"""OASIS on the bundled synthetic street scenes, sized for a 2-core CPU like the demo
(configs/synthetic_demo.py: 200 scenes at 256x128, random 128x128 crops, batch 4).

OASIS's design at a small width: SPADE blocks as OASIS has them but 5 of them (sizes multiples of
16 for G, 32 for D), channels_G 8, SPADE's shared conv 32 wide instead of 128, 3D noise of 16
channels; OASIS's U-Net D with 5 blocks each way at ndf 16; the (N+1)-class loss with class
balancing and LabelMix (lambda 10), no VGG and no L1 term; Adam (0, 0.999) with OASIS's lrs (G
1e-4, D 4e-4), constant; the moving average of G at 0.995 (below); gradients clipped to norm 1
(below).

    pix2pixhd-jax make-synthetic --out demo/synthetic
    pix2pixhd-jax train --config configs/oasis_synthetic.py --workdir runs/oasis_synthetic
"""

from configs import synthetic_demo


def get_config():
    config = synthetic_demo.get_config()
    config.name = "oasis_synthetic"
    config.data.use_instance = False

    model = config.model
    model.netG = "spade"
    model.spade_arch = "oasis"
    model.ngf = 8
    model.num_res_blocks = 5
    model.z_dim = 16
    model.spectral_norm = True
    model.param_free_norm = "batch"
    model.spade_hidden = 32
    model.netD = "oasis"
    model.ndf = 16

    loss = config.loss
    loss.no_vgg_loss = True
    loss.no_ganFeat_loss = True
    loss.lambda_l1 = 0.0
    loss.lambda_labelmix = 10.0
    loss.contain_dontcare_label = True

    train = config.train
    train.lr = 1e-4
    train.lr_D = 4e-4
    train.beta1 = 0.0
    train.beta2 = 0.999
    train.niter = 12  # 50 steps per epoch: 600 steps
    train.niter_decay = 0
    # The average spans about 1 / (1 - decay) steps: 200 here, a third of the run. OASIS's 0.9999
    # (10k steps) is for its 30k+ steps; at 0.999 the average of a 2400-step run still weighs G's
    # first steps and scored 0.10 mean IoU below 0.995 on the same G (experiments/README.md,
    # "OASIS beside them").
    train.ema_decay = 0.995
    # Not OASIS's: each network's gradient clipped to norm 1 before Adam. OASIS's first steps blow
    # D's logits up for a step (its own code does too); the gradient of that step left in Adam's
    # second moment kept D's last layer where it started, and D learnt only its biases (the class
    # priors) for the next 1200 steps (experiments/README.md, "OASIS beside them").
    train.grad_clip_norm = 1.0
    return config
