"""pix2pixHD's training: `pix2pixhd-jax train --config CONFIG --workdir DIR`.

`train` builds the input pipeline, the networks and the pure step (`training.step`) and runs
them in its loop, top to bottom, with the runtime's shared parts (`runtime.loop`: resume at the
exact step and data position, sharded jit, metrics read one step late, periodic asynchronous
Orbax checkpoints, the non-finite stop, the save on SIGTERM). A fresh run starts from
`train.init_from`, from imported weights in the workdir, or from scratch. It writes TensorBoard scalars and sample grids (label | boundaries |
generated | real) and, at the end, synthesizes the test split into <workdir>/test_results.
"""

import logging
import os

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax import checkpoint
from pix2pixhd_jax.data import visualize
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.data.transforms import inference_config
from pix2pixhd_jax.errors import DataError, UserError
from pix2pixhd_jax.evaluation.evaluate import TrainingEvaluator
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.generator import G1
from pix2pixhd_jax.models.pix2pixhd import Networks, compute_dtype, photo_bits, remat_mode, size_divisor
from pix2pixhd_jax.runtime import distributed, loop, sharding
from pix2pixhd_jax.training import old_checkpoints, schedule
from pix2pixhd_jax.training.oasis_step import (init_oasis_train_state, make_ema_statistics_pass, make_oasis_train_step,
                                               start_ema_from_generator)
from pix2pixhd_jax.training.step import init_train_state, make_train_step
from pix2pixhd_jax.weights.vgg19 import vgg_from_config

# Config fields that change the networks' shapes: a checkpoint made with other values cannot be resumed.
_SHAPE_FIELDS = {
    "data": ("label_nc", "input_nc", "output_nc", "use_instance"),
    "model": ("netG", "ngf", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local",
              "norm", "ndf", "n_layers_D", "num_D", "netD", "instance_feat", "label_feat", "feat_num", "nef",
              "n_downsample_E", "spade_arch", "num_res_blocks", "num_upsampling_layers", "z_dim", "spectral_norm",
              "param_free_norm", "spade_kernel_size", "spade_hidden"),
    "train": ("pool_size", "ema_decay"),
}


def check_resumable(saved, config, workdir):
    """A clear error when the workdir's config would build other shapes than `config`."""
    diffs = [f"{group}.{key}: {saved[group][key]!r} in the workdir, {config[group][key]!r} now"
             for group, keys in _SHAPE_FIELDS.items() for key in keys
             if saved[group][key] != config[group][key]]
    if diffs:
        raise UserError(f"{workdir} holds checkpoints of another model ({'; '.join(diffs)}). Resume with the "
                        "config saved there (config.json), or train in a new --workdir.")


def required_keys(config):
    """The arrays of a pipeline batch the step reads (data/pipeline.py)."""
    keys = {"image", "label_ids" if config.data.label_nc else "label"}
    if config.data.use_instance:
        keys.add("inst")
    return keys


def graft(params, source, path="", mismatched=None):
    """Copy every array of `source` that exists with the same shape in `params`.

    Arrays whose shapes differ keep their fresh values, and a warning names them (a local
    stage built with another ngf would otherwise start G1 from scratch without a word)."""
    top = mismatched is None
    mismatched = [] if top else mismatched
    if isinstance(params, dict):
        out = {k: graft(v, source[k], f"{path}/{k}", mismatched) if isinstance(source, dict) and k in source else v
               for k, v in params.items()}
    elif np.shape(source) == params.shape:
        out = jnp.asarray(source, params.dtype)
    else:
        mismatched.append(f"{path or '/'} {tuple(np.shape(source))} -> {tuple(params.shape)}")
        out = params
    if top and mismatched:
        logging.warning("%d arrays were not copied because their shapes differ (they start fresh): %s%s",
                        len(mismatched), "; ".join(mismatched[:5]), " ..." if len(mismatched) > 5 else "")
    return out


def graft_into_g1(generator_tree, source):
    """A local generator's params (or batch statistics) with a global generator's grafted into G1."""
    return dict(generator_tree, **{G1: graft(generator_tree[G1], source)})


