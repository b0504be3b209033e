"""OASIS's first training steps, in OASIS's own code and in this project: D's loss and gradient
norm per step, on random block label maps (experiments/README.md, "OASIS beside them").

    python experiments/oasis_first_steps.py --side oasis --ref /path/to/OASIS --seeds 1,2,42
    python experiments/oasis_first_steps.py --side ours --seeds 0,1 [--config.train.grad_clip_norm=1.0]

--ref is a checkout of boschresearch/OASIS (not kept here); its models are built by its own
OASIS_model with its Cityscapes options (--dataset_mode cityscapes: lr G 4e-4, D 4e-4, LabelMix 5,
channels 64, 6 blocks, z 64), on the CPU (--gpu_ids -1); its modules import torchvision (taken
from ../shared/tools/stubs where it is not installed; these steps do not use it) and matplotlib
(the experiments extra). `--side ours` runs this project's step with configs/oasis_cityscapes.py at the same
size and batch (and any --config.* override). Each step: a batch of 2 random maps of 16x16-pixel
blocks of the 35 classes with random photos, 64x128 pixels; the G step, then the D step, as
OASIS's train.py orders them.
"""

import argparse
import functools
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUBS = os.path.join(os.path.dirname(ROOT), "shared", "tools", "stubs")
H, W, BATCH, BLOCK, LABEL_NC = 64, 128, 2, 16, 35


def block_batch(seed, step):
    rng = np.random.default_rng([seed, step])
    ids = np.kron(rng.integers(1, LABEL_NC, (BATCH, H // BLOCK, W // BLOCK)), np.ones((1, BLOCK, BLOCK), np.int64))
    return ids.astype(np.uint8), rng.integers(0, 256, (BATCH, H, W, 3)).astype(np.uint8)


def oasis_steps(ref, seed, steps):
    """[(step, D's loss, D's gradient norm)] of OASIS's own code."""
    sys.path[:0] = [ref] + ([STUBS] if os.path.isdir(STUBS) else [])
    import torch

    import config as oasis_config
    import models.losses as oasis_losses
    import models.models as oasis_models

    parser = oasis_config.add_all_arguments(argparse.ArgumentParser(), True)
    parser.add_argument("--phase", default="train")
    argv = ["--gpu_ids", "-1", "--dataset_mode", "cityscapes", "--batch_size", str(BATCH)]
    opt = parser.parse_args(argv)
    oasis_config.set_dataset_default_lm(opt, parser)
    opt = parser.parse_args(argv)
    opt.phase, opt.semantic_nc, opt.label_nc, opt.contain_dontcare_label = "train", LABEL_NC + 1, LABEL_NC, True
    opt.aspect_ratio, opt.crop_size, opt.loaded_latest_iter = W / H, W, 0
    torch.manual_seed(seed)
    model = oasis_models.put_on_multi_gpus(oasis_models.OASIS_model(opt), opt)
    opt_g = torch.optim.Adam(model.module.netG.parameters(), lr=opt.lr_g, betas=(opt.beta1, opt.beta2))
    opt_d = torch.optim.Adam(model.module.netD.parameters(), lr=opt.lr_d, betas=(opt.beta1, opt.beta2))
    losses = oasis_losses.losses_computer(opt)
    out = []
    for step in range(1, steps + 1):
        ids, photo = block_batch(seed, step)
        label = torch.zeros(BATCH, LABEL_NC + 1, H, W).scatter_(1, torch.from_numpy(ids[:, None].astype(np.int64)), 1.0)
        image = torch.from_numpy(photo).permute(0, 3, 1, 2).float() / 127.5 - 1
        model.module.netG.zero_grad()
        loss_g, _ = model(image, label, "losses_G", losses)
        loss_g.backward()
        opt_g.step()
        model.module.netD.zero_grad()
        loss_d, _ = model(image, label, "losses_D", losses)
        loss_d.backward()
        norm = sum(float(p.grad.norm()) ** 2 for p in model.module.netD.parameters() if p.grad is not None) ** 0.5
        opt_d.step()
        out.append((step, float(loss_d), norm))
    return out


@functools.lru_cache(maxsize=None)
def our_program(overrides):
    """(init, step) of this project's OASIS step (configs/oasis_cityscapes.py), compiled once for
    every seed."""
    import jax

    from pix2pixhd_jax.config_loading import load_config
    from pix2pixhd_jax.training.train import TrainProgram

    config = load_config(os.path.join(ROOT, "configs", "oasis_cityscapes.py"), list(overrides))
    program = TrainProgram(config, (H, W), steps_per_epoch=1000)
    return jax.jit(program.init), jax.jit(program.step)


def our_steps(seed, steps, overrides):
    """The same for this project's step."""
    import jax

    init, step_fn = our_program(tuple(overrides))
    state = init(jax.random.PRNGKey(seed))
    out = []
    for step in range(1, steps + 1):
        ids, photo = block_batch(seed, step)
        state, metrics, _ = step_fn(state, {"label_ids": ids, "image": photo}, {})
        out.append((step, float(metrics["loss_D"]), float(metrics["grad_norm_D"])))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", choices=("oasis", "ours"), required=True)
    parser.add_argument("--ref", help="a checkout of boschresearch/OASIS (--side oasis)")
    parser.add_argument("--seeds", default="1,2,42")
    parser.add_argument("--steps", type=int, default=6)
    args, rest = parser.parse_known_args()
    overrides = [a[len("--config."):] for a in rest if a.startswith("--config.")]
    if args.side == "oasis" and not (args.ref and os.path.isfile(os.path.join(args.ref, "models", "models.py"))):
        parser.error(f"--ref {args.ref}: not a checkout of boschresearch/OASIS (no models/models.py)")
    for seed in (int(s) for s in args.seeds.split(",")):
        rows = oasis_steps(args.ref, seed, args.steps) if args.side == "oasis" else our_steps(seed, args.steps, overrides)
        for step, loss_d, norm in rows:
            print(f"{args.side} seed {seed} step {step}: loss_D {loss_d:.4g}, D's gradient norm {norm:.4g}", flush=True)
        print(f"{args.side} seed {seed}: largest loss_D {max(r[1] for r in rows):.4g} "
              f"(step {max(rows, key=lambda r: r[1])[0]})", flush=True)


if __name__ == "__main__":
    main()
