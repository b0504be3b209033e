"""The PyTorch reference's networks, re-created for the interop tests.

Written from the facts in ../shared/reference/pix2pixhd_facts.md to the reference's
module structure, so their state dicts have its keys (`model.1.weight`,
`model1_2.0.conv_block.5.weight`, `scale2_layer1.1.running_mean`, ...). Only the
tests import this (it needs torch).
"""

import numpy as np
import torch
from torch import nn


def norm_layer(kind):
    return (lambda c: nn.InstanceNorm2d(c, affine=False)) if kind == "instance" else (lambda c: nn.BatchNorm2d(c))


class ResnetBlock(nn.Module):
    def __init__(self, dim, norm, use_dropout=False):
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim), nn.ReLU(True)]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3), norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x):
        return x + self.conv_block(x)


def global_layers(input_nc, output_nc, ngf, n_down, n_blocks, norm, use_dropout=False):
    layers = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, ngf, 7), norm(ngf), nn.ReLU(True)]
    for i in range(n_down):
        m = 2 ** i
        layers += [nn.Conv2d(ngf * m, ngf * m * 2, 3, stride=2, padding=1), norm(ngf * m * 2), nn.ReLU(True)]
    for _ in range(n_blocks):
        layers.append(ResnetBlock(ngf * 2 ** n_down, norm, use_dropout))
    for i in range(n_down):
        m = 2 ** (n_down - i)
        layers += [nn.ConvTranspose2d(ngf * m, ngf * m // 2, 3, stride=2, padding=1, output_padding=1),
                   norm(ngf * m // 2), nn.ReLU(True)]
    layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
    return layers


class GlobalGenerator(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_down, n_blocks, norm="instance", use_dropout=False):
        super().__init__()
        self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf, n_down, n_blocks, norm_layer(norm),
                                                  use_dropout))

    def forward(self, x):
        return self.model(x)


def downsample():
    return nn.AvgPool2d(3, stride=2, padding=[1, 1], count_include_pad=False)


class LocalEnhancer(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_down, n_blocks_global, n_local, n_blocks_local, norm="instance"):
        super().__init__()
        self.n_local = n_local
        norm = norm_layer(norm)
        layers = global_layers(input_nc, output_nc, ngf * 2 ** n_local, n_down, n_blocks_global, norm)
        self.model = nn.Sequential(*layers[:-3])
        for n in range(1, n_local + 1):
            g = ngf * 2 ** (n_local - n)
            front = [nn.ReflectionPad2d(3), nn.Conv2d(input_nc, g, 7), norm(g), nn.ReLU(True),
                     nn.Conv2d(g, g * 2, 3, stride=2, padding=1), norm(g * 2), nn.ReLU(True)]
            back = [ResnetBlock(g * 2, norm) for _ in range(n_blocks_local)]
            back += [nn.ConvTranspose2d(g * 2, g, 3, stride=2, padding=1, output_padding=1), norm(g), nn.ReLU(True)]
            if n == n_local:
                back += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
            setattr(self, f"model{n}_1", nn.Sequential(*front))
            setattr(self, f"model{n}_2", nn.Sequential(*back))
        self.downsample = downsample()

    def forward(self, x):
        pyramid = [x]
        for _ in range(self.n_local):
            pyramid.append(self.downsample(pyramid[-1]))
        out = self.model(pyramid[-1])
        for n in range(1, self.n_local + 1):
            out = getattr(self, f"model{n}_2")(getattr(self, f"model{n}_1")(pyramid[self.n_local - n]) + out)
        return out


class Encoder(nn.Module):
    def __init__(self, input_nc, output_nc, ngf, n_down, norm="instance"):
        super().__init__()
        self.output_nc = output_nc
        self.model = nn.Sequential(*global_layers(input_nc, output_nc, ngf, n_down, 0, norm_layer(norm)))

    def forward(self, x, inst):
        # The reference's loop over instances, batch items and channels.
        out = self.model(x)
        mean = out.clone()
        for i in np.unique(inst.numpy().astype(int)):
            for b in range(x.size(0)):
                idx = (inst[b:b + 1] == int(i)).nonzero()
                for j in range(self.output_nc):
                    vals = out[idx[:, 0] + b, idx[:, 1] + j, idx[:, 2], idx[:, 3]]
                    mean[idx[:, 0] + b, idx[:, 1] + j, idx[:, 2], idx[:, 3]] = torch.mean(vals).expand_as(vals)
        return mean


def nlayer_sequence(input_nc, ndf, n_layers, norm):
    seq = [[nn.Conv2d(input_nc, ndf, 4, stride=2, padding=2), nn.LeakyReLU(0.2, True)]]
    nf = ndf
    for _ in range(1, n_layers):
        prev, nf = nf, min(nf * 2, 512)
        seq.append([nn.Conv2d(prev, nf, 4, stride=2, padding=2), norm(nf), nn.LeakyReLU(0.2, True)])
    prev, nf = nf, min(nf * 2, 512)
    seq.append([nn.Conv2d(prev, nf, 4, stride=1, padding=2), norm(nf), nn.LeakyReLU(0.2, True)])
    seq.append([nn.Conv2d(nf, 1, 4, stride=1, padding=2)])
    return seq


class MultiscaleDiscriminator(nn.Module):
    def __init__(self, input_nc, ndf, n_layers, num_D, norm="instance", intermediate=True):
        super().__init__()
        self.num_D, self.n_layers, self.intermediate = num_D, n_layers, intermediate
        for i in range(num_D):
            seq = nlayer_sequence(input_nc, ndf, n_layers, norm_layer(norm))
            if intermediate:
                for j, layer in enumerate(seq):
                    setattr(self, f"scale{i}_layer{j}", nn.Sequential(*layer))
            else:
                setattr(self, f"layer{i}", nn.Sequential(*[m for layer in seq for m in layer]))
        self.downsample = downsample()

    def forward(self, x):
        results = []
        for i in range(self.num_D):
            k = self.num_D - 1 - i
            if self.intermediate:
                feats = [x]
                for j in range(self.n_layers + 2):
                    feats.append(getattr(self, f"scale{k}_layer{j}")(feats[-1]))
                results.append(feats[1:])
            else:
                results.append([getattr(self, f"layer{k}")(x)])
            if i != self.num_D - 1:
                x = self.downsample(x)
        return results


def randomize(module, seed=0):
    """Reference init (N(0, 0.02) convs) plus non-trivial batch-norm parameters and statistics."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                m.weight.normal_(0.0, 0.02, generator=g)
                if m.bias is not None:
                    m.bias.uniform_(-0.1, 0.1, generator=g)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.normal_(1.0, 0.2, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
                m.running_mean.normal_(0.0, 0.2, generator=g)
                m.running_var.uniform_(0.5, 1.5, generator=g)
    return module


def state_dict_numpy(module):
    return {k: v.detach().numpy() for k, v in module.state_dict().items()}


def to_nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def to_nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


class PatchGAN(nn.Module):
    """pix2pix's NLayerDiscriminator: kernel 4, padding 1, no conv bias before batch norm."""

    def __init__(self, input_nc, ndf=64, n_layers=3):
        super().__init__()
        seq = [nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, n_layers):
            prev, mult = mult, min(2 ** n, 8)
            seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=2, padding=1, bias=False), nn.BatchNorm2d(ndf * mult),
                    nn.LeakyReLU(0.2, True)]
        prev, mult = mult, min(2 ** n_layers, 8)
        seq += [nn.Conv2d(ndf * prev, ndf * mult, 4, stride=1, padding=1, bias=False), nn.BatchNorm2d(ndf * mult),
                nn.LeakyReLU(0.2, True), nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1)]
        self.model = nn.Sequential(*seq)

    def forward(self, x):
        return self.model(x)


def get_edges(t):
    """The reference's Pix2PixHDModel.get_edges: 1 where an instance id differs from a 4-neighbour's
    (t: (N, 1, H, W) integer ids) -> float (N, 1, H, W)."""
    edge = torch.zeros(t.shape, dtype=torch.bool)
    edge[:, :, :, 1:] |= t[:, :, :, 1:] != t[:, :, :, :-1]
    edge[:, :, :, :-1] |= t[:, :, :, 1:] != t[:, :, :, :-1]
    edge[:, :, 1:, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
    edge[:, :, :-1, :] |= t[:, :, 1:, :] != t[:, :, :-1, :]
    return edge.float()


def tensor2im(fake):
    """The reference's util.tensor2im on an (..., H, W, C) array in [-1, 1]: truncated to uint8."""
    return np.clip((fake + 1) / 2.0 * 255.0, 0, 255).astype(np.uint8)
