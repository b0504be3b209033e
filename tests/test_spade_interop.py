"""SPADE's and OASIS's PyTorch state dicts -> our modules: every layer's output the same, in
eval and in training (batch statistics, the power iteration and the statistics and u, v it
leaves behind).

The PyTorch modules (torch_spade.py) have the references' structure and keys; random weights go
through `pix2pixhd_jax.weights.spade` / `.oasis`, both sides run the same input, and forward hooks
on the torch side meet flax's captured intermediates on ours, layer by layer. With OASIS_REF or
SPADE_REF naming a checkout of boschresearch/OASIS or NVlabs/SPADE, the last tests check that
torch_spade.py's modules give the references' own modules' outputs from the same state dict.
"""

import os
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pix2pixhd_jax.errors import InteropError  # noqa: E402
from pix2pixhd_jax.models.oasis_discriminator import OASISDiscriminator  # noqa: E402
from pix2pixhd_jax.models.spade_generator import SPADEGenerator  # noqa: E402
from pix2pixhd_jax.models.spectral_norm import SpectralConv  # noqa: E402
from pix2pixhd_jax.weights import oasis as oasis_weights  # noqa: E402
from pix2pixhd_jax.weights import spade as spade_weights  # noqa: E402

import torch_spade as ref  # noqa: E402

# Relative to the layer's largest value: float32 sums in another order, through up to 13 blocks.
TOL = 2e-5


def close(ours, theirs, what="", tol=TOL):
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    assert ours.shape == theirs.shape, (what, ours.shape, theirs.shape)
    scale = max(1.0, float(np.abs(theirs).max()))
    err = float(np.abs(ours - theirs).max()) / scale
    assert err <= tol, f"{what}: max error {err:.2e} (relative to {scale:.3g})"


def nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def nhwc(t):
    return t.detach().numpy().transpose(0, 2, 3, 1)


def state_dict(module):
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


