"""The training loop: `pix2pixhd-jax train --config CONFIG --workdir DIR`.

Builds the input pipeline, the mesh and the jitted step, restores the newest
checkpoint of the workdir (resuming at its exact step and data position) or
starts from `train.init_from` / imported weights / scratch, then trains with a
progress bar, TensorBoard scalars and image grids, periodic asynchronous Orbax
checkpoints, a NaN guard and a save on SIGTERM. At the end it synthesizes the
test split into <workdir>/test_results.
"""

import logging
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np

from pix2pixhd_jax import checkpoint, distributed, host_memory, schedule, sharding, visualize
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.inputs import size_divisor
from pix2pixhd_jax.train_step import Networks, generate, init_train_state, make_train_step, merge_g1, split_g1


class NonFiniteLossError(RuntimeError):
    pass


# Config fields that change the networks' shapes: a checkpoint made with other values cannot be resumed.
_SHAPE_FIELDS = {
    "data": ("label_nc", "input_nc", "output_nc", "use_instance"),
    "model": ("netG", "ngf", "n_downsample_global", "n_blocks_global", "n_local_enhancers", "n_blocks_local",
              "norm", "ndf", "n_layers_D", "num_D", "netD", "instance_feat", "label_feat", "feat_num", "nef",
              "n_downsample_E"),
    "train": ("pool_size",),
}


def check_resumable(saved, config, workdir):
    """A clear error when the workdir's config would build other shapes than `config`."""
    diffs = [f"{group}.{key}: {saved[group][key]!r} in the workdir, {config[group][key]!r} now"
             for group, keys in _SHAPE_FIELDS.items() for key in keys
             if group in saved and key in saved[group] and saved[group][key] != config[group][key]]
    if diffs:
        raise UserError(f"{workdir} holds checkpoints of another model ({'; '.join(diffs)}). Resume with the "
                        "config saved there (config.json), or train in a new --workdir.")


def _required_keys(config):
    keys = {"label", "image"}
    if config.data.use_instance:
        keys |= {"boundary", "inst"}
    if config.model.label_feat:
        keys.add("label_ids")
    return keys


