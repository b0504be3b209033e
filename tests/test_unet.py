"""pix2pix's U-Net generator against a PyTorch copy of the reference UnetGenerator."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pix2pixhd_jax.models.layers import count_params
from pix2pixhd_jax.models.unet_generator import UnetGenerator
from pix2pixhd_jax.weights.pix2pix import load_torch_unet


@functools.lru_cache(maxsize=None)
def jitted(model, train):
    """model.apply under jit, cached per (model, train) so tests share compiles (one compile is
    several times faster than op-by-op dispatch on CPU). Call it as f(variables, x, dropout_key);
    a key of None passes no rngs. train=True returns (output, updated batch_stats)."""

    def f(v, x, key):
        rngs = {} if key is None else {"dropout": key}
        if not train:
            return model.apply(v, x, train=False, rngs=rngs)
        y, upd = model.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"])
        return y, upd["batch_stats"]

    return jax.jit(f)


KEY = jax.random.PRNGKey(0)


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


@pytest.fixture(scope="module")
def unet128():
    """A seeded torch unet_128 (ngf 8, dropout) and its mapped flax variables, shared by several tests
    (built from the state dict rather than model.init, whose random init is slow to compile on CPU)."""
    torch, net = make_torch_unet(7, ngf=8, use_dropout=True, seed=3)
    return torch, net, load_torch_unet(state_dict_np(net), 7)


@pytest.mark.parametrize("num_downs,size", [(7, 128), (8, 256)], ids=["unet_128", "unet_256"])
def test_matches_torch_eval(num_downs, size):
    torch, net = make_torch_unet(num_downs, ngf=8, use_dropout=True)
    net.eval()
    variables = load_torch_unet(state_dict_np(net), num_downs)
    x = np.random.default_rng(1).uniform(-1, 1, (2, size, size, 3)).astype(np.float32)
    want = torch_forward(torch, net, x)
    got = jitted(UnetGenerator(num_downs=num_downs, ngf=8), False)(variables, jnp.asarray(x), KEY)
    assert got.shape == want.shape == (2, size, size, 3)
    assert np.abs(want).max() > 0.05  # a non-trivial output, not all squashed to 0
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)


def test_matches_torch_train_batch_stats(unet128):
    """train=True uses batch statistics (compared with torch in train mode, dropout off) and
    updates the running means as PyTorch does (momentum 0.1)."""
    torch, TorchUnet = torch_unet_classes()
    _, ref, variables = unet128
    net = TorchUnet(3, 3, 7, ngf=8, norm_layer=torch.nn.BatchNorm2d, use_dropout=False)
    net.load_state_dict(ref.state_dict())  # dropout has no parameters: same weights and stats
    net.train()
    x = np.random.default_rng(2).uniform(-1, 1, (2, 128, 128, 3)).astype(np.float32)
    want = torch_forward(torch, net, x)
    model = UnetGenerator(num_downs=7, ngf=8, use_dropout=False)
    got, updates = jitted(model, True)(variables, jnp.asarray(x), KEY)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4, rtol=0)
    # Batch statistics really differ from the running ones here: eval mode gives another output.
    evald = jitted(UnetGenerator(num_downs=7, ngf=8), False)(variables, jnp.asarray(x), KEY)
    assert np.abs(np.asarray(evald) - want).max() > 1e-2
    # Updated running means and variances equal torch's (the variance averaged unbiased, as torch does).
    new = load_torch_unet(state_dict_np(net), 7)["batch_stats"]
    assert set(new) == set(updates) and len(new) == 11
    for name, stats in new.items():
        for stat in ("mean", "var"):
            np.testing.assert_allclose(
                np.asarray(updates[name]["bn"][stat]), np.asarray(stats["bn"][stat]),
                atol=1e-5, rtol=1e-5, err_msg=f"{name} {stat}",
            )


def test_matches_torch_instance_norm():
    """norm='instance': every conv has a bias, no BN parameters or statistics."""
    torch, net = make_torch_unet(7, ngf=4, use_dropout=False, norm="instance", seed=5)
    net.eval()
    variables = load_torch_unet(state_dict_np(net), 7, norm="instance")
    assert variables["batch_stats"] == {}
    x = np.random.default_rng(3).uniform(-1, 1, (1, 128, 256, 3)).astype(np.float32)  # non-square
    got = jitted(UnetGenerator(num_downs=7, ngf=4, norm="instance"), False)(variables, jnp.asarray(x), None)
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
        # pix2pix prints "54.414 M" for unet_256 at ngf 64 (no bias on the outermost down conv).
        assert want == 54_413_955


def test_output_shape_and_range(unet128):
    _, _, variables = unet128
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 128, 128, 3)) * 3.0  # well outside [-1, 1]
    y = jitted(UnetGenerator(num_downs=7, ngf=8), False)(variables, x, KEY)
    assert y.shape == (2, 128, 128, 3) and y.dtype == jnp.float32
    assert float(jnp.min(y)) >= -1.0 and float(jnp.max(y)) <= 1.0
    assert float(jnp.max(jnp.abs(y))) > 0.5


def test_init_like_pix2pix():
    """init_weights('normal', 0.02): conv weights N(0, 0.02), conv biases 0, BN scale N(1, 0.02)."""
    # The partitionable threefry makes every random init op take seconds to compile on CPU;
    # the values are only checked statistically here, so the classic one is as good.
    def init_both(key):
        x = jnp.zeros((1, 32, 32, 3))
        return (
            UnetGenerator(num_downs=5, ngf=8).init(key, x)["params"],
            UnetGenerator(num_downs=5, ngf=8, norm="instance").init(key, x)["params"],
        )

    with jax.threefry_partitionable(False):
        p, pi = jax.jit(init_both)(jax.random.PRNGKey(0))
    # With batch norm only the outermost up conv has a bias, and it starts at zero.
    assert [k for k in p if "bias" in p[k].get("conv", {})] == ["up_0"]
    assert not np.any(np.asarray(p["up_0"]["conv"]["bias"]))
    k = np.asarray(p["up_2"]["conv"]["kernel"])  # (4, 4, 16, 64)
    assert abs(k.std() - 0.02) < 0.002 and abs(k.mean()) < 0.002
    scale = np.concatenate([np.asarray(v["bn"]["scale"]) for k, v in p.items() if "norm" in k])
    assert abs(scale.mean() - 1.0) < 0.01 and 0.01 < scale.std() < 0.03
    assert not any(np.any(np.asarray(v["bn"]["bias"])) for k, v in p.items() if "norm" in k)
    # Instance norm: every conv gets a bias, all zero; no norm parameters.
    assert sorted(pi) == sorted([f"down_{i}" for i in range(5)] + [f"up_{i}" for i in range(5)])
    assert all(not np.any(np.asarray(v["conv"]["bias"])) for v in pi.values())


def test_dropout_rngs_and_determinism(unet128):
    _, _, variables = unet128
    model = UnetGenerator(num_downs=7, ngf=8)  # levels 4 and 5 carry dropout
    x = jax.random.normal(jax.random.PRNGKey(1), (2, 128, 128, 3))

    def train_out(seed, m=model):
        return np.asarray(jitted(m, True)(variables, x, jax.random.PRNGKey(seed))[0])

    a, b, a2 = train_out(10), train_out(11), train_out(10)
    assert np.abs(a - b).max() > 1e-3
    np.testing.assert_array_equal(a, a2)
    with pytest.raises(Exception, match="dropout"):  # train mode needs a 'dropout' rng
        jitted(model, True)(variables, x, None)
    e1 = jitted(model, False)(variables, x, jax.random.PRNGKey(10))  # the rng is ignored in eval mode
    e2 = jitted(model, False)(variables, x, jax.random.PRNGKey(11))
    np.testing.assert_array_equal(np.asarray(e1), np.asarray(e2))
    # Without dropout, train mode ignores the rng: dropout is the only source of the difference above.
    nodrop = UnetGenerator(num_downs=7, ngf=8, use_dropout=False)
    np.testing.assert_array_equal(train_out(10, nodrop), train_out(11, nodrop))


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