def load_initial_weights(state, nets: Networks, source_workdir: str):
    """Start from another workdir's networks (train.init_from: the global stage for the local
    stage) or from imported reference weights. A global generator goes into the local
    enhancer's G1; D scales keep their names, so a num_D=2 model fills scales 0 and 1 of a
    num_D=3 one, and the finer scale starts fresh."""
    loaded = checkpoint.load_network_params(source_workdir)
    g_params, g_stats = dict(state.g_params), dict(state.g_stats)
    gen = loaded["generator"]
    if G1 in g_params["generator"] and G1 not in gen["params"]:
        g_params["generator"] = graft_into_g1(g_params["generator"], gen["params"])
        if G1 in g_stats["generator"]:  # norm=batch: G1's running statistics too
            g_stats["generator"] = graft_into_g1(g_stats["generator"], gen.get("batch_stats", {}))
    else:
        g_params["generator"] = graft(g_params["generator"], gen["params"])
        g_stats["generator"] = graft(g_stats["generator"], gen.get("batch_stats", {}))
    if "encoder" in g_params and "encoder" in loaded:
        g_params["encoder"] = graft(g_params["encoder"], loaded["encoder"]["params"])
    d_params, d_stats = state.d_params, state.d_stats
    if "discriminator" in loaded:
        d_params = graft(d_params, loaded["discriminator"]["params"])
        d_stats = graft(d_stats, loaded["discriminator"].get("batch_stats", {}))
    return state.replace(g_params=g_params, g_stats=g_stats, d_params=d_params, d_stats=d_stats)


def initial_weights(state, nets: Networks, config, workdir: str):
    """A fresh run's networks: from train.init_from, from weights imported into the workdir
    (import-torch), or the state as initialised."""
    source = config.train.init_from or (workdir if checkpoint.latest_step(workdir, "models") is not None else "")
    if not source:
        return state
    logging.info("networks initialised from %s", source)
    state = load_initial_weights(state, nets, source)
    return start_ema_from_generator(state) if hasattr(state, "ema_params") else state


def check_workdir_config(config, workdir: str):
    """A workdir's config.json that would build other shapes than `config` is an error; an
    unreadable one is left to the restore (it checks the checkpoints' own shapes)."""
    if not os.path.isfile(os.path.join(workdir, "config.json")):
        return
    problem = checkpoint.config_problem(workdir, checkpoint.MODEL_GROUPS)
    if problem:
        # The restore compares the checkpoint's own shapes with this config's; config.json is written anew.
        logging.warning("%s; resuming checks the checkpoints' shapes against --config instead and writes it "
                        "anew.", problem)
    else:
        check_resumable(checkpoint.read_config(workdir), config, workdir)