def _graft(params, source, path="", mismatched=None):
    """Copy every array of `source` that exists with the same shape in `params`.

    Arrays whose shapes differ keep their fresh values, and a warning names them (a local
    stage built with another ngf would otherwise start G1 from scratch without a word)."""
    top = mismatched is None
    mismatched = [] if top else mismatched
    if isinstance(params, dict):
        out = {k: _graft(v, source[k], f"{path}/{k}", mismatched) if isinstance(source, dict) and k in source else v
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


def load_initial_weights(state, nets: Networks, source_workdir: str):
    """Start from another workdir's networks (train.init_from: the global stage for the local
    stage) or from imported reference weights. A global generator goes into the local
    enhancer's G1; D scales keep their names, so a num_D=2 model fills scales 0 and 1 of a
    num_D=3 one, and the finer scale starts fresh."""
    loaded = checkpoint.load_network_params(source_workdir)
    g_params, g_stats = dict(state.g_params), dict(state.g_stats)
    gen = loaded["generator"]
    if "global_generator" in state.g_params["generator"] and "global_generator" not in gen["params"]:
        g1, rest = split_g1(g_params)
        g1 = _graft(g1, gen["params"])
        g_params = merge_g1(g1, rest)
        if "global_generator" in g_stats["generator"]:  # norm=batch: G1's running statistics too
            g_stats["generator"] = dict(g_stats["generator"], global_generator=_graft(
                g_stats["generator"]["global_generator"], gen.get("batch_stats", {})))
    else:
        g_params["generator"] = _graft(g_params["generator"], gen["params"])
        g_stats["generator"] = _graft(g_stats["generator"], gen.get("batch_stats", {}))
    if "encoder" in g_params and "encoder" in loaded:
        g_params["encoder"] = _graft(g_params["encoder"], loaded["encoder"]["params"])
    d_params, d_stats = state.d_params, state.d_stats
    if "discriminator" in loaded:
        d_params = _graft(d_params, loaded["discriminator"]["params"])
        d_stats = _graft(d_stats, loaded["discriminator"].get("batch_stats", {}))
    return state.replace(g_params=g_params, g_stats=g_stats, d_params=d_params, d_stats=d_stats)


def sample_grid(host_batch, fake, config, rows: int = 4):
    """label colours | boundaries | generated | real for the first rows of a batch."""
    n = min(rows, len(fake))
    out = []
    for i in range(n):
        label = (visualize.colorize_labels(host_batch["label_ids"][i]) if "label_ids" in host_batch
                 else visualize.to_uint8(host_batch["label"][i]))
        row = [label]
        if "boundary" in host_batch:
            row.append(visualize.gray(host_batch["boundary"][i]))
        row += [visualize.to_uint8(fake[i]), visualize.to_uint8(host_batch["image"][i])]
        out.append(row)
    return visualize.grid(out)


def _or(value, default):
    return default if value is None else value


def _local_rows(array):
    """This process's first shard of a data-sharded array, as numpy."""
    shards = sorted(array.addressable_shards, key=lambda s: s.index[0].start or 0)
    return np.asarray(shards[0].data)


class _Preemption:
    """SIGTERM (a preempted job) asks the loop to save and stop after the current step.

    With many processes JAX's preemption service catches the signal on whichever host
    gets it and agrees a step at which all processes save together (a save is collective)."""

    def __init__(self):
        self.requested = False
        self._previous = None
        self._multi = jax.process_count() > 1

    def check(self, step):
        if self._multi:
            from jax.experimental import multihost_utils

            self.requested = self.requested or multihost_utils.reached_preemption_sync_point(step)
        return self.requested

    def __enter__(self):
        if self._multi:
            return self
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def _handle(self, signum, frame):
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def train(config, workdir: str, devices=None, progress: bool = True):
    """Train per `config` in `workdir`; returns the final state (on device)."""
    from tqdm import tqdm

    from pix2pixhd_jax.data.pipeline import InputPipeline
    from pix2pixhd_jax.metric_writer import MetricWriter
    from pix2pixhd_jax.models.vgg import vgg_from_config

    workdir = os.path.abspath(workdir)
    is_main = jax.process_index() == 0
    host_memory.keep_freed_memory()
    os.makedirs(workdir, exist_ok=True)
    config_path = os.path.join(workdir, "config.json")
    distributed.check_same_config(config)
    if os.path.isfile(config_path):
        check_resumable(checkpoint.read_config(workdir), config, workdir)

    mesh = sharding.make_mesh(devices)
    sharding.check_batch(config.train.batch_size, mesh)
    pipeline = InputPipeline(config, "train", process_index=jax.process_index(),
                             process_count=jax.process_count())
    steps_per_epoch = pipeline.steps_per_epoch
    total = schedule.total_steps(steps_per_epoch, config.train)
    if config.train.max_steps > 0:
        total = min(total, config.train.max_steps)
    width, height = pipeline.output_size

    nets = Networks(config)
    init_size = size_divisor(config.model) * 2

    def init_fn(rng):
        state = init_train_state(nets, rng, init_size, init_size)
        if config.train.pool_size > 0:
            from pix2pixhd_jax import image_pool
            state = state.replace(pool=image_pool.init_pool(config.train.pool_size, (height, width, nets.d_in)))
        return state

    rng = jax.random.PRNGKey(config.seed)
    shapes = jax.eval_shape(init_fn, rng)
    state_sharding = sharding.state_shardings(shapes, mesh, config.train.shard_params)
    mngr = checkpoint.train_manager(workdir, config.train.keep_checkpoints)
    # Process 0's view of the shared disk decides, so no process resumes from another step.
    start = distributed.broadcast_from_main(_or(checkpoint.latest_step(workdir, "state"), -1))
    start = None if start < 0 else start
    if start is not None:
        abstract = jax.tree_util.tree_map(lambda s, sh: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sh),
                                          shapes, state_sharding)
        state = checkpoint.restore_state(mngr, start, abstract)
        logging.info("resuming from %s at step %d", checkpoint.checkpoint_dir(workdir), start)
    else:
        start = 0
        state = jax.jit(init_fn, out_shardings=state_sharding)(rng)
        source = config.train.init_from or (workdir if checkpoint.latest_step(workdir, "models") is not None else "")
        if source:
            state = jax.device_put(load_initial_weights(state, nets, source), state_sharding)
            logging.info("networks initialised from %s", source)
    if is_main:  # only now: a checkpoint that failed to restore keeps the config.json it was made with
        checkpoint.write_config(workdir, config)

    vgg = vgg_from_config(config.loss)
    vgg_apply, vgg_vars = (None, {}) if vgg is None else (vgg[0].apply, vgg[1])
    vgg_vars = jax.device_put(vgg_vars, sharding.replicated(mesh))
    batch_sh, repl = sharding.batch_sharding(mesh), sharding.replicated(mesh)
    step_fn = jax.jit(make_train_step(config, steps_per_epoch, vgg_apply),
                      in_shardings=(state_sharding, batch_sh, repl),
                      out_shardings=(state_sharding, repl, batch_sh), donate_argnums=(0,))

    writer = MetricWriter(os.path.join(workdir, "tensorboard"), enabled=is_main)
    samples_dir = os.path.join(workdir, "samples")
    os.makedirs(samples_dir, exist_ok=True)
    keys = _required_keys(config)
    last_saved = start if start else None
    bar = tqdm(total=total, initial=start, disable=not (progress and is_main), unit="step", dynamic_ncols=True)
    tick, tick_step = time.time(), start
    step = start

    def save(at):
        nonlocal last_saved
        if last_saved != at:
            checkpoint.save_state(mngr, at, state)
            last_saved = at

    def finish(done):
        """Read a dispatched step's metrics (waiting for that step only): the NaN guard, the
        progress bar, the scalars and the sample images of that step."""
        nonlocal tick, tick_step
        at, metrics, fake, host_batch = done
        metrics = jax.device_get(metrics)
        # Gradient norms too: a finite loss with non-finite gradients has already spoiled the state.
        if not all(np.isfinite(v) for k, v in metrics.items() if k.startswith(("loss", "grad_norm"))):
            mngr.wait_until_finished()
            bad = {k: float(v) for k, v in metrics.items() if k.startswith(("loss", "grad_norm"))}
            where = checkpoint.checkpoint_dir(workdir)
            kept = (f"The last good checkpoint is kept in {where} (step {last_saved})" if last_saved is not None
                    else f"No checkpoint was saved in {where} before it")
            raise NonFiniteLossError(f"non-finite loss at step {at}: {bad}. {kept}; lower train.lr, or try "
                                     "train.dtype=float32, and run again.")
        bar.update(1)
        bar.set_postfix(epoch=(at - 1) // steps_per_epoch,
                        G=f"{metrics['loss_G']:.3f}", D=f"{metrics['loss_D']:.3f}", refresh=False)
        if at % config.train.print_freq == 0 or at == total:
            now = time.time()
            rate = (at - tick_step) * config.train.batch_size / max(now - tick, 1e-9)
            writer.scalars(at, dict(metrics, images_per_second=rate, epoch=(at - 1) // steps_per_epoch))
            tick, tick_step = now, at
        if is_main and (at % config.train.display_freq == 0 or at == total):
            grid = sample_grid(host_batch, _local_rows(fake), config)
            writer.image(at, "samples/label_boundaries_generated_real", grid)
            visualize.save_png(os.path.join(samples_dir, f"step_{at:07d}.png"), grid)
            visualize.save_png(os.path.join(samples_dir, "latest.png"), grid)
            writer.flush()

    # A step's metrics are read one step late, once the next step is dispatched, so the device
    # does not wait for the host between steps. A step whose state is saved (periodically, on
    # SIGTERM, at the end) is read first: only a state whose own metrics are finite is saved,
    # and a non-finite step n stops the run before step n + 1's state could be saved.
    pending = None
    with _Preemption() as preemption:
        for host_batch in pipeline.iterate(start):
            if step >= total:
                break
            state, metrics, fake = step_fn(state, sharding.global_batch(host_batch, mesh, keys), vgg_vars)
            step += 1
            if pending is not None:
                finish(pending)
            pending = (step, metrics, fake, host_batch)
            epoch_end = step % steps_per_epoch == 0
            save_due = (step % config.train.save_latest_freq == 0
                        or (epoch_end and (step // steps_per_epoch) % config.train.save_epoch_freq == 0))
            stop = preemption.check(step)
            if save_due or stop or step >= total:
                finish(pending)
                pending = None
            if save_due:
                save(step)
            if stop:
                save(step)
                mngr.wait_until_finished()
                bar.close()
                logging.warning("SIGTERM: saved step %d in %s; run the same command to resume.", step,
                                checkpoint.checkpoint_dir(workdir))
                writer.close()
                raise SystemExit(143)
            if step >= total:
                break
    if pending is not None:  # the data ran out before `total`
        finish(pending)
    save(step)
    mngr.wait_until_finished()
    mngr.close()
    bar.close()
    writer.close()
    if is_main:
        print(f"trained to step {step}; checkpoints in {checkpoint.checkpoint_dir(workdir)}, samples in "
              f"{samples_dir}, TensorBoard logs in {os.path.join(workdir, 'tensorboard')}")
    return state


def synthesize_test_split(config, workdir: str, state, max_grid_rows: int = 8):
    """G (and E on the test photos) over the test split -> <workdir>/test_results/*.png."""
    from pix2pixhd_jax.data.errors import DataError
    from pix2pixhd_jax.data.pipeline import InputPipeline
    from pix2pixhd_jax.data.transforms import inference_config

    config = inference_config(config)  # whole test images, not training crops
    # Each process synthesizes its own share of the split on its own devices.
    count, index = jax.process_count(), jax.process_index()
    try:
        pipeline = InputPipeline(config, "test", train=False, batch_size=count, process_index=index,
                                 process_count=count)
    except DataError as e:
        logging.warning("no test split to synthesize (%s)", e)
        return None
    nets = Networks(config)
    keys = _required_keys(config) | ({"inst"} if nets.E is not None else set())
    g_params, g_stats = distributed.gather_to_host((state.g_params, state.g_stats))
    device = jax.local_devices()[0]
    g_params, g_stats = jax.device_put((g_params, g_stats), device)
    run = jax.jit(lambda p, s, b: generate(nets, p, s, b, train=False, rng=jax.random.PRNGKey(0))[0])
    out_dir = os.path.join(workdir, "test_results")
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for batch in pipeline.iterate(0, num_epochs=1):
        inputs = jax.device_put({k: batch[k] for k in keys if k in batch}, device)
        fake = np.asarray(run(g_params, g_stats, inputs))
        name = batch["name"][0].decode()
        visualize.save_png(os.path.join(out_dir, f"{name}_synthesized.png"), visualize.to_uint8(fake[0]))
        if len(rows) < max_grid_rows:
            label = (visualize.colorize_labels(batch["label_ids"][0]) if "label_ids" in batch
                     else visualize.to_uint8(batch["label"][0]))
            rows.append([label, visualize.to_uint8(fake[0]), visualize.to_uint8(batch["image"][0])])
    if index != 0:
        return out_dir
    grid_path = os.path.join(out_dir, "grid.png")
    visualize.save_png(grid_path, visualize.grid(rows))
    print(f"synthesized {pipeline.num_examples} test label maps into {out_dir} (overview: {grid_path})")
    return out_dir
