"""pix2pix's U-Net generator against a PyTorch copy of the reference UnetGenerator."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pixhd_jax.models.layers import count_params
from pix2pixhd_jax.models.unet import UnetGenerator, load_torch_unet


def torch_unet_classes():
    """UnetGenerator / UnetSkipConnectionBlock exactly as in junyanz/pytorch-CycleGAN-and-pix2pix."""
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class UnetGenerator(nn.Module):
        def __init__(self, input_nc, output_nc, num_downs, ngf=64, norm_layer=nn.BatchNorm2d, use_dropout=False):
            super().__init__()
            unet_block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, input_nc=None, submodule=None, norm_layer=norm_layer, innermost=True
            )
            for i in range(num_downs - 5):
                unet_block = UnetSkipConnectionBlock(
                    ngf * 8, ngf * 8, input_nc=None, submodule=unet_block, norm_layer=norm_layer,
                    use_dropout=use_dropout,
                )
            unet_block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
            unet_block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
            unet_block = UnetSkipConnectionBlock(ngf, ngf * 2, input_nc=None, submodule=unet_block, norm_layer=norm_layer)
            self.model = UnetSkipConnectionBlock(
                output_nc, ngf, input_nc=input_nc, submodule=unet_block, outermost=True, norm_layer=norm_layer
            )

        def forward(self, input):
            return self.model(input)

    class UnetSkipConnectionBlock(nn.Module):
        def __init__(self, outer_nc, inner_nc, input_nc=None, submodule=None, outermost=False, innermost=False,
                     norm_layer=nn.BatchNorm2d, use_dropout=False):
            super().__init__()
            self.outermost = outermost
            if type(norm_layer) == functools.partial:
                use_bias = norm_layer.func == nn.InstanceNorm2d
            else:
                use_bias = norm_layer == nn.InstanceNorm2d
            if input_nc is None:
                input_nc = outer_nc
            downconv = nn.Conv2d(input_nc, inner_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
            downrelu = nn.LeakyReLU(0.2, True)
            downnorm = norm_layer(inner_nc)
            uprelu = nn.ReLU(True)
            upnorm = norm_layer(outer_nc)

            if outermost:
                upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1)
                down = [downconv]
                up = [uprelu, upconv, nn.Tanh()]
                model = down + [submodule] + up
            elif innermost:
                upconv = nn.ConvTranspose2d(inner_nc, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
                down = [downrelu, downconv]
                up = [uprelu, upconv, upnorm]
                model = down + up
            else:
                upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, kernel_size=4, stride=2, padding=1, bias=use_bias)
                down = [downrelu, downconv, downnorm]
                up = [uprelu, upconv, upnorm]
                if use_dropout:
                    model = down + [submodule] + up + [nn.Dropout(0.5)]
                else:
                    model = down + [submodule] + up

            self.model = nn.Sequential(*model)

        def forward(self, x):
            if self.outermost:
                return self.model(x)
            else:
                return torch.cat([x, self.model(x)], 1)

    return torch, UnetGenerator


def make_torch_unet(num_downs, ngf=8, use_dropout=True, norm="batch", seed=0):
    """A seeded torch UnetGenerator with PyTorch's default init and non-trivial BN affine/running stats."""
    torch, TorchUnet = torch_unet_classes()
    torch.manual_seed(seed)
    norm_layer = (
        torch.nn.BatchNorm2d if norm == "batch"
        else functools.partial(torch.nn.InstanceNorm2d, affine=False, track_running_stats=False)
    )
    net = TorchUnet(3, 3, num_downs, ngf=ngf, norm_layer=norm_layer, use_dropout=use_dropout)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(1.0 + 0.3 * torch.randn(c, generator=g))
                m.bias.copy_(0.2 * torch.randn(c, generator=g))
                m.running_mean.copy_(0.3 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
    return torch, net


def state_dict_np(net):
    return {k: v.detach().numpy().copy() for k, v in net.state_dict().items()}


def torch_forward(torch, net, x_nhwc):
    with torch.no_grad():
        out = net(torch.from_numpy(x_nhwc.transpose(0, 3, 1, 2).copy()))
    return out.numpy().transpose(0, 2, 3, 1)


@pytest.mark.parametrize("num_downs,size", [(7, 128), (8, 256)], ids=["unet_128", "unet_256"])
def test_matches_torch_eval(num_downs, size):
    torch, net = make_torch_unet(num_downs, ngf=8, use_dropout=True)
    net.eval()
    variables = load_torch_unet(state_dict_np(net), num_downs)
    x = np.random.default_rng(1).uniform(-1, 1, (1, size, size, 3)).astype(np.float32)
    want = torch_forward(torch, net, x)
    got = UnetGenerator(num_downs=num_downs, ngf=8).apply(variables, jnp.asarray(x), train=False)
    assert got.shape == want.shape == (1, size, size, 3)
    assert np.abs(want).max() > 0.05  # a non-trivial output, not all squashed to 0
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


def test_matches_torch_train_batch_stats():
    """train=True uses batch statistics (compared with torch in train mode, dropout off) and
    updates the running means as PyTorch does (momentum 0.1)."""
    torch, net = make_torch_unet(7, ngf=8, use_dropout=False, seed=3)
    variables = load_torch_unet(state_dict_np(net), 7)
    net.train()
    x = np.random.default_rng(2).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    want = torch_forward(torch, net, x)
    got, updates = UnetGenerator(num_downs=7, ngf=8, use_dropout=False).apply(
        variables, jnp.asarray(x), train=True, mutable=["batch_stats"]
    )
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)
    # Batch statistics really differ from the running ones here: eval mode gives another output.
    evald = UnetGenerator(num_downs=7, ngf=8, use_dropout=False).apply(variables, jnp.asarray(x), train=False)
    assert np.abs(np.asarray(evald) - want).max() > 1e-2
    # Updated running means equal torch's. (Running variances differ by design of flax's
    # BatchNorm, which averages the biased batch variance where PyTorch uses the unbiased one.)
    new = load_torch_unet(state_dict_np(net), 7)["batch_stats"]
    for name, stats in new.items():
        np.testing.assert_allclose(
            np.asarray(updates["batch_stats"][name]["bn"]["mean"]), np.asarray(stats["bn"]["mean"]),
            atol=1e-5, rtol=1e-5, err_msg=name,
        )