def one_hot_map(n, h, w, c, seed=0):
    """Label maps of rectangles (neighbouring classes share borders, as in scenes), one-hot."""
    rng = np.random.default_rng(seed)
    ids = np.kron(rng.integers(0, c, size=(n, h // 8, w // 8)), np.ones((1, 8, 8), np.int64))
    return np.eye(c, dtype=np.float32)[ids]


def torch_outputs(net, plan_keys, run):
    """run() with a forward hook on every module named in plan_keys: {key: output (NHWC)}."""
    outputs, handles = {}, []
    modules = dict(net.named_modules())
    for key in plan_keys:
        handles.append(modules[key].register_forward_hook(
            lambda m, i, o, key=key: outputs.__setitem__(key, nhwc(o))))
    try:
        final = run()
    finally:
        for h in handles:
            h.remove()
    return final, outputs


def our_outputs(intermediates, path):
    node = intermediates
    for k in path:
        node = node[k]
    (out,) = node["__call__"]
    return out


def layer_pairs(plan, blocks):
    """(torch key, our path) of every layer in the plan, of every SPADE, and of every block."""
    pairs = [(layer.key, layer.path) for layer in plan]
    spades = {(layer.key[:-len(".mlp_shared.0")], layer.path[:-1]) for layer in plan if layer.path[-1] == "shared"}
    return pairs + sorted(spades) + blocks


def compare_every_layer(net, module, variables, args_torch, args_ours, pairs, train, check_stats):
    """Run both sides in training or eval; compare every paired layer's output and, in training,
    the statistics and spectral-norm vectors each side leaves (check_stats(new_variables))."""
    net.train(train)
    with torch.no_grad():
        theirs, hooked = torch_outputs(net, [k for k, _ in pairs], lambda: net(*args_torch))
    mutable = ["intermediates"] + (["batch_stats"] if train else [])
    ours, state = module.apply(variables, *args_ours, train=train, mutable=mutable, capture_intermediates=True)
    for key, path in pairs:
        if key in hooked:
            close(our_outputs(state["intermediates"], path), hooked[key], f"{key} <-> {'/'.join(path)}")
    close(ours, nhwc(theirs), "output")
    assert len(hooked) == len(pairs)
    if train:
        check_stats(state["batch_stats"])


def check_stats_against(net, plan):
    """Our batch_stats after a training pass against the torch module's buffers."""
    sd = {k: v.detach().numpy() for k, v in net.state_dict().items()}

    def check(stats):
        flat = {}
        for layer in plan:
            node = stats
            try:
                for k in layer.path:
                    node = node[k]
            except KeyError:
                continue
            names = {"u": "weight_u", "v": "weight_v", "mean": "running_mean", "var": "running_var"}
            for ours, theirs in names.items():
                if ours in node:
                    flat[f"{layer.key}.{theirs}"] = node[ours]
        assert flat, "no statistics compared"
        for key, value in flat.items():
            close(value, sd[key], key)
        return flat

    return check


# ----- spectral norm ------------------------------------------------------------------------


def test_spectral_conv_is_torchs_spectral_norm_in_training_eval_and_gradient():
    conv = ref.spectral_norm(torch.nn.Conv2d(5, 7, 3, padding=1))
    ref.randomize(conv, seed=3)
    sd = state_dict(conv)
    variables = {"params": {"kernel": sd["weight_orig"].transpose(2, 3, 1, 0), "bias": sd["bias"]},
                 "batch_stats": {"u": sd["weight_u"], "v": sd["weight_v"]}}
    ours = SpectralConv(7, 3, padding=1)
    x = np.random.default_rng(0).normal(size=(2, 6, 6, 5)).astype(np.float32)

    # Eval: the stored u and v, nothing updated.
    conv.eval()
    close(ours.apply(variables, jnp.asarray(x)), nhwc(conv(nchw(x))), "eval")
    np.testing.assert_array_equal(conv.weight_u.numpy(), sd["weight_u"])

    # Three training passes: each runs one power iteration from the last one's u and v.
    conv.train()
    for step in range(3):
        out, new = ours.apply(variables, jnp.asarray(x), True, mutable=["batch_stats"])
        close(out, nhwc(conv(nchw(x))), f"training pass {step}")
        close(new["batch_stats"]["u"], conv.weight_u.numpy(), f"u after pass {step}")
        close(new["batch_stats"]["v"], conv.weight_v.numpy(), f"v after pass {step}")
        assert not np.allclose(new["batch_stats"]["u"], variables["batch_stats"]["u"])
        variables = {"params": variables["params"], "batch_stats": new["batch_stats"]}

    # The gradient flows through W in sigma, not through u and v.
    conv.zero_grad()
    conv(nchw(x)).square().sum().backward()
    grad = jax.grad(lambda p: jnp.sum(jnp.square(ours.apply({"params": p, "batch_stats": variables["batch_stats"]},
                                                           jnp.asarray(x), True, mutable=["batch_stats"])[0])))(
        variables["params"])
    close(grad["kernel"], conv.weight_orig.grad.numpy().transpose(2, 3, 1, 0), "d kernel", tol=1e-4)
    close(grad["bias"], conv.bias.grad.numpy(), "d bias", tol=1e-4)


def test_spectral_norm_makes_the_largest_singular_value_one_as_the_iteration_converges():
    conv = SpectralConv(6, 3, padding=1)
    x = jnp.ones((1, 4, 4, 4))
    variables = conv.init(jax.random.PRNGKey(0), x)
    for _ in range(30):
        _, new = conv.apply(variables, x, True, mutable=["batch_stats"])
        variables = {"params": variables["params"], "batch_stats": new["batch_stats"]}
    from pix2pixhd_jax.models.spectral_norm import spectral_normalize, torch_weight_matrix

    kernel, _, _ = spectral_normalize(variables["params"]["kernel"], variables["batch_stats"]["u"],
                                      variables["batch_stats"]["v"], update=False)
    assert abs(float(np.linalg.svd(np.asarray(torch_weight_matrix(kernel)), compute_uv=False)[0]) - 1.0) < 1e-4


# ----- the generators -----------------------------------------------------------------------


@pytest.mark.parametrize("num_up, norm, train", [("normal", "instance", True), ("most", "batch", False)])
def test_spade_generator_every_layer(num_up, norm, train):
    label_nc, ngf = 6, 4
    size = {"normal": 64, "more": 64, "most": 128}[num_up]
    seg = one_hot_map(2, size, 2 * size, label_nc)
    net = ref.calibrate(ref.randomize(ref.SPADEGenerator(label_nc, ngf, num_up, norm=norm), seed=1), nchw(seg))
    g = SPADEGenerator(ngf=ngf, arch="spade", num_upsampling_layers=num_up, z_dim=0, param_free_norm=norm)
    plan = spade_weights.generator_plan(g)
    variables = spade_weights.spade_generator_variables(state_dict(net), g, label_nc)
    blocks = [(name, (f"block_{i}",)) for i, (name, _, _) in enumerate(
        spade_weights.generator_blocks("spade", ngf, num_upsampling_layers=num_up))]
    pairs = layer_pairs(plan, blocks)
    if norm == "instance":  # a function here, not a module with an output of its own
        pairs = [(k, p) for k, p in pairs if p[-1] != "param_free_norm"]
    compare_every_layer(net, g, variables, [nchw(seg)], [jnp.asarray(seg)], pairs, train,
                        check_stats_against(net, plan))


@pytest.mark.parametrize("num_res_blocks, z_dim, spectral, train", [(6, 8, True, False), (6, 8, True, True),
                                                                    (4, 0, False, True)])
def test_oasis_generator_every_layer(num_res_blocks, z_dim, spectral, train):
    semantic_nc, ngf = 5, 4
    size = 2 ** (num_res_blocks - 1)
    seg = one_hot_map(2, 2 * size, 4 * size, semantic_nc, seed=1)
    z = np.random.default_rng(3).normal(size=(2, 1, 1, z_dim)).astype(np.float32)
    z = np.broadcast_to(z, seg.shape[:3] + (z_dim,))
    args_torch = [nchw(seg)] + ([nchw(z)] if z_dim else [])
    net = ref.calibrate(ref.randomize(ref.OASISGenerator(semantic_nc, ngf, num_res_blocks, z_dim, spectral), seed=2),
                        *args_torch)
    g = SPADEGenerator(ngf=ngf, arch="oasis", num_res_blocks=num_res_blocks, z_dim=z_dim, spectral_norm=spectral)
    plan = spade_weights.generator_plan(g)
    variables = oasis_weights.oasis_generator_variables(state_dict(net), g, semantic_nc)
    blocks = [(f"body.{i}", (f"block_{i}",)) for i in range(num_res_blocks)]
    args_ours = [jnp.asarray(seg)] + ([jnp.asarray(z)] if z_dim else [])
    compare_every_layer(net, g, variables, args_torch, args_ours, layer_pairs(plan, blocks), train,
                        check_stats_against(net, plan))


# ----- the discriminator --------------------------------------------------------------------


@pytest.mark.parametrize("num_res_blocks, spectral, train", [(6, True, False), (6, True, True), (3, False, False)])
def test_oasis_discriminator_every_layer(num_res_blocks, spectral, train):
    semantic_nc, ndf = 5, 4
    net = ref.randomize(ref.OASISDiscriminator(semantic_nc, ndf, num_res_blocks, spectral), seed=4)
    d = OASISDiscriminator(semantic_nc, ndf, num_res_blocks, spectral)
    plan = oasis_weights.discriminator_plan(num_res_blocks)
    variables = oasis_weights.oasis_discriminator_variables(state_dict(net), d)
    x = np.random.default_rng(5).uniform(-1, 1, size=(2, 64, 128, 3)).astype(np.float32)
    blocks = [(f"body_down.{i}", (f"down_{i}",)) for i in range(num_res_blocks)]
    blocks += [(f"body_up.{i}", (f"up_{i}",)) for i in range(num_res_blocks)]
    pairs = [(k, p) for k, p in layer_pairs(plan, blocks) if k in dict(net.named_modules())]
    if spectral:
        compare_every_layer(net, d, variables, [nchw(x)], [jnp.asarray(x)], pairs, train, check_stats_against(net, plan))
    else:
        compare_every_layer(net, d, variables, [nchw(x)], [jnp.asarray(x)], pairs, train, None)


def test_oasis_discriminator_shapes_and_parameter_count_at_the_papers_size():
    """ndf 64, six blocks each way: 128..512 channels, N + 1 logits at the input's resolution."""
    d = OASISDiscriminator(35)
    shapes = jax.eval_shape(lambda: d.init_with_output(jax.random.PRNGKey(0), jnp.zeros((1, 256, 512, 3))))
    out, variables = shapes
    assert out.shape == (1, 256, 512, 36)
    net = ref.OASISDiscriminator(35)
    theirs = sum(p.numel() for p in net.parameters())
    assert sum(x.size for x in jax.tree_util.tree_leaves(variables["params"])) == theirs
    assert variables["params"]["down_5"]["conv_1"]["kernel"].shape == (3, 3, 512, 512)
    assert variables["params"]["up_5"]["conv_1"]["kernel"].shape == (3, 3, 64, 64)


def test_oasis_generator_parameter_count_at_the_papers_size():
    g = SPADEGenerator(ngf=64, arch="oasis", num_res_blocks=6, z_dim=64)
    shapes = jax.eval_shape(lambda: g.init(jax.random.PRNGKey(0), jnp.zeros((1, 256, 512, 35)),
                                           jnp.zeros((1, 256, 512, 64))))
    theirs = sum(p.numel() for p in ref.OASISGenerator(35, 64, 6, 64).parameters())
    assert sum(x.size for x in jax.tree_util.tree_leaves(shapes["params"])) == theirs


# ----- the converters' errors ---------------------------------------------------------------


def test_a_checkpoint_that_does_not_fit_names_the_key_and_both_shapes():
    net = ref.OASISGenerator(5, 4, 4, 8)
    sd = state_dict(net)
    g = SPADEGenerator(ngf=4, arch="oasis", num_res_blocks=4, z_dim=8)
    with pytest.raises(InteropError, match=r"'fc.weight' has shape \(64, 13, 3, 3\).*expects \(64, 14, 3, 3\)"):
        oasis_weights.oasis_generator_variables(sd, g, 6)
    short = {k: v for k, v in sd.items() if k != "body.1.conv_0.weight_u"}
    with pytest.raises(InteropError, match=r"'body.1.conv_0.weight_u' is missing.*expected shape \(16,\)"):
        oasis_weights.oasis_generator_variables(short, g, 5)
    with pytest.raises(InteropError, match=r"unexpected key 'body.0.norm_0.first_norm.running_mean'"):
        oasis_weights.oasis_generator_variables(sd, g.clone(param_free_norm="instance"), 5)
    with pytest.raises(InteropError, match=r"'body.0.conv_0.weight' is missing"):
        oasis_weights.oasis_generator_variables(sd, g.clone(spectral_norm=False), 5)
    with pytest.raises(InteropError, match=r"needs the generator arch 'oasis'"):
        oasis_weights.oasis_generator_variables(sd, g.clone(arch="spade"), 5)
    d_sd = state_dict(ref.OASISDiscriminator(5, 4, 6))
    with pytest.raises(InteropError, match=r"'layer_up_last.weight' has shape \(6, 4, 1, 1\).*expects \(8, 4, 1, 1\)"):
        oasis_weights.oasis_discriminator_variables(d_sd, OASISDiscriminator(7, 4, 6))


def test_load_torch_state_dict_reads_an_oasis_checkpoint_with_its_buffers(tmp_path):
    net = ref.randomize(ref.OASISGenerator(5, 4, 4, 8), seed=6)
    torch.save(net.state_dict(), tmp_path / "best_EMA.pth")
    sd = spade_weights.load_torch_state_dict(str(tmp_path / "best_EMA.pth"))
    assert "body.0.norm_0.first_norm.num_batches_tracked" in sd
    variables = oasis_weights.oasis_generator_variables(sd, SPADEGenerator(ngf=4, arch="oasis", num_res_blocks=4,
                                                                           z_dim=8), 5)
    np.testing.assert_array_equal(variables["batch_stats"]["block_3"]["conv_1"]["v"],
                                  net.body[3].conv_1.weight_v.numpy())


# ----- the references' own code (a checkout named by OASIS_REF or SPADE_REF) ------------------


def _import_from(root, *modules):
    """The named modules of a reference checkout, imported with its root first on the path.
    Stubbed where missing: torchvision and dill (only their VGG loss and option files use them)
    and NVlabs/SPADE's sync_batchnorm submodule, which a snapshot of the repository lacks (on one
    device it is BatchNorm2d)."""
    saved = {k: v for k, v in sys.modules.items() if k == "models" or k.startswith(("models.", "util"))}
    for k in saved:
        del sys.modules[k]
    for name in ("torchvision", "dill"):
        sys.modules.setdefault(name, types.ModuleType(name))
    if os.path.isdir(os.path.join(root, "models", "networks")) and not os.path.isfile(
            os.path.join(root, "models", "networks", "sync_batchnorm", "__init__.py")):
        stub = types.ModuleType("models.networks.sync_batchnorm")
        stub.SynchronizedBatchNorm2d = torch.nn.BatchNorm2d
        sys.modules[stub.__name__] = stub
    sys.path.insert(0, root)
    try:
        import importlib

        return [importlib.import_module(m) for m in modules]
    finally:
        sys.path.remove(root)
        for k in [k for k in sys.modules if k == "models" or k.startswith(("models.", "util"))]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.mark.skipif(not os.environ.get("OASIS_REF"), reason="OASIS_REF names no checkout of boschresearch/OASIS")
@pytest.mark.parametrize("train", [False, True])
def test_torch_modules_are_oasis_own_code(train):
    generator, discriminator = _import_from(os.environ["OASIS_REF"], "models.generator", "models.discriminator")
    opt = types.SimpleNamespace(no_spectral_norm=False, channels_G=4, crop_size=128, num_res_blocks=6,
                                aspect_ratio=2.0, semantic_nc=5, z_dim=8, no_3dnoise=False, param_free_norm="syncbatch",
                                spade_ks=3, gpu_ids="-1")
    theirs_g, ours_g = generator.OASIS_Generator(opt), ref.randomize(ref.OASISGenerator(5, 4, 6, 8), seed=7)
    theirs_g.load_state_dict(ours_g.state_dict())
    seg = nchw(one_hot_map(2, 64, 128, 5))
    torch.manual_seed(11)  # OASIS draws z inside: draw the same z for ours
    z = torch.randn(2, 8, 1, 1).expand(2, 8, 64, 128)
    theirs_g.train(train), ours_g.train(train)
    torch.manual_seed(11)
    with torch.no_grad():
        close(nhwc(ours_g(seg, z)), nhwc(theirs_g(seg)), "OASIS_Generator")
    for k, v in theirs_g.state_dict().items():
        if not k.endswith("num_batches_tracked"):  # their SynchronizedBatchNorm2d does not count (nor do we)
            close(ours_g.state_dict()[k].numpy(), v.numpy(), k)

    theirs_d, ours_d = discriminator.OASIS_Discriminator(opt), ref.randomize(ref.OASISDiscriminator(5, 64, 6), seed=8)
    theirs_d.load_state_dict(ours_d.state_dict())
    theirs_d.train(train), ours_d.train(train)
    x = torch.from_numpy(np.random.default_rng(9).uniform(-1, 1, size=(2, 3, 64, 128)).astype(np.float32))
    with torch.no_grad():
        close(nhwc(ours_d(x)), nhwc(theirs_d(x)), "OASIS_Discriminator")
    for k, v in theirs_d.state_dict().items():
        close(ours_d.state_dict()[k].numpy(), v.numpy(), k)


@pytest.mark.skipif(not os.environ.get("SPADE_REF"), reason="SPADE_REF names no checkout of NVlabs/SPADE")
@pytest.mark.parametrize("num_up, norm_G", [("normal", "spectralspadebatch3x3"), ("more", "spectralspadeinstance3x3"),
                                            ("most", "spadebatch3x3")])
def test_torch_modules_are_spades_own_code(num_up, norm_G):
    (generator,) = _import_from(os.environ["SPADE_REF"], "models.networks.generator")
    size = {"normal": 64, "more": 128, "most": 256}[num_up]
    opt = types.SimpleNamespace(ngf=4, use_vae=False, semantic_nc=6, num_upsampling_layers=num_up, crop_size=2 * size,
                                aspect_ratio=2.0, norm_G=norm_G)
    theirs = generator.SPADEGenerator(opt)
    norm = "instance" if "instance" in norm_G else "batch"
    ours = ref.randomize(ref.SPADEGenerator(6, 4, num_up, spectral="spectral" in norm_G, norm=norm), seed=10)
    theirs.load_state_dict(ours.state_dict())
    seg = nchw(one_hot_map(2, size, 2 * size, 6))
    for train in (True, False):
        theirs.train(train), ours.train(train)
        with torch.no_grad():
            close(nhwc(ours(seg)), nhwc(theirs(seg)), f"SPADEGenerator train={train}")
        for k, v in theirs.state_dict().items():
            close(ours.state_dict()[k].numpy(), v.numpy(), k)


def test_import_torch_cli_imports_an_oasis_model_that_synthesizes_the_references_pictures(tmp_path, capsys):
    """`import-torch` with an OASIS config: the moving-average G (*_EMA.pth) and D (*_D.pth) into a
    workdir; `Synthesizer` then paints what the PyTorch module paints for the same noise (to a level
    of 8 bits), and D segments as its module does."""
    from conftest import ROOT
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.cli import main
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    label_nc, ngf, blocks, z_dim, hidden = 6, 4, 4, 8, 8
    ids = np.kron(np.random.default_rng(7).integers(0, label_nc, size=(4, 8)), np.ones((8, 8), np.int64))
    seg = np.eye(label_nc, dtype=np.float32)[ids][None]
    z = np.random.default_rng(8).normal(size=z_dim).astype(np.float32)
    z_map = np.broadcast_to(z, seg.shape[:3] + (z_dim,))
    g = ref.calibrate(ref.randomize(ref.OASISGenerator(label_nc, ngf, blocks, z_dim, hidden=hidden), seed=2),
                      nchw(seg), nchw(z_map)).eval()
    d = ref.randomize(ref.OASISDiscriminator(label_nc, ngf, blocks), seed=4).eval()
    torch.save(g.state_dict(), tmp_path / "best_EMA.pth")
    torch.save(d.state_dict(), tmp_path / "best_D.pth")
    overrides = [f"--config.data.label_nc={label_nc}", f"--config.model.ngf={ngf}", f"--config.model.ndf={ngf}",
                 f"--config.model.num_res_blocks={blocks}", f"--config.model.z_dim={z_dim}",
                 f"--config.model.spade_hidden={hidden}"]
    workdir = tmp_path / "work"
    assert main(["import-torch", "--config", str(ROOT / "configs" / "oasis_synthetic.py"), *overrides,
                 "--netG", str(tmp_path / "best_EMA.pth"), "--netD", str(tmp_path / "best_D.pth"),
                 "--workdir", str(workdir)]) == 0
    assert "checkpoint written to" in capsys.readouterr().out

    with torch.no_grad():
        theirs = nhwc(g(nchw(seg), nchw(z_map)))[0]
    ours = Synthesizer.from_workdir(str(workdir)).synthesize(ids, noise=z)
    assert ours.shape == theirs.shape and ours.dtype == np.uint8
    theirs_levels = np.clip(np.round((theirs + 1) * 127.5), 0, 255)
    assert np.abs(ours.astype(float) - theirs_levels).max() <= 1

    x = np.random.default_rng(5).uniform(-1, 1, size=(1, 32, 64, 3)).astype(np.float32)
    restored = checkpoint.load_models(str(workdir))
    out = OASISDiscriminator(label_nc, ngf, blocks).apply(restored["discriminator"], jnp.asarray(x), train=False)
    with torch.no_grad():
        close(out, nhwc(d(nchw(x))), "D")
