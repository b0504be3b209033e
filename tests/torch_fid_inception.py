"""pytorch-fid's FID Inception (pool3) re-created from plain torch.nn layers, for the tests.

Written to pytorch-fid's structure (torchvision's Inception3 with FIDInceptionA/C/E_1/E_2),
so the state dict has its keys (`Mixed_5b.branch5x5_2.conv.weight`, `...bn.running_var`,
`fc.weight`). Only tests/test_inception.py imports this (it needs torch).
"""

import torch
from torch import nn
from torch.nn import functional as F


class TorchConv(nn.Module):
    def __init__(self, cin, cout, kernel, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=1.0)  # momentum 1: running = last batch's stats

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


def _avg(x):
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class TorchA(nn.Module):
    def __init__(self, cin, pool_features):
        super().__init__()
        self.branch1x1 = TorchConv(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = TorchConv(cin, 48, 1), TorchConv(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = TorchConv(cin, 64, 1)
        self.branch3x3dbl_2 = TorchConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = TorchConv(96, 96, 3, padding=1)
        self.branch_pool = TorchConv(cin, pool_features, 1)

    def forward(self, x):
        return torch.cat([self.branch1x1(x), self.branch5x5_2(self.branch5x5_1(x)),
                          self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          self.branch_pool(_avg(x))], 1)


class TorchB(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3 = TorchConv(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = TorchConv(cin, 64, 1)
        self.branch3x3dbl_2 = TorchConv(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = TorchConv(96, 96, 3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch3x3(x), self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
                          F.max_pool2d(x, 3, stride=2)], 1)


class TorchC(nn.Module):
    def __init__(self, cin, c7):
        super().__init__()
        self.branch1x1 = TorchConv(cin, 192, 1)
        self.branch7x7_1 = TorchConv(cin, c7, 1)
        self.branch7x7_2 = TorchConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7_3 = TorchConv(c7, 192, (7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = TorchConv(cin, c7, 1)
        self.branch7x7dbl_2 = TorchConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = TorchConv(c7, c7, (1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = TorchConv(c7, c7, (7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = TorchConv(c7, 192, (1, 7), padding=(0, 3))
        self.branch_pool = TorchConv(cin, 192, 1)

    def forward(self, x):
        b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        bd = self.branch7x7dbl_1(x)
        for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
            bd = layer(bd)
        return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg(x))], 1)


class TorchD(nn.Module):
    def __init__(self, cin):
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = TorchConv(cin, 192, 1), TorchConv(192, 320, 3, stride=2)
        self.branch7x7x3_1 = TorchConv(cin, 192, 1)
        self.branch7x7x3_2 = TorchConv(192, 192, (1, 7), padding=(0, 3))
        self.branch7x7x3_3 = TorchConv(192, 192, (7, 1), padding=(3, 0))
        self.branch7x7x3_4 = TorchConv(192, 192, 3, stride=2)

    def forward(self, x):
        b7 = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7, F.max_pool2d(x, 3, stride=2)], 1)


class TorchE(nn.Module):
    def __init__(self, cin, max_pool):
        super().__init__()
        self.max_pool = max_pool  # FIDInceptionE_2 (Mixed_7c) max-pools; E_1 averages without the padding
        self.branch1x1 = TorchConv(cin, 320, 1)
        self.branch3x3_1 = TorchConv(cin, 384, 1)
        self.branch3x3_2a = TorchConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3_2b = TorchConv(384, 384, (3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = TorchConv(cin, 448, 1)
        self.branch3x3dbl_2 = TorchConv(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = TorchConv(384, 384, (1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = TorchConv(384, 384, (3, 1), padding=(1, 0))
        self.branch_pool = TorchConv(cin, 192, 1)

    def forward(self, x):
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _avg(x)
        return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class TorchFIDInception(nn.Module):
    """pool3 of pytorch-fid's InceptionV3, input already in [-1, 1] and not resized."""

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = TorchConv(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = TorchConv(32, 32, 3)
        self.Conv2d_2b_3x3 = TorchConv(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = TorchConv(64, 80, 1)
        self.Conv2d_4a_3x3 = TorchConv(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = TorchA(192, 32), TorchA(256, 64), TorchA(288, 64)
        self.Mixed_6a = TorchB(288)
        self.Mixed_6b, self.Mixed_6c = TorchC(768, 128), TorchC(768, 160)
        self.Mixed_6d, self.Mixed_6e = TorchC(768, 160), TorchC(768, 192)
        self.Mixed_7a = TorchD(768)
        self.Mixed_7b, self.Mixed_7c = TorchE(1280, max_pool=False), TorchE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)  # in the real file, unused by pool3

    def forward(self, x):
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = F.max_pool2d(self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x)), 3, stride=2)
        for name in ("5b", "5c", "5d", "6a", "6b", "6c", "6d", "6e", "7a", "7b", "7c"):
            x = getattr(self, f"Mixed_{name}")(x)
        return x.mean((2, 3))