def save_due(step: int, steps_per_epoch: int, train_cfg) -> bool:
    """train.save_latest_freq steps, or the end of every train.save_epoch_freq-th epoch."""
    epoch_end = step % steps_per_epoch == 0
    return (step % train_cfg.save_latest_freq == 0
            or (epoch_end and (step // steps_per_epoch) % train_cfg.save_epoch_freq == 0))


def sample_grid(host_batch, fake, config, rows: int = 4):
    """label colours | boundaries | generated | real for the first rows of a batch."""
    bits = photo_bits(config)
    n = min(rows, len(fake))
    out = []
    for i in range(n):
        row = [visualize.label_panel(host_batch, i)]
        if "inst" in host_batch:
            row.append(visualize.boundary_panel(host_batch["inst"][i]))
        row += [visualize.photo_panel(fake[i], bits), visualize.photo_panel(host_batch["image"][i])]
        out.append(row)
    return visualize.grid(out)


def write_samples(writer, samples_dir: str, at: int, host_batch, fake, config):
    """Step `at`'s sample grid (this process's rows): to TensorBoard and samples/ (step_N.png, latest.png)."""
    grid = sample_grid(host_batch, local_rows(fake), config)
    writer.image(at, "samples/label_boundaries_generated_real", grid)
    visualize.save_png(os.path.join(samples_dir, f"step_{at:07d}.png"), grid)
    visualize.save_png(os.path.join(samples_dir, "latest.png"), grid)
    writer.flush()


def local_rows(array):
    """This process's first shard of a data-sharded array, as numpy."""
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.asarray(shards[0].data)


def ema_statistics_refresh(config, pipeline, mesh, shardings):
    """state, step -> state with the moving-average G's batch statistics refreshed by
    train.ema_stats_passes passes of it in training mode over the batches that follow `step` (the
    pipeline's own, read apart from the loop's); None when the state keeps no average or no passes
    are asked for. The refreshed statistics stay in the state, as OASIS's do, so a resumed run
    matches an uninterrupted one where both refresh at the same steps."""
    passes = int(config.train.ema_stats_passes)
    if config.model.netD != "oasis" or float(config.train.ema_decay) <= 0 or passes <= 0:
        return None
    run = jax.jit(make_ema_statistics_pass(config), out_shardings=shardings.ema_stats)
    keys = required_keys(config)
    base = jax.random.fold_in(jax.random.PRNGKey(config.seed), 0xE3A)  # apart from the step's own draws

    def refresh(state, step: int):
        stats, rng = state.ema_stats, jax.random.fold_in(base, step)
        batches = loop.device_batches(pipeline.iterate(step), mesh, keys, 0)
        for k, (_, batch) in zip(range(passes), batches):
            stats = run(state.ema_params, stats, batch, jax.random.fold_in(rng, k))
        return state.replace(ema_stats=stats)

    return refresh


class TrainProgram:
    """What `train` compiles, built from the config alone (so `benchmark --topology` compiles the
    same program from shapes): the networks, `init(rng)` (a fresh state: the networks initialised
    on a small probe, the image pool sized for `image_size`), and the pure `step(state, batch,
    vgg_variables)`. `vgg` is the VGG19Features module when the config's VGG loss is on."""

    def __init__(self, config, image_size, steps_per_epoch: int, vgg=None):
        self.nets = Networks(config)
        probe = size_divisor(config.model) * 2
        vgg_apply = None if vgg is None else vgg.apply
        if config.model.netD == "oasis":  # OASIS's own step (training/oasis_step.py)
            self.init = lambda rng: init_oasis_train_state(self.nets, rng, probe, probe)
            self.step = make_oasis_train_step(config, steps_per_epoch, vgg_apply)
        else:
            self.init = lambda rng: init_train_state(self.nets, rng, probe, probe, image_size=tuple(image_size))
            self.step = make_train_step(config, steps_per_epoch, vgg_apply)


def train(config, workdir: str, devices=None, progress: bool = True):
    """Train per `config` in `workdir`; returns the final state (on device)."""
    cfg = config.train
    # ----- Set-up: the mesh, the workdir, the data ------------------------------------------------
    mesh = sharding.make_mesh(devices)
    workdir = loop.prepare(config, workdir, mesh, cfg.batch_size)
    check_workdir_config(config, workdir)
    pipeline = InputPipeline(config, "train", process_index=jax.process_index(), process_count=jax.process_count())
    steps_per_epoch = pipeline.steps_per_epoch
    total = schedule.total_steps(steps_per_epoch, cfg)
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    width, height = pipeline.output_size
    evaluator = TrainingEvaluator(config) if cfg.eval_every > 0 else None  # its judge is checked before any step

    # ----- The state: resumed at the step it was saved at, or new --------------------------------
    # VGG19 in the step's compute dtype and remat policy, as G and D.
    vgg = vgg_from_config(config.loss, compute_dtype(cfg), remat_mode(cfg))
    program = TrainProgram(config, (height, width), steps_per_epoch, None if vgg is None else vgg[0])
    state, start, shardings = loop.restore_or_init(workdir, "state", program.init, config.seed, mesh,
                                                   cfg.shard_params, old_checkpoints.restore_two_adam_state)
    if start == 0:
        state = jax.device_put(initial_weights(state, program.nets, config, workdir), shardings)
    loop.write_config(workdir, config)
    train_step = loop.compiled_on_first_call(loop.jit_step(program.step, mesh, shardings, 1, has_outputs=True),
                                             "train")
    vgg_variables = jax.device_put({} if vgg is None else vgg[1], sharding.replicated(mesh))
    refresh_ema = ema_statistics_refresh(config, pipeline, mesh, shardings)

    # ----- What the run writes: checkpoints, scalars, sample grids, evaluation scores -------------
    out = loop.Outputs(workdir, "train", "state", start, total, steps_per_epoch, cfg.batch_size, cfg.print_freq,
                       cfg.keep_checkpoints, progress)
    samples_dir = os.path.join(workdir, "samples")
    os.makedirs(samples_dir, exist_ok=True)
    is_main = jax.process_index() == 0

    def read(at, metrics, fake, host_batch):
        """Step `at`'s metrics, read one step late (a finite loss with non-finite gradients has
        spoiled the state too), and every display_freq steps its sample grid."""
        out.read(at, metrics, finite=("loss", "grad_norm"), show={"G": "loss_G", "D": "loss_D"},
                 fix_hint="lower train.lr, or try train.dtype=float32, and run again.")
        if is_main and (at % cfg.display_freq == 0 or at == total):
            write_samples(out.writer, samples_dir, at, host_batch, fake, config)

    # ----- The loop ------------------------------------------------------------------------------
    step, late = start, loop.Late()
    batches = loop.device_batches(pipeline.iterate(start), mesh, required_keys(config),
                                  int(config.data.device_prefetch))
    with loop.Preemption() as preemption:
        for step, (host_batch, batch) in zip(range(start + 1, total + 1), batches):
            state, metrics, fake = train_step(state, batch, vgg_variables)
            save, stop = save_due(step, steps_per_epoch, cfg), preemption.check(step)
            evaluate = evaluator is not None and (step % cfg.eval_every == 0 or step == total)
            for results in late.swap((step, metrics, fake, host_batch), now=save or stop or evaluate or step == total):
                read(*results)
            if refresh_ema is not None and (save or evaluate or step == total):
                state = refresh_ema(state, step)  # not on a preemption's save: it keeps the run's own course
            if evaluate:
                out.scores(step, evaluator(step, state))
            out.save_if_due(step, state, due=save, preempted=stop)
    for results in late.drain():  # the data ran out before `total`
        read(*results)
    out.finish(step, state)
    if is_main:
        print(f"trained to step {step}; checkpoints in {checkpoint.checkpoint_dir(workdir)}, samples in "
              f"{samples_dir}, TensorBoard logs in {os.path.join(workdir, 'tensorboard')}")
    return state


def synthesize_test_split(config, workdir: str, state, max_grid_rows: int = 8):
    """The test split synthesized by the trained G (its moving average where the state keeps one;
    with the encoder: each test photo's own encoded styles, the reference's --use_encoded_image)
    -> <workdir>/test_results/*.png."""
    config = inference_config(config)  # whole test images, not training crops
    # Each process synthesizes its own share of the split on its own devices.
    count, index = jax.process_count(), jax.process_index()
    try:
        pipeline = InputPipeline(config, "test", train=False, batch_size=count, process_index=index,
                                 process_count=count)
    except DataError as e:
        logging.warning("no test split to synthesize (%s)", e)
        return None
    g_params, g_stats = distributed.gather_to_host(checkpoint.inference_generator(state))
    variables = {name: {"params": g_params[name], "batch_stats": g_stats[name]} for name in g_params}
    synth = Synthesizer(config, variables)
    out_dir = os.path.join(workdir, "test_results")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for batch in pipeline.iterate(0, num_epochs=1):
        label = batch["label_ids"][0] if synth.maps.label_nc else batch["label"][0]
        inst = batch["inst"][0] if "inst" in batch else None
        styles = synth.encode_styles(batch["image"][0], label, inst) if synth.has_encoder else None
        photo = synth.synthesize(label, inst, styles)
        name = batch["name"][0].decode()
        visualize.save_png(os.path.join(out_dir, f"{name}_synthesized.png"), photo)
        if len(rows) < max_grid_rows:
            rows.append([visualize.label_panel(batch, 0), visualize.photo_panel(photo),
                         visualize.photo_panel(batch["image"][0])])
    if index != 0:
        return out_dir
    grid_path = os.path.join(out_dir, "grid.png")
    visualize.save_png(grid_path, visualize.grid(rows))
    print(f"synthesized {pipeline.num_examples} test label maps into {out_dir} (overview: {grid_path})")
    return out_dir
