"""NVIDIA's pix2pixHD run on a CPU from a checkout, for experiments/reference_training.py.

    python experiments/nvidia_reference.py init  --ref DIR --config CONFIG --seed K --out INIT_DIR
    python experiments/nvidia_reference.py train --ref DIR --config CONFIG --seed K --data DATA --run-dir RUN \
        --init INIT_DIR [--vgg-weights FILE]
    python experiments/nvidia_reference.py vgg19 --out FILE     (random VGG19 weights in torchvision's layout)

--ref is a checkout (or an extracted archive) of https://github.com/NVIDIA/pix2pixHD; nothing of it
is kept in this project. Its own train.py, models/ (pix2pixHD_model.py, networks.py), data/ and
util/ run as they are; the changes they need to run on a CPU with today's Python and PyTorch are
applied at run time, by this file, and are listed in CPU_CHANGES (reference_training.py's JSON
repeats them). The reference's settings come from this project's config (`train_options`), so one
config drives both implementations; configs the reference cannot express are refused.

`init` builds the reference's G and D with its own define_G / define_D after torch.manual_seed(K),
in the order its Pix2PixHDModel builds them, and saves them as latest_net_{G,D}.pth: the reference
starts from them with its --load_pretrain option and this project imports them with
`pix2pixhd-jax import-torch`, so both sides start from equal weights.

`train` runs the reference's train.py. Snapshots of G and D are the reference's own
per-epoch saves (--save_epoch_freq = the config's save_latest_freq in epochs), so the judge can score G
at every saved step after the fact. A run that is stopped resumes with the reference's
--continue_train from its newest epoch save (plus the resume aids in CPU_CHANGES).

`ReferenceSynthesizer` is the reference's own inference path (test.py's InferenceModel and
util.tensor2im's uint8 pixels) in the shape of this project's Synthesizer, so that this project's
evaluation (evaluation.evaluate.Evaluation) scores the reference's pictures as it scores its own.
"""

import argparse
import math
import os
import random
import runpy
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_STUBS = os.path.join(os.path.dirname(ROOT), "shared", "tools", "stubs")
RESUME_FILE = "latest_resume_state.pth"

CPU_CHANGES = (
    "train.py's lcm() calls fractions.gcd, which Python 3.9 removed: fractions.gcd is set to math.gcd",
    "Tensor.cuda() and Module.cuda() return the object itself: encode_input, get_edges and VGGLoss call "
    ".cuda() whatever --gpu_ids says",
    "torch.cuda.FloatTensor and torch.cuda.ByteTensor are the CPU tensor types (encode_input's one-hot map, "
    "get_edges' boundary map)",
    "create_model's model is held in a wrapper whose .module is the model: the reference wraps it in "
    "DataParallel only when it has GPUs, but train.py always reads model.module",
    "torchvision and dominate are the stand-ins of ../shared/tools/stubs (the transforms the data path uses, "
    "with torchvision's semantics; HTML pages are off with --no_html)",
    "VGG runs only: torchvision.models.vgg19() builds torchvision's VGG19 layers and loads them from the one "
    "weights file both sides read (the reference's Vgg19 would download ImageNet weights)",
    "python's random, numpy and torch are seeded with the run's seed before train.py starts (the reference "
    "seeds nothing)",
    "resume aids, used only when a stopped run resumes: each save of 'latest' also writes both Adam states "
    "and the RNG states, which --continue_train restores, with the lr its schedule has reached (the "
    "reference restarts Adam and the lr decay when it resumes)",
)

# torchvision's VGG19 ('E'): output channels of each conv, 'M' for a 2x2 max-pool.
VGG19_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M")


class ReferenceUnsupported(ValueError):
    """The config asks for something the reference's train.py has no option for."""


