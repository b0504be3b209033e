"""Reference state dicts -> our modules: the same weights give the same outputs.

The PyTorch modules in torch_reference.py have the reference's structure and keys;
random weights go through `pix2pixhd_jax.weights.reference` and both sides run the same input.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import load_test_config  # noqa: E402
from pix2pixhd_jax import models  # noqa: E402
from pix2pixhd_jax.errors import InteropError  # noqa: E402
from pix2pixhd_jax.weights import reference as interop  # noqa: E402

import torch_reference as ref  # noqa: E402


def config(*overrides):
    # A small model of every kind keeps the test quick; the layer structure is the reference's.
    base = ["model.ngf=8", "model.ndf=8", "model.nef=4", "model.n_downsample_global=2", "model.n_blocks_global=2",
            "model.n_blocks_local=1", "model.n_downsample_E=2", "data.label_nc=5"]
    return load_test_config(*base, *overrides)


def close(ours, theirs, tol=1e-4):
    ours, theirs = np.asarray(ours), np.asarray(theirs)
    assert ours.shape == theirs.shape
    scale = max(1.0, float(np.abs(theirs).max()))
    np.testing.assert_allclose(ours, theirs, atol=tol * scale, rtol=0)


def inputs(h, w, c, seed=0):
    return np.random.default_rng(seed).normal(size=(2, h, w, c)).astype(np.float32)


@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_global_generator_round_trip(norm):
    cfg = config(f"model.norm={norm}")
    c = models.generator_input_nc(cfg)
    net = ref.randomize(ref.GlobalGenerator(c, 3, 8, 2, 2, norm)).eval()
    variables = interop.generator_variables(ref.state_dict_numpy(net), cfg)
    x = inputs(32, 64, c)
    g = models.build_generator(cfg)
    if norm == "instance":
        close(g.apply(variables, jnp.asarray(x)), ref.to_nhwc(net(ref.to_nchw(x))))
        return
    # With the running statistics it is torch's eval().
    running = g.clone(bn_inference="running")
    close(running.apply(variables, jnp.asarray(x)), ref.to_nhwc(net(ref.to_nchw(x))))
    # Batch norm: the reference's test.py never calls eval(), so its pictures come from each image's
    # own statistics (one image per batch); so do this project's, by default.
    net.train()
    with torch.no_grad():
        want = np.concatenate([ref.to_nhwc(net(ref.to_nchw(x[i:i + 1]))) for i in range(len(x))])
    close(g.apply(variables, jnp.asarray(x)), want)


@pytest.mark.parametrize("n_local", [1, 2])
def test_local_enhancer_round_trip(n_local):
    cfg = config("model.netG=local", f"model.n_local_enhancers={n_local}")
    c = models.generator_input_nc(cfg)
    net = ref.randomize(ref.LocalEnhancer(c, 3, 8, 2, 2, n_local, 1)).eval()
    sd = ref.state_dict_numpy(net)
    assert any(k.startswith(f"model{n_local}_2.") for k in sd)
    variables = interop.generator_variables(sd, cfg)
    x = inputs(64, 64, c)
    ours = models.build_generator(cfg).apply(variables, jnp.asarray(x))
    close(ours, ref.to_nhwc(net(ref.to_nchw(x))))


@pytest.mark.parametrize("intermediate", [True, False])
def test_multiscale_discriminator_round_trip_every_feature_of_every_scale(intermediate):
    cfg = config("model.num_D=3")
    c = models.discriminator_input_nc(cfg)
    net = ref.randomize(ref.MultiscaleDiscriminator(c, 8, 3, 3, intermediate=intermediate)).eval()
    variables = interop.discriminator_variables(ref.state_dict_numpy(net), cfg)
    x = inputs(64, 96, c)
    ours = models.build_discriminator(cfg).apply(variables, jnp.asarray(x))
    theirs = net(ref.to_nchw(x))
    assert len(ours) == len(theirs) == 3
    for our_scale, their_scale in zip(ours, theirs):
        if intermediate:
            assert len(our_scale) == len(their_scale) == 5
            for a, b in zip(our_scale, their_scale):
                close(a, ref.to_nhwc(b))
        else:
            close(our_scale[-1], ref.to_nhwc(their_scale[0]))


def test_encoder_round_trip_with_instance_pooling():
    cfg = config("model.instance_feat=True")
    net = ref.randomize(ref.Encoder(3, 3, 4, 2)).eval()
    variables = interop.encoder_variables(ref.state_dict_numpy(net), cfg)
    x = inputs(32, 32, 3)
    inst = np.random.default_rng(1).choice([7, 26000, 26001, 24003], size=(2, 32, 32))
    ours = models.build_encoder(cfg).apply(variables, jnp.asarray(x), jnp.asarray(inst))
    theirs = net(ref.to_nchw(x), torch.from_numpy(inst[:, None]))
    close(ours, ref.to_nhwc(theirs))


def test_reference_parameter_counts_match_ours():
    cfg = config()
    c = models.generator_input_nc(cfg)
    for net, ours in ((ref.GlobalGenerator(c, 3, 8, 2, 2), models.build_generator(cfg)),):
        theirs = sum(p.numel() for p in net.parameters())
        shapes = jax.eval_shape(lambda: ours.init(jax.random.PRNGKey(0), jnp.zeros((1, 32, 32, c))))
        assert sum(x.size for x in jax.tree_util.tree_leaves(shapes)) == theirs


def test_module_prefix_and_old_instance_norm_buffers_are_accepted():
    cfg = config()
    c = models.generator_input_nc(cfg)
    net = ref.randomize(ref.GlobalGenerator(c, 3, 8, 2, 2)).eval()
    sd = {f"module.{k}": v for k, v in ref.state_dict_numpy(net).items()}
    # PyTorch <= 0.3 wrote running stats for InstanceNorm2d; NVIDIA's checkpoints carry them.
    sd["module.model.2.running_mean"] = np.zeros(8, np.float32)
    sd["module.model.2.running_var"] = np.ones(8, np.float32)
    variables = interop.generator_variables(sd, cfg)
    x = inputs(32, 32, c)
    close(models.build_generator(cfg).apply(variables, jnp.asarray(x)), ref.to_nhwc(net(ref.to_nchw(x))))


def test_mismatch_names_the_first_key_and_both_shapes():
    cfg = config()
    net = ref.GlobalGenerator(models.generator_input_nc(cfg) + 1, 3, 8, 2, 2)
    with pytest.raises(InteropError, match=r"'model.1.weight' has shape \(8, 7, 7, 7\).*expects \(8, 6, 7, 7\)"):
        interop.generator_variables(ref.state_dict_numpy(net), cfg)


def test_missing_and_unexpected_keys():
    cfg = config()
    sd = ref.state_dict_numpy(ref.GlobalGenerator(models.generator_input_nc(cfg), 3, 8, 2, 2))
    short = dict(sd)
    del short["model.10.conv_block.5.bias"]
    with pytest.raises(InteropError, match=r"'model.10.conv_block.5.bias' is missing.*expected shape \(32,\)"):
        interop.generator_variables(short, cfg)
    extra = dict(sd, **{"model.99.weight": np.zeros((3, 3))})
    with pytest.raises(InteropError, match=r"unexpected key 'model.99.weight'"):
        interop.generator_variables(extra, cfg)
    # A global checkpoint is not a local one (whose global part has 2x the filters).
    with pytest.raises(InteropError, match=r"'model.1.weight' has shape \(8, 6, 7, 7\).*expects \(16, 6, 7, 7\)"):
        interop.generator_variables(sd, config("model.netG=local"))


def test_load_torch_state_dict_reads_pth_files(tmp_path):
    net = ref.GlobalGenerator(4, 3, 8, 1, 1)
    path = tmp_path / "latest_net_G.pth"
    torch.save(net.state_dict(), path)
    sd = interop.load_torch_state_dict(str(path))
    np.testing.assert_array_equal(sd["model.1.weight"], net.state_dict()["model.1.weight"].numpy())
    with pytest.raises(InteropError, match="file not found"):
        interop.load_torch_state_dict(str(tmp_path / "nope.pth"))
    (tmp_path / "junk.pth").write_bytes(b"junk")
    with pytest.raises(InteropError, match="cannot read it as a PyTorch state dict"):
        interop.load_torch_state_dict(str(tmp_path / "junk.pth"))


def test_import_torch_cli_writes_a_checkpoint_that_gives_the_same_pictures(tmp_path, capsys):
    from conftest import ROOT
    from pix2pixhd_jax import checkpoint
    from pix2pixhd_jax.cli import main

    cfg = config("model.instance_feat=True")
    overrides = ["--config.model.ngf=8", "--config.model.ndf=8", "--config.model.nef=4",
                 "--config.model.n_downsample_global=2", "--config.model.n_blocks_global=2",
                 "--config.model.n_downsample_E=2", "--config.data.label_nc=5", "--config.model.instance_feat=true"]
    g = ref.randomize(ref.GlobalGenerator(models.generator_input_nc(cfg), 3, 8, 2, 2), seed=1).eval()
    d = ref.randomize(ref.MultiscaleDiscriminator(models.discriminator_input_nc(cfg), 8, 3, 2), seed=2).eval()
    e = ref.randomize(ref.Encoder(3, 3, 4, 2), seed=3).eval()
    for name, net in (("G", g), ("D", d), ("E", e)):
        torch.save(net.state_dict(), tmp_path / f"latest_net_{name}.pth")
    workdir = tmp_path / "work"
    assert main(["import-torch", "--config", str(ROOT / "configs" / "synthetic_demo.py"), *overrides,
                 "--netG", str(tmp_path / "latest_net_G.pth"), "--netD", str(tmp_path / "latest_net_D.pth"),
                 "--netE", str(tmp_path / "latest_net_E.pth"), "--workdir", str(workdir)]) == 0
    assert "checkpoint written to" in capsys.readouterr().out
    restored = checkpoint.load_models(str(workdir))
    saved_cfg = checkpoint.read_config(str(workdir))
    assert saved_cfg.model.ngf == 8 and saved_cfg.model.instance_feat
    x = inputs(32, 32, models.generator_input_nc(cfg), seed=4)
    close(models.build_generator(saved_cfg).apply(restored["generator"], jnp.asarray(x)), ref.to_nhwc(g(ref.to_nchw(x))))
    xd = inputs(32, 32, models.discriminator_input_nc(cfg), seed=5)
    ours = models.build_discriminator(saved_cfg).apply(restored["discriminator"], jnp.asarray(xd))
    for our_scale, their_scale in zip(ours, d(ref.to_nchw(xd))):
        for a, b in zip(our_scale, their_scale):
            close(a, ref.to_nhwc(b))
    xe = inputs(32, 32, 3, seed=6)
    inst = np.random.default_rng(2).choice([3, 26000, 26001], size=(2, 32, 32))
    close(models.build_encoder(saved_cfg).apply(restored["encoder"], jnp.asarray(xe), jnp.asarray(inst)),
          ref.to_nhwc(e(ref.to_nchw(xe), torch.from_numpy(inst[:, None]))))


def test_import_torch_cli_reports_a_mismatch_and_exits_2(tmp_path, capsys):
    from conftest import ROOT
    from pix2pixhd_jax.cli import main

    torch.save(ref.GlobalGenerator(4, 3, 8, 1, 1).state_dict(), tmp_path / "g.pth")
    code = main(["import-torch", "--config", str(ROOT / "configs" / "default.py"), "--netG", str(tmp_path / "g.pth"),
                 "--workdir", str(tmp_path / "w")])
    assert code == 2
    assert "netG: key 'model.1.weight' has shape (8, 4, 7, 7) but this config's model expects (64, 36, 7, 7)" in (
        capsys.readouterr().err)


def test_pix2pix_patchgan_round_trip_and_70x70_receptive_field():
    cfg = load_test_config("model.netD=patch", "model.norm=batch", "model.ndf=8", "data.use_instance=False",
                           "data.label_nc=5")
    c = models.discriminator_input_nc(cfg)
    net = ref.randomize(ref.PatchGAN(c, 8, 3), seed=7).eval()
    theirs_count = sum(p.numel() for p in net.parameters())
    variables = interop.discriminator_variables(ref.state_dict_numpy(net), cfg)
    assert sum(x.size for x in jax.tree_util.tree_leaves(variables["params"])) == theirs_count
    x = inputs(64, 64, c, seed=8)
    ours = models.build_discriminator(cfg).apply(variables, jnp.asarray(x))
    assert len(ours) == 1 and len(ours[0]) == 5
    close(ours[0][-1], ref.to_nhwc(net(ref.to_nchw(x))))
    # 256x256 in -> 30x30 patches, each seeing 70x70 pixels (pix2pix's PatchGAN).
    out = jax.eval_shape(lambda: models.build_discriminator(cfg).init_with_output(
        jax.random.PRNGKey(0), jnp.zeros((1, 256, 256, c))))[0]
    assert out[0][-1].shape == (1, 30, 30, 1)
