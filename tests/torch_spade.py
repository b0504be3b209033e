"""SPADE's and OASIS's PyTorch networks, re-created for the interop tests.

Written from the papers and the references' descriptions (NVlabs/SPADE models/networks,
boschresearch/OASIS models) to their module structure, so the state dicts have their keys
(`head_0.norm_0.param_free_norm.running_mean`, `body.3.conv_s.weight_orig`,
`body_up.2.conv1.2.weight_u`, `layer_up_last.bias`, ...). The generators take the noise as an
argument (OASIS's draws its own), so both sides see the same. test_spade_interop.py's
reference-code test checks these modules against the references' own code where a checkout is
given. Only the tests import this (it needs torch).
"""

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import spectral_norm


def param_free_norm(kind, channels):
    if kind == "batch":
        return nn.BatchNorm2d(channels, affine=False)
    return nn.InstanceNorm2d(channels, affine=False)


class SPADE(nn.Module):
    """`hidden` is 128 in both references (our model.spade_hidden lets small models narrow it)."""

    def __init__(self, channels, label_nc, norm="batch", ks=3, norm_name="param_free_norm", hidden=128):
        super().__init__()
        self.norm_name = norm_name
        setattr(self, norm_name, param_free_norm(norm, channels))
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_nc, hidden, ks, padding=ks // 2), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(hidden, channels, ks, padding=ks // 2)
        self.mlp_beta = nn.Conv2d(hidden, channels, ks, padding=ks // 2)

    def forward(self, x, seg):
        normalized = getattr(self, self.norm_name)(x)
        actv = self.mlp_shared(F.interpolate(seg, size=x.shape[2:], mode="nearest"))
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResnetBlock(nn.Module):
    def __init__(self, fin, fout, label_nc, spectral=True, norm="batch", ks=3, norm_name="param_free_norm",
                 hidden=128):
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        middle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = sn(nn.Conv2d(fin, middle, 3, padding=1))
        self.conv_1 = sn(nn.Conv2d(middle, fout, 3, padding=1))
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, bias=False))
        self.norm_0 = SPADE(fin, label_nc, norm, ks, norm_name, hidden)
        self.norm_1 = SPADE(middle, label_nc, norm, ks, norm_name, hidden)
        if self.learned_shortcut:
            self.norm_s = SPADE(fin, label_nc, norm, ks, norm_name, hidden)

    def forward(self, x, seg):
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), 0.2))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), 0.2))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """NVlabs/SPADE's generator without the VAE; num_up: 'normal' | 'more' | 'most'."""

    def __init__(self, label_nc, ngf=64, num_up="normal", spectral=True, norm="batch"):
        super().__init__()
        self.num_up = num_up
        self.fc = nn.Conv2d(label_nc, 16 * ngf, 3, padding=1)
        blocks = [("head_0", 16, 16), ("G_middle_0", 16, 16), ("G_middle_1", 16, 16), ("up_0", 16, 8),
                  ("up_1", 8, 4), ("up_2", 4, 2), ("up_3", 2, 1)]
        for name, fin, fout in blocks:
            setattr(self, name, SPADEResnetBlock(fin * ngf, fout * ngf, label_nc, spectral, norm))
        final = ngf
        if num_up == "most":
            self.up_4 = SPADEResnetBlock(ngf, ngf // 2, label_nc, spectral, norm)
            final = ngf // 2
        self.conv_img = nn.Conv2d(final, 3, 3, padding=1)
        self.n_up = {"normal": 5, "more": 6, "most": 7}[num_up]

    def forward(self, seg):
        up = lambda x: F.interpolate(x, scale_factor=2, mode="nearest")  # noqa: E731
        h, w = seg.shape[2] // 2 ** self.n_up, seg.shape[3] // 2 ** self.n_up
        x = self.fc(F.interpolate(seg, size=(h, w)))
        x = self.head_0(x, seg)
        x = self.G_middle_0(up(x), seg)
        if self.num_up in ("more", "most"):
            x = up(x)
        x = self.G_middle_1(x, seg)
        for name in ("up_0", "up_1", "up_2", "up_3") + (("up_4",) if self.num_up == "most" else ()):
            x = getattr(self, name)(up(x), seg)
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class OASISGenerator(nn.Module):
    """OASIS's generator, the noise z (N, z_dim, H, W) given by the caller (or none with z_dim 0)."""

    def __init__(self, semantic_nc, ngf=64, num_res_blocks=6, z_dim=64, spectral=True, norm="batch", hidden=128):
        super().__init__()
        widths = [16, 16, 16, 8, 4, 2, 1][6 - num_res_blocks:]
        self.num_res_blocks = num_res_blocks
        cond = semantic_nc + z_dim
        self.conv_img = nn.Conv2d(widths[-1] * ngf, 3, 3, padding=1)
        self.body = nn.ModuleList([SPADEResnetBlock(widths[i] * ngf, widths[i + 1] * ngf, cond, spectral, norm,
                                                    norm_name="first_norm", hidden=hidden)
                                   for i in range(num_res_blocks)])
        self.fc = nn.Conv2d(cond, widths[0] * ngf, 3, padding=1)

    def forward(self, seg, z=None):
        if z is not None:
            seg = torch.cat((z, seg), dim=1)
        f = 2 ** (self.num_res_blocks - 1)
        x = self.fc(F.interpolate(seg, size=(seg.shape[2] // f, seg.shape[3] // f)))
        for i, block in enumerate(self.body):
            x = block(x, seg)
            if i < self.num_res_blocks - 1:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
        return torch.tanh(self.conv_img(F.leaky_relu(x, 0.2)))


class ResBlockD(nn.Module):
    def __init__(self, fin, fout, direction, first=False, spectral=True):
        super().__init__()
        sn = spectral_norm if spectral else (lambda m: m)
        self.direction, self.first, self.learned_shortcut = direction, first, fin != fout
        if first:
            self.conv1 = nn.Sequential(sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        elif direction > 0:
            self.conv1 = nn.Sequential(nn.LeakyReLU(0.2), nn.Upsample(scale_factor=2), sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        else:
            self.conv1 = nn.Sequential(nn.LeakyReLU(0.2), sn(nn.Conv2d(fin, fout, 3, 1, 1)))
        self.conv2 = nn.Sequential(nn.LeakyReLU(0.2), sn(nn.Conv2d(fout, fout, 3, 1, 1)))
        if self.learned_shortcut:
            self.conv_s = sn(nn.Conv2d(fin, fout, 1, 1, 0))

    def forward(self, x):
        s = x
        if self.first and self.direction < 0:
            s = F.avg_pool2d(s, 2)
        if self.direction > 0:
            s = F.interpolate(s, scale_factor=2, mode="nearest")
        if self.learned_shortcut:
            s = self.conv_s(s)
        if not self.first and self.direction < 0:
            s = F.avg_pool2d(s, 2)
        dx = self.conv2(self.conv1(x))
        if self.direction < 0:
            dx = F.avg_pool2d(dx, 2)
        return s + dx


class OASISDiscriminator(nn.Module):
    def __init__(self, semantic_nc, ndf=64, num_res_blocks=6, spectral=True, input_nc=3):
        super().__init__()
        widths = [ndf * m for m in (2, 2, 4, 4, 8, 8)][:num_res_blocks]
        n = num_res_blocks
        ins = [input_nc] + widths
        self.body_down = nn.ModuleList([ResBlockD(ins[i], widths[i], -1, i == 0, spectral) for i in range(n)])
        up = [ResBlockD(widths[-1], widths[-2], 1, spectral=spectral)]
        for i in range(1, n):
            out = widths[n - 2 - i] if i < n - 1 else ndf
            up.append(ResBlockD(2 * widths[n - 1 - i], out, 1, spectral=spectral))
        self.body_up = nn.ModuleList(up)
        self.layer_up_last = nn.Conv2d(ndf, semantic_nc + 1, 1, 1, 0)

    def forward(self, x):
        skips = []
        for block in self.body_down:
            x = block(x)
            skips.append(x)
        x = self.body_up[0](x)
        for i in range(1, len(self.body_down)):
            x = self.body_up[i](torch.cat((skips[-i - 1], x), dim=1))
        return self.layer_up_last(x)


def randomize(module, seed=0):
    """Random weights of the scale the references train to, biases and running statistics that
    are not trivial, and spectral norm's v drawn afresh with u = normalize(W v), the invariant
    torch's power iteration leaves (independent u and v could make sigma = u.Wv near 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                tensor.uniform_(0.5, 1.5, generator=g)
            elif name.endswith("weight_u"):
                continue
            elif name.endswith("weight_v"):
                tensor.normal_(0.0, 1.0, generator=g)
                tensor.div_(tensor.norm())
            elif name.endswith(("weight", "weight_orig")):
                fan_in = tensor[0].numel()
                tensor.normal_(0.0, 1.0 / fan_in ** 0.5, generator=g)
            else:
                tensor.normal_(0.0, 0.1, generator=g)
        for m in module.modules():
            if hasattr(m, "weight_orig"):
                u = m.weight_orig.reshape(m.weight_orig.shape[0], -1) @ m.weight_v
                m.weight_u.copy_(u / u.norm())
    return module


def calibrate(module, *inputs, seed=0):
    """Running statistics near the activations' own (one training pass with momentum 1, then
    scaled and shifted a little), so that eval mode neither blows up through the blocks, as
    statistics unrelated to the weights make it do, nor equals training mode."""
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.momentum = 1.0
    module.train()
    with torch.no_grad():
        module(*inputs)
        for m in norms:
            m.momentum = 0.1
            m.running_mean.add_(0.1 * m.running_var.sqrt() * torch.randn(m.running_mean.shape, generator=g))
            m.running_var.mul_(torch.empty(m.running_var.shape).uniform_(0.8, 1.2, generator=g))
    return module


# ----- OASIS's loss, as its models/losses.py computes it (NCHW, one-hot labels) -----------------


def class_balancing(label, contain_dontcare_label=True):
    """label: one-hot (N, C, H, W) -> the weight map (N, 1, H, W)."""
    occurrence = torch.sum(label, dim=(0, 2, 3))
    if contain_dontcare_label:
        occurrence[0] = 0
    present = (occurrence > 0).sum()
    coefficients = torch.reciprocal(occurrence) * torch.numel(label) / (present * label.shape[1])
    if contain_dontcare_label:
        coefficients[0] = 0
    return coefficients[torch.argmax(label, dim=1, keepdim=True)]


def n1_loss(logits, label, for_real, balancing=True, contain_dontcare_label=True):
    """The (N+1)-class cross-entropy: targets c + 1 (real) or 0 (fake) through the reference's
    clamp arithmetic; the real term weighted per pixel, both means over every pixel."""
    c = label.shape[1]
    ids = torch.argmax(label, dim=1) + (c if for_real else 0)
    target = torch.clamp(ids, min=c - 1) - c + 1
    loss = F.cross_entropy(logits, target, reduction="none")
    if for_real and balancing:
        return torch.mean(loss * class_balancing(label, contain_dontcare_label)[:, 0])
    return torch.mean(loss)


def oasis_iteration(netG, netD, ema, opt_g, opt_d, label, image, z_g, z_d, mask, lambda_labelmix=10.0,
                    ema_decay=0.9999, balancing=True, contain_dontcare_label=True):
    """One iteration of OASIS's train.py (models.OASIS_model's 'losses_G' then 'losses_D', then
    utils.update_EMA on the state dicts), with the noise of both generator passes and LabelMix's
    mask given. Returns the losses."""
    netG.zero_grad()
    fake = netG(label, z_g)
    loss_g = n1_loss(netD(fake), label, True, balancing, contain_dontcare_label)
    loss_g.backward()
    opt_g.step()

    netD.zero_grad()
    with torch.no_grad():
        fake = netG(label, z_d)
    out_fake = netD(fake)
    loss_fake = n1_loss(out_fake, label, False, balancing, contain_dontcare_label)
    out_real = netD(image)
    loss_real = n1_loss(out_real, label, True, balancing, contain_dontcare_label)
    loss_d = loss_fake + loss_real
    loss_lm = None
    if lambda_labelmix > 0:
        out_mixed = netD(mask * image + (1 - mask) * fake)
        loss_lm = lambda_labelmix * F.mse_loss(mask * out_real + (1 - mask) * out_fake, out_mixed)
        loss_d = loss_d + loss_lm
    loss_d.backward()
    opt_d.step()

    with torch.no_grad():
        state_g = netG.state_dict()
        for key, value in ema.items():
            if value.is_floating_point():
                value.copy_(value * ema_decay + state_g[key] * (1 - ema_decay))
    return {"loss_G": loss_g.item(), "loss_D": loss_d.item(), "loss_D_fake": loss_fake.item(),
            "loss_D_real": loss_real.item(), "loss_D_labelmix": None if loss_lm is None else loss_lm.item()}