def train_options(config):
    """The reference's options (argv, without --name/--checkpoints_dir/--dataroot) for `config`."""
    d, m, loss, t = config.data, config.model, config.loss, config.train
    unsupported = [(loss.lambda_l1 > 0, f"loss.lambda_l1={loss.lambda_l1} (the reference has no L1 term)"),
                   (m.netG not in ("global", "local"), f"model.netG={m.netG!r}"),
                   (m.netD != "multiscale", f"model.netD={m.netD!r}"),
                   (m.instance_feat or m.label_feat, "the feature encoder"),
                   (t.lr_decay_per_step, "train.lr_decay_per_step (the reference decays per epoch)"),
                   (t.beta2 != 0.999, f"train.beta2={t.beta2} (the reference's is 0.999)"),
                   (t.dtype != "float32", f"train.dtype={t.dtype}"),
                   (d.dataset_format != "aligned", f"data.dataset_format={d.dataset_format!r}"),
                   (d.label_nc <= 0, "RGB label images (label_nc=0)")]
    refused = [why for bad, why in unsupported if bad]
    if refused:
        raise ReferenceUnsupported("the reference's train.py cannot express " + "; ".join(refused))
    argv = ["--gpu_ids", "-1", "--label_nc", d.label_nc, "--output_nc", d.output_nc,
            "--resize_or_crop", d.resize_or_crop, "--loadSize", d.load_size, "--fineSize", d.fine_size,
            "--netG", m.netG, "--ngf", m.ngf, "--n_downsample_global", m.n_downsample_global,
            "--n_blocks_global", m.n_blocks_global, "--n_local_enhancers", m.n_local_enhancers,
            "--n_blocks_local", m.n_blocks_local, "--norm", m.norm]
    argv += ["--no_instance"] if not d.use_instance else []
    return [str(a) for a in argv]