def test_matches_torch_instance_norm():
    """norm='instance': every conv has a bias, no BN parameters or statistics."""
    torch, net = make_torch_unet(7, ngf=4, use_dropout=False, norm="instance", seed=5)
    net.eval()
    variables = load_torch_unet(state_dict_np(net), 7, norm="instance")
    assert variables["batch_stats"] == {}
    x = np.random.default_rng(3).uniform(-1, 1, (1, 128, 128, 3)).astype(np.float32)
    got = UnetGenerator(num_downs=7, ngf=4, norm="instance").apply(variables, jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), torch_forward(torch, net, x), atol=1e-4, rtol=0)


@pytest.mark.parametrize("num_downs", [7, 8], ids=["unet_128", "unet_256"])
def test_param_count_matches_torch(num_downs):
    torch, TorchUnet = torch_unet_classes()
    with torch.device("meta"):  # shapes only, no allocation or init
        net = TorchUnet(3, 3, num_downs, ngf=64, norm_layer=torch.nn.BatchNorm2d, use_dropout=True)
    want = sum(p.numel() for p in net.parameters())
    size = 2**num_downs
    shapes = jax.eval_shape(
        lambda: UnetGenerator(num_downs=num_downs, ngf=64).init(
            jax.random.PRNGKey(0), jnp.zeros((1, size, size, 3)), train=False
        )
    )
    assert count_params(shapes["params"]) == want
    buffers = sum(b.numel() for n, b in net.named_buffers() if not n.endswith("num_batches_tracked"))
    assert count_params(shapes["batch_stats"]) == buffers
    if num_downs == 8:
        assert want == 54_414_019  # pix2pix's printed size of unet_256 at ngf 64