def training_options(config, steps_per_epoch: int):
    """train_options plus what only train.py reads. Its frequencies count images, not steps."""
    m, loss, t = config.model, config.loss, config.train
    if t.save_latest_freq % steps_per_epoch:
        raise ReferenceUnsupported(f"train.save_latest_freq={t.save_latest_freq} is not a whole number of epochs "
                                   f"of {steps_per_epoch} steps (the reference's snapshots are per-epoch saves)")
    argv = train_options(config) + [
        "--ndf", m.ndf, "--n_layers_D", m.n_layers_D, "--num_D", m.num_D, "--lambda_feat", loss.lambda_feat,
        "--batchSize", t.batch_size, "--niter", t.niter, "--niter_decay", t.niter_decay,
        "--niter_fix_global", t.niter_fix_global, "--lr", t.lr, "--beta1", t.beta1, "--pool_size", t.pool_size,
        "--nThreads", 0, "--no_html", "--print_freq", t.print_freq * t.batch_size,
        "--display_freq", 10 ** 9, "--save_latest_freq", 10 ** 9,
        "--save_epoch_freq", t.save_latest_freq // steps_per_epoch]
    flags = {"--no_flip": config.data.no_flip, "--no_lsgan": loss.no_lsgan,
             "--no_ganFeat_loss": loss.no_ganFeat_loss, "--no_vgg_loss": loss.no_vgg_loss}
    return [str(a) for a in argv] + [f for f, on in flags.items() if on]


# ----- running the reference's code --------------------------------------------------------------


class _Held:
    """What DataParallel gives train.py on a GPU machine: the model as .module, called through."""

    def __init__(self, model):
        self.module = model

    def __call__(self, *args, **kwargs):
        return self.module(*args, **kwargs)


def vgg19_features(weights_path):
    """torchvision's vgg19().features with the tensors of `weights_path` (features.{i}.weight/.bias)."""
    import torch
    from torch import nn

    layers, channels = [], 3
    for v in VGG19_LAYERS:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    features = nn.Sequential(*layers)
    state = torch.load(weights_path, map_location="cpu")
    features.load_state_dict({k[len("features."):]: v for k, v in state.items() if k.startswith("features.")})
    return features


def use_reference(ref: str, stubs: str = DEFAULT_STUBS, vgg_weights=None):
    """Put the checkout on sys.path and apply CPU_CHANGES (all but the seeding and resume aids)."""
    import fractions

    import torch

    if not os.path.isfile(os.path.join(ref, "models", "pix2pixHD_model.py")):
        raise SystemExit(f"--ref {ref}: not a checkout of NVIDIA/pix2pixHD (no models/pix2pixHD_model.py); fetch "
                         "https://github.com/NVIDIA/pix2pixHD and name its folder.")
    if os.path.isdir(stubs):
        sys.path.insert(0, stubs)
    sys.path.insert(0, os.path.abspath(ref))
    fractions.gcd = math.gcd
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    torch.nn.Module.cuda = lambda self, *args, **kwargs: self
    torch.cuda.FloatTensor = torch.FloatTensor
    torch.cuda.ByteTensor = torch.ByteTensor
    import torchvision

    if vgg_weights:
        torchvision.models.vgg19 = lambda pretrained=False, **kwargs: type(
            "VGG19", (), {"features": vgg19_features(vgg_weights)})()
    import models.models as reference_models

    create = reference_models.create_model
    reference_models.create_model = lambda opt: _Held(create(opt))
    return reference_models


def seed_everything(seed: int):
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def install_resume_aids(resume: bool):
    """Each save('latest') also writes the Adam and RNG states; on resume they come back."""
    import torch
    import models.models as reference_models
    from models import pix2pixHD_model

    save = pix2pixHD_model.Pix2PixHDModel.save

    def save_with_state(self, which_epoch):
        save(self, which_epoch)
        if which_epoch == "latest":
            state = {"optimizer_G": self.optimizer_G.state_dict(), "optimizer_D": self.optimizer_D.state_dict(),
                     "torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state()}
            path = os.path.join(self.save_dir, RESUME_FILE)
            torch.save(state, path + ".tmp")
            os.replace(path + ".tmp", path)

    pix2pixHD_model.Pix2PixHDModel.save = save_with_state
    if not resume:
        return
    create = reference_models.create_model

    def create_resumed(opt):
        held = create(opt)
        model = held.module
        state = torch.load(os.path.join(model.save_dir, RESUME_FILE), weights_only=False)
        model.optimizer_G.load_state_dict(state["optimizer_G"])
        model.optimizer_D.load_state_dict(state["optimizer_D"])
        torch.set_rng_state(state["torch"])
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        start_epoch = int(np.loadtxt(os.path.join(model.save_dir, "iter.txt"), delimiter=",", dtype=int)[0])
        model.old_lr = opt.lr
        for _ in range(max(0, start_epoch - 1 - opt.niter)):  # update_learning_rate's steps, in its arithmetic
            model.old_lr -= opt.lr / opt.niter_decay
        for optimizer in (model.optimizer_G, model.optimizer_D):
            for group in optimizer.param_groups:
                group["lr"] = model.old_lr
        return held

    reference_models.create_model = create_resumed


def run_train(args, config):
    import torch

    torch.set_num_threads(args.threads)
    use_reference(args.ref, args.stubs, args.vgg_weights)
    steps_per_epoch = count_examples(args.data) // config.train.batch_size
    run_dir = os.path.abspath(args.run_dir)
    hold_lock(run_dir + ".lock")
    epochs = config.train.niter + config.train.niter_decay
    if os.path.isfile(os.path.join(run_dir, f"{epochs}_net_G.pth")):
        print(f"{run_dir}: trained ({epochs} epochs)", flush=True)
        return
    resume = all(os.path.isfile(os.path.join(run_dir, f)) for f in ("iter.txt", "latest_net_G.pth", RESUME_FILE))
    if not resume and os.path.isfile(os.path.join(run_dir, "loss_log.txt")):
        os.remove(os.path.join(run_dir, "loss_log.txt"))  # a fresh start's log only
    argv = training_options(config, steps_per_epoch) + [
        "--name", os.path.basename(run_dir), "--checkpoints_dir", os.path.dirname(run_dir),
        "--dataroot", os.path.abspath(args.data)]
    argv += ["--continue_train"] if resume else ["--load_pretrain", os.path.abspath(args.init)]
    seed_everything(args.seed)
    install_resume_aids(resume)
    sys.argv = [os.path.join(args.ref, "train.py")] + argv
    print("reference train.py", " ".join(argv), flush=True)
    runpy.run_path(os.path.join(args.ref, "train.py"), run_name="__main__")


def hold_lock(path: str, poll_s: int = 60):
    """One trainer per run folder: wait while a live process holds `path`, then hold it until exit."""
    import atexit

    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(open(path).read().strip())
                if holder <= 0:
                    raise ValueError(holder)
                os.kill(holder, 0)
            except (OSError, ValueError):  # the holder is gone (or never wrote its PID): a stale lock
                os.remove(path)
                continue
            time.sleep(poll_s)
            continue
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        atexit.register(lambda: os.path.isfile(path) and os.remove(path))
        return


def run_init(args, config):
    """The reference's initial G and D: define_G then define_D, as Pix2PixHDModel.initialize calls them."""
    import torch

    use_reference(args.ref, args.stubs)
    from models import networks

    d, m = config.data, config.model
    input_nc = d.label_nc + (1 if d.use_instance else 0)
    torch.manual_seed(args.seed)
    netG = networks.define_G(input_nc, d.output_nc, m.ngf, m.netG, m.n_downsample_global, m.n_blocks_global,
                             m.n_local_enhancers, m.n_blocks_local, m.norm)
    netD = networks.define_D(input_nc + d.output_nc, m.ndf, m.n_layers_D, m.norm, config.loss.no_lsgan, m.num_D,
                             not config.loss.no_ganFeat_loss)
    os.makedirs(args.out, exist_ok=True)
    for net, name in ((netG, "G"), (netD, "D")):
        torch.save(net.state_dict(), os.path.join(args.out, f"latest_net_{name}.pth.tmp"))
        os.replace(os.path.join(args.out, f"latest_net_{name}.pth.tmp"), os.path.join(args.out, f"latest_net_{name}.pth"))


class ReferenceSynthesizer:
    """The reference's test path as a Synthesizer for Evaluation.run: its InferenceModel (G loaded
    by its load_network), its input encoding (one-hot labels + get_edges boundaries) and
    util.tensor2im's uint8 pixels."""

    has_encoder = False
    clusters = None

    def __init__(self, config, checkpoints_dir: str, name: str, which_epoch: str):
        import contextlib
        import io

        import models.models as reference_models
        from options.test_options import TestOptions
        from util import util

        weights = os.path.join(checkpoints_dir, name, f"{which_epoch}_net_G.pth")
        if not os.path.isfile(weights):
            raise FileNotFoundError(f"{weights}: not found")
        argv = train_options(config) + ["--name", name, "--checkpoints_dir", checkpoints_dir,
                                         "--which_epoch", which_epoch, "--resize_or_crop", "none"]
        saved, sys.argv = sys.argv, ["test.py"] + argv
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the options and the network, printed
                opt = TestOptions().parse(save=False)
                self.model = reference_models.create_model(opt).module
        finally:
            sys.argv = saved
        self.tensor2im = util.tensor2im

    def random_samples(self) -> bool:
        """pix2pixHD's G draws no noise: one picture per map, whatever the seed or sample."""
        return False

    def synthesize_batch(self, labels, insts=None, styles=None, seed: int = 0, sample: int = 0):
        import torch

        label = torch.from_numpy(np.stack(labels)[:, None].astype(np.float32))  # ids, as ToTensor() * 255
        inst = torch.from_numpy(np.stack(insts)[:, None].astype(np.int32)) if insts is not None else None
        with torch.no_grad():
            fake = self.model.inference(label, inst)
        return np.stack([self.tensor2im(f) for f in fake])


def checkout_commit(ref: str):
    """The checkout's commit: its .git HEAD, or a COMMIT file beside an extracted archive."""
    for path in (os.path.join(ref, "COMMIT"), os.path.join(ref, ".git", "HEAD")):
        if os.path.isfile(path):
            text = open(path).read().strip()
            if text.startswith("ref: "):
                target = os.path.join(ref, ".git", text[5:])
                return open(target).read().strip() if os.path.isfile(target) else text
            return text
    return None


def count_examples(data: str) -> int:
    return len([f for f in os.listdir(os.path.join(data, "train_label")) if not f.startswith(".")])


def run_vgg19(args, config):
    """Random VGG19 weights, torchvision's init (He normal, fan_out; biases 0), torchvision's keys."""
    import torch

    torch.manual_seed(args.seed)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    state, index, channels = {}, 0, 3
    for v in VGG19_LAYERS:
        if v == "M":
            index += 1
            continue
        weight = torch.empty(v, channels, 3, 3)
        torch.nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu")
        state[f"features.{index}.weight"], state[f"features.{index}.bias"] = weight, torch.zeros(v)
        index, channels = index + 2, v
    torch.save(state, args.out + ".tmp")
    os.replace(args.out + ".tmp", args.out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=("init", "train", "vgg19"))
    parser.add_argument("--ref", help="a checkout of NVIDIA/pix2pixHD")
    parser.add_argument("--stubs", default=DEFAULT_STUBS, help="torchvision/dominate stand-ins (default %(default)s)")
    parser.add_argument("--config", default="configs/reference_training.py:gan_fm")
    parser.add_argument("--override", action="append", default=[], help="a --config.key=value for the config")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default="demo/synthetic")
    parser.add_argument("--run-dir")
    parser.add_argument("--init")
    parser.add_argument("--vgg-weights")
    parser.add_argument("--out")
    parser.add_argument("--threads", type=int, default=1, help="torch's CPU threads")
    args = parser.parse_args()
    config = None
    if args.command != "vgg19":
        from pix2pixhd_jax.config_loading import load_config

        config = load_config(args.config, args.override + [f"seed={args.seed}"])
    {"init": run_init, "train": run_train, "vgg19": run_vgg19}[args.command](args, config)


if __name__ == "__main__":
    main()