def test_output_shape_range_and_init():
    model = UnetGenerator(num_downs=7, ngf=4)
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 128, 256, 1)) * 3.0
    variables = model.init(jax.random.PRNGKey(0), x)
    y = model.apply(variables, x)
    assert y.shape == (2, 128, 256, 3) and y.dtype == jnp.float32
    assert float(jnp.min(y)) >= -1.0 and float(jnp.max(y)) <= 1.0
    p = variables["params"]
    # init_weights('normal', 0.02): conv biases zero (only the outermost up conv has one with batch norm).
    assert [k for k in p if "bias" in p[k].get("conv", {})] == ["up_0"]
    assert not np.any(np.asarray(p["up_0"]["conv"]["bias"]))
    k = np.asarray(p["down_3"]["conv"]["kernel"])
    assert abs(k.std() - 0.02) < 0.003 and abs(k.mean()) < 0.003
    scale = np.asarray(p["up_norm_3"]["bn"]["scale"])
    assert abs(scale.mean() - 1.0) < 0.02 and 0 < scale.std() < 0.05
    # Instance norm: every conv gets a zero bias.
    pi = UnetGenerator(num_downs=5, ngf=4, norm="instance").init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, 3)))["params"]
    assert all(not np.any(np.asarray(v["conv"]["bias"])) for v in pi.values())
    assert len(pi) == 10


def test_dropout_rngs_and_determinism():
    model = UnetGenerator(num_downs=6, ngf=4)  # level 4 carries dropout
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 64, 64, 3))
    variables = model.init(jax.random.PRNGKey(0), x)

    def train_out(seed):
        y, _ = model.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(seed)}, mutable=["batch_stats"])
        return np.asarray(y)

    a, b, a2 = train_out(10), train_out(11), train_out(10)
    assert np.abs(a - b).max() > 1e-4
    np.testing.assert_array_equal(a, a2)
    e1 = model.apply(variables, x, train=False)
    e2 = model.apply(variables, x, train=False, rngs={"dropout": jax.random.PRNGKey(3)})
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
    # Without dropout, train mode is deterministic too: the rngs above are the only difference.
    nodrop = UnetGenerator(num_downs=6, ngf=4, use_dropout=False)
    c, _ = nodrop.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(10)}, mutable=["batch_stats"])
    d, _ = nodrop.apply(variables, x, train=True, rngs={"dropout": jax.random.PRNGKey(11)}, mutable=["batch_stats"])
    np.testing.assert_array_equal(np.asarray(c), np.asarray(d))


def test_bad_size_raises():
    model = UnetGenerator(num_downs=7, ngf=4)
    with pytest.raises(ValueError, match=r"2\*\*7 = 128.*got 96x128"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 96, 128, 3)))
    with pytest.raises(ValueError, match=r"got 128x200"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((1, 128, 200, 3)))
    with pytest.raises(ValueError, match="num_downs=4"):
        UnetGenerator(num_downs=4).init(jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))


def test_mapping_errors_name_the_key():
    _, net = make_torch_unet(7, ngf=4)
    sd = state_dict_np(net)
    key = "model.model.1.model.3.model.3.model.6.running_var"
    assert key in sd
    missing = dict(sd)
    del missing[key]
    with pytest.raises(KeyError, match=key.replace(".", r"\.")):
        load_torch_unet(missing, 7)
    bad = dict(sd)
    wkey = "model.model.1.model.3.model.5.weight"
    bad[wkey] = bad[wkey][:, :-1]
    with pytest.raises(ValueError, match=wkey.replace(".", r"\.")):
        load_torch_unet(bad, 7)
    # A unet_128 state dict is not a unet_256 one (and vice versa).
    with pytest.raises(KeyError, match=r"model\.model\.1"):
        load_torch_unet(sd, 8)
    with pytest.raises(KeyError, match=r"model\.3\.weight"):
        load_torch_unet(sd, 6)
    with pytest.raises(ValueError, match=r"unexpected key 'model\.extra\.weight'"):
        load_torch_unet({**sd, "model.extra.weight": np.zeros(3)}, 7)
