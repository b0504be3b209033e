"""The `pix2pixhd-jax` command: one subcommand per job.

Each subcommand is a few lines over the library: it loads its config or workdir, calls one
function and says where the outputs went. Config-driven subcommands take `--config FILE.py`
and any number of `--config.key=value` overrides. Nothing here imports TensorFlow
(`prepare-tfds` loads the TFDS builders when it runs), so the commands that need none
(synthesize, serve, export, benchmark) run where it is not installed.

A mistake of the user's (a flag, a file, a damaged checkpoint) ends with exit status 2 and one
line on stderr naming the value and the fix, never a traceback; the libraries' start-up lines
stay off the console unless --verbose (runtime/console.py).
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import jax

from pix2pixhd_jax import atomic, checkpoint
from pix2pixhd_jax.config_loading import load_config, split_config_args
from pix2pixhd_jax.data import instances, prepared, synthetic, throughput, visualize
from pix2pixhd_jax.data.pipeline import InputPipeline
from pix2pixhd_jax.errors import NonFiniteLossError, UserError
from pix2pixhd_jax.evaluation import evaluate, segmenter
from pix2pixhd_jax.inference import encode, export, features
from pix2pixhd_jax.inference.files import RESIZE_MODES, synthesize_files
from pix2pixhd_jax.inference.synthesis import Synthesizer
from pix2pixhd_jax.models.layers import count_params
from pix2pixhd_jax.models.pix2pixhd import INFERENCE_DTYPES
from pix2pixhd_jax.runtime import console, distributed
from pix2pixhd_jax.serve import Limits, serve
from pix2pixhd_jax.training import train as training
from pix2pixhd_jax.training import aot
from pix2pixhd_jax.training import benchmark as benchmark_lib
from pix2pixhd_jax.weights import torch_import
from pix2pixhd_jax.weights.inception import convert_fid_inception_main
from pix2pixhd_jax.weights.vgg19 import convert_vgg19_main


def _ids(text: str):
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected class ids separated by commas, e.g. 24,25,26") from None


def _platforms(text: str):
    return [p.strip() for p in text.split(",") if p.strip()]


def _port(text: str):
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port; give one of 1..65535 (0: any free one)")
    return port


def _size(text: str):
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size {text!r}: expected WIDTHxHEIGHT, e.g. 512x256") from None
    return w, h


def cmd_make_synthetic(args, overrides):
    w, h = args.size
    summary = synthetic.write_dataset(args.out, args.num_train, args.num_test, w, h, seed=args.seed,
                                      workers=args.workers, progress=not args.quiet)
    print(json.dumps(summary, default=str))
    print(f"synthetic scenes written to {os.path.abspath(args.out)}")


def cmd_make_instances(args, overrides):
    things = instances.thing_classes(args.dataset, args.things)
    written = instances.write_instances(args.label, args.out, things)
    ids = "class*1000+k" if instances.png_numbering(things) == "class" else "1000+n across the image"
    print(f"{len(written)} 16-bit instance maps written to {os.path.abspath(args.out)} (objects of classes "
          f"{sorted(things)[:12]}{' ...' if len(things) > 12 else ''}: one per connected region, ids {ids})")


def cmd_show_batch(args, overrides):
    atomic.output_file(args.out, example="batch.png")
    config = load_config(args.config, overrides)
    pipeline = InputPipeline(config, args.split, train=args.split == "train")
    start = time.time()
    batch = next(pipeline.iterate(0))
    shapes = {k: f"{v.shape} {v.dtype}" for k, v in batch.items()}
    print(f"{pipeline.description}: {pipeline.num_examples} examples, {pipeline.steps_per_epoch} "
          f"batches per epoch; first batch in {time.time() - start:.2f}s")
    for key, shape in shapes.items():
        print(f"  {key:10s} {shape}")
    data = config.data
    per_example = sum(v.nbytes for k, v in batch.items() if k != "name") // len(batch["name"])
    built = [f"one-hot labels ({data.label_nc} channels)" if data.label_nc else "the label image in [-1, 1]"]
    built += ["the instance boundary map"] if data.use_instance else []
    print(f"{per_example} bytes per example; the programs build on the device: {', '.join(built)}, the photo in "
          "[-1, 1]")
    image = visualize.grid(visualize.batch_panels(batch))
    visualize.save_png(args.out, image)
    print(f"picture of the batch (label colours | instances | boundaries | photo) written to "
          f"{os.path.abspath(args.out)}")


def cmd_prepare_data(args, overrides):
    atomic.output_folder(args.out)
    config = load_config(args.config, overrides)
    counts = prepared.write(config, args.out, splits=args.split, workers=args.workers, progress=not args.quiet)
    where = os.path.abspath(args.out)
    print(f"{', '.join(f'{split}: {n} examples' for split, n in counts.items())} prepared in {where}; train with "
          f"--config.data.prepared_dir={where}")


def cmd_prepare_tfds(args, overrides):
    # The one own-module import inside a function: the TFDS builders are TensorFlow at import.
    from pix2pixhd_jax.data import tfds_builders

    builder = tfds_builders.prepare(args.name, args.data_dir, args.manual_dir)
    print(builder.info.splits)
    print(f"TFDS dataset {args.name} prepared in {builder.data_dir}")


def cmd_import_torch(args, overrides):
    config = load_config(args.config, overrides)
    variables = torch_import.import_networks(config, args.netG, args.netD, args.netE)
    for name, path in (("generator", args.netG), ("discriminator", args.netD), ("encoder", args.netE)):
        if name in variables:
            print(f"{name}: {path} -> {count_params(variables[name]['params']):,} parameters")
    where = checkpoint.save_models(args.workdir, args.step, variables, config)
    print(f"checkpoint written to {where} (config in {os.path.join(os.path.abspath(args.workdir), 'config.json')})")


def cmd_train(args, overrides):
    config = load_config(args.config, overrides)
    distributed.initialize_from_args(args)
    state = training.train(config, args.workdir, progress=not args.quiet)
    if not args.no_test:
        training.synthesize_test_split(config, args.workdir, state)


def cmd_encode_features(args, overrides):
    distributed.initialize_from_args(args)
    if args.import_reference:
        clusters, path = encode.import_reference(args.workdir, args.import_reference)
        print(f"imported {len(clusters.centers)} classes of clusters from {args.import_reference} into {path}")
        return
    clusters, rows = encode.encode_features(args.workdir, args.split, args.n_clusters, args.batch_size,
                                                     progress=not args.quiet)
    kept = int((rows["cluster"] >= 0).sum())
    per_class = ", ".join(f"{k}: {len(v)}" for k, v in sorted(clusters.centers.items()))
    print(f"{len(rows['label'])} instances encoded, {kept} larger than 1/64 of the image clustered; "
          f"clusters per class {{{per_class}}}")
    print(f"styles written to {os.path.join(os.path.abspath(args.workdir), features.CLUSTERS_FILE)}, every "
          f"instance's feature to {os.path.join(os.path.abspath(args.workdir), features.INSTANCES_FILE)}")


def cmd_synthesize(args, overrides):
    atomic.output_folder(args.out)  # before the model is loaded
    synth = Synthesizer.from_workdir(args.workdir, args.clusters, dtype=args.dtype)
    written = synthesize_files(synth, args.label, args.out, inst=args.inst, style=args.style, seed=args.seed,
                               num_samples=args.num_samples, batch_size=args.batch_size, progress=not args.quiet,
                               resize=args.resize, unknown_label=args.unknown_label)
    print(f"{len(written)} photos written to {os.path.abspath(args.out)}")


def cmd_serve(args, overrides):
    caps = {"max_pixels": args.max_pixels, "max_sessions": args.max_sessions}
    limits = dataclasses.replace(Limits(), **{k: v for k, v in caps.items() if v is not None})
    serve(args.workdir, args.host, args.port, dataroot=args.dataroot, clusters=args.clusters, seed=args.seed,
          limits=limits, warmup=not args.no_warmup, dtype=args.dtype, resize=args.resize)


def cmd_export(args, overrides):
    sig = export.export(args.workdir, args.out, args.format, args.height, args.width, args.platforms, args.dtype,
                        clusters=args.clusters)
    where = os.path.abspath(args.out)
    print(f"{sig['artifact']} ({', '.join(sig['platforms'])}, {sig['dtype']}, batch B x {args.height} x "
          f"{args.width}) and {export.SIGNATURE_FILE} written to {where}")


def cmd_benchmark(args, overrides):
    extra = [f"--config.train.dtype={args.dtype}"] if args.dtype else []
    extra += [f"--config.train.remat={args.remat}"] if args.remat else []
    config = load_config(args.config, extra + overrides)
    if args.input:
        result = throughput.measure(config, args.images, 8 if args.warmup is None else args.warmup, args.workers,
                                    args.split)
    elif args.topology:
        result = aot.compile_for_topology(config, args.topology, args.height, args.width, args.batch, args.what)
    elif args.compile_only:
        result = benchmark_lib.compile_only(config, args.height, args.width, args.batch)
    else:
        result = benchmark_lib.benchmark(config, args.height, args.width, args.batch, args.steps,
                                         3 if args.warmup is None else args.warmup, synthesis=not args.no_synthesis)
    print(json.dumps(result))


def cmd_train_segmenter(args, overrides):
    config = load_config(args.config, overrides)
    distributed.initialize_from_args(args)
    segmenter.train_segmenter(config, args.workdir, progress=not args.quiet)


def cmd_evaluate(args, overrides):
    if args.out:
        atomic.output_file(args.out, example="metrics.json")
    if args.samples_dir:
        atomic.output_folder(args.samples_dir, "--samples-dir")
    distributed.initialize_from_args(args)
    result = evaluate.evaluate(args.workdir, args.segmenter, args.split, dataroot=args.dataroot,
                               inception=args.inception, style=args.style, num_samples=args.num_samples,
                               batch_size=args.batch_size, samples_dir=args.samples_dir, progress=not args.quiet)
    if jax.process_index() != 0:
        return
    print("config of the evaluated model (" + os.path.join(os.path.abspath(args.workdir), "config.json") + "):")
    print(json.dumps(result["config"], indent=1, sort_keys=True))
    summary = {k: v for k, v in result.items() if k not in ("config", "segmentation")}
    summary["segmentation"] = {k: {m: v for m, v in group.items() if m != "per_class_iou"}
                               for k, group in result["segmentation"].items()}
    print(json.dumps(summary, indent=1))
    if args.out:
        print(f"metrics written to {os.path.abspath(evaluate.write_result(result, args.out))}")


def cmd_export_segmenter(args, overrides):
    atomic.output_folder(args.out)
    result = segmenter.export_segmenter(args.workdir, args.out)
    print(f"segmenter exported to {os.path.abspath(args.out)} ({result['bytes'] / 2**20:.1f} MiB of parameters, "
          f"digest {result['digest'][:16]}); give this folder as --segmenter")


def cmd_evaluate_segmenter(args, overrides):
    if args.out:
        atomic.output_file(args.out, example="oracle.json")
    distributed.initialize_from_args(args)
    result = segmenter.score_real_photos(args.segmenter, dataroot=args.dataroot, split=args.split,
                                         batch_size=args.batch_size, progress=not args.quiet)
    if jax.process_index() != 0:
        return
    print(json.dumps(result, indent=1))
    if args.out:
        print(f"oracle written to {os.path.abspath(evaluate.write_result(result, args.out))}")


def cmd_convert_inception(args, overrides):
    atomic.output_file(args.out, example="pt_inception.npz")
    print(convert_fid_inception_main(args.pth, args.out))


def cmd_convert_vgg19(args, overrides):
    atomic.output_file(args.out, example="vgg19.npz")
    print(convert_vgg19_main(args.pth, args.out))


def _add_distributed(parser):
    """Start-up flags of the commands that run on many processes (pix2pixhd_jax/runtime/distributed.py)."""
    parser.set_defaults(starts_backends_itself=True)  # after jax.distributed.initialize
    group = parser.add_argument_group("multi-host (one copy of the command per process)")
    group.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                       help="process 0's address; with --num-processes and --process-id")
    group.add_argument("--num-processes", type=int, default=None)
    group.add_argument("--process-id", type=int, default=None)
    group.add_argument("--distributed", action="store_true",
                       help="let JAX detect the cluster (Cloud TPU pod slice, SLURM, Open MPI, GKE)")
    group.add_argument("--init-timeout", type=int, default=300, metavar="SECONDS",
                       help="how long a process waits for all others to join before it gives up")
    group.add_argument("--heartbeat-timeout", type=int, default=100, metavar="SECONDS",
                       help="how long a process waits for a silent peer (a dead host) before it ends")


# Commands that never start a JAX backend, and those that read data through TensorFlow.
NO_DEVICE = {"make-synthetic", "make-instances", "prepare-data", "prepare-tfds", "convert-inception", "convert-vgg19"}
TENSORFLOW = {"show-batch", "prepare-tfds", "train", "encode-features", "train-segmenter", "evaluate",
              "evaluate-segmenter"}


class _Parser(argparse.ArgumentParser):
    """A wrong flag is one line too (exit 2), as every other mistake of the user's."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pix2pixhd-jax", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("make-synthetic", help="write the synthetic street scenes in the reference's folder layout")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--num-train", type=int, default=1000)
    p.add_argument("--num-test", type=int, default=100)
    p.add_argument("--size", type=_size, default=(512, 256), help="WIDTHxHEIGHT, 128x64 to 2048x1024")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_make_synthetic, takes_config=False)

    p = sub.add_parser("make-instances", help="16-bit instance maps from label maps (Cityscapes' convention: a "
                       "connected region of a thing class is one object, class*1000+k; 1000+n across the image where a "
                       "thing class exceeds 64, as ADE20K's do)")
    p.add_argument("--label", required=True, help="a label map or a folder of them")
    p.add_argument("--out", required=True, help="output folder (<scene>_instanceIds.png)")
    p.add_argument("--things", type=_ids, default=None, help="thing class ids, e.g. 24,25,26 (default: the "
                   "--dataset's table)")
    p.add_argument("--dataset", choices=tuple(instances.THINGS), default="cityscapes",
                   help="whose thing classes (default cityscapes)")
    p.set_defaults(fn=cmd_make_instances, takes_config=False)

    p = sub.add_parser("show-batch", help="write a picture of what the input pipeline feeds the model")
    p.add_argument("--config", required=True, help="configs/X.py[:arg]")
    p.add_argument("--split", default="train")
    p.add_argument("--out", default="batch.png")
    p.set_defaults(fn=cmd_show_batch, takes_config=True)

    p = sub.add_parser("prepare-data", help="decode, check and resize a dataset once for a config whose resize is "
                       "fixed; training reads the result with --config.data.prepared_dir=OUT")
    p.add_argument("--config", required=True, help="configs/X.py[:arg], the config that will train on it")
    p.add_argument("--out", required=True, help="output folder (one subfolder per split)")
    p.add_argument("--split", nargs="+", default=["train", "test"], help="splits (default: train test)")
    p.add_argument("--workers", type=int, default=0, help="threads (default: one per core)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(fn=cmd_prepare_data, takes_config=True)

    p = sub.add_parser("prepare-tfds", help="prepare a TFDS dataset (synthetic_scenes/WxH, cityscapes_instances)")
    p.add_argument("--name", required=True, help="e.g. synthetic_scenes/512x256 or cityscapes_instances")
    p.add_argument("--data-dir", default=None, help="TFDS data_dir (default: TFDS's)")
    p.add_argument("--manual-dir", default=None, help="folder with the Cityscapes zips or extracted trees")
    p.set_defaults(fn=cmd_prepare_tfds, takes_config=False)

    p = sub.add_parser("train", help="train (resumes automatically when the workdir holds a checkpoint)")
    p.add_argument("--config", required=True, help="configs/X.py[:arg]")
    p.add_argument("--workdir", required=True, help="checkpoints, TensorBoard logs, samples and test results")
    p.add_argument("--no-test", action="store_true", help="skip synthesizing the test split at the end")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_distributed(p)
    p.set_defaults(fn=cmd_train, takes_config=True)

    p = sub.add_parser("import-torch", help="import PyTorch checkpoints (NVIDIA pix2pixHD, NVlabs SPADE's generator, "
                       "boschresearch OASIS) into a workdir")
    p.add_argument("--config", required=True, help="the config the checkpoint was trained with, e.g. "
                   "configs/cityscapes_2048x1024.py for label2city_1024p, configs/oasis_cityscapes.py for OASIS")
    p.add_argument("--netG", required=True, help="latest_net_G.pth (OASIS: *_EMA.pth, the moving average it "
                   "synthesizes with, or *_G.pth)")
    p.add_argument("--netD", default=None, help="latest_net_D.pth, OASIS's *_D.pth (for fine-tuning)")
    p.add_argument("--netE", default=None, help="latest_net_E.pth (with the feature encoder)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--step", type=int, default=0, help="the step the checkpoint is saved under")
    p.set_defaults(fn=cmd_import_torch, takes_config=True)

    p = sub.add_parser("encode-features", help="E over the training photos, then k-means styles per class")
    p.add_argument("--workdir", required=True, help="a workdir trained with the feature encoder")
    p.add_argument("--split", default="train")
    p.add_argument("--n-clusters", type=int, default=None, help="default: the config's model.n_clusters (10)")
    p.add_argument("--batch-size", type=int, default=None, help="images per encoder call (all devices)")
    p.add_argument("--import-reference", default=None, metavar="NPY",
                   help="import the reference's features_clustered_010.npy instead of encoding (a pickle: "
                        "only files you trust)")
    p.add_argument("--quiet", action="store_true")
    _add_distributed(p)
    p.set_defaults(fn=cmd_encode_features, takes_config=False)

    p = sub.add_parser("synthesize", help="label maps (files or folders) in, PNG photos out")
    p.add_argument("--workdir", required=True, help="a trained or imported model")
    p.add_argument("--label", required=True, help="a label map (ids; RGB when label_nc=0) or a folder of them")
    p.add_argument("--inst", default=None, help="instance map(s), paired with the label maps by scene name")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--style", default="random",
                   help="random | encode:PHOTO_OR_FOLDER | STYLES.json (models with the feature encoder: a "
                        "cluster index or a feature vector per object; models with 3D noise: a draw index or a "
                        "noise vector of z_dim values per object)")
    p.add_argument("--seed", type=int, default=0, help="draws the noise (3D-noise models) and random styles")
    p.add_argument("--num-samples", type=int, default=1,
                   help="pictures per label map, each with other noise (3D-noise models such as OASIS) or other "
                        "random styles (the feature encoder)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--clusters", default=None, help="a clusters file (default: the workdir's)")
    p.add_argument("--dtype", choices=tuple(INFERENCE_DTYPES), default=None,
                   help="compute dtype (default: the config's train.dtype); norms stay float32")
    p.add_argument("--resize", choices=RESIZE_MODES, default="config",
                   help="config: scale the maps as the reference's test.py does for the model's config (a 512p "
                        "model works at 1024x512); none: as they are")
    p.add_argument("--unknown-label", type=int, default=None, metavar="K",
                   help="synthesize ids the model has no class for (e.g. 255) as class K (default: the model's "
                        "data.unknown_label; off: such a map is an error)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(fn=cmd_synthesize, takes_config=False)

    p = sub.add_parser("serve", help="the interactive editor: one page and a JSON/PNG API at http://HOST:PORT/")
    p.add_argument("--workdir", required=True, help="a trained or imported model (with its clusters for styles)")
    p.add_argument("--host", default="127.0.0.1", help="default loopback only; another address has no authentication")
    p.add_argument("--port", type=_port, default=8000, help="0 picks a free port")
    p.add_argument("--dataroot", default=None, help="the test split's root (default: the config's data.dataroot)")
    p.add_argument("--clusters", default=None, help="a clusters file (default: the workdir's)")
    p.add_argument("--seed", type=int, default=0, help="draws the styles of objects not restyled")
    p.add_argument("--max-pixels", type=int, default=None, help="largest label map accepted (default 2048*1024)")
    p.add_argument("--max-sessions", type=int, default=None, help="sessions kept, least recently used dropped (16)")
    p.add_argument("--no-warmup", action="store_true", help="skip compiling for the test scenes' size at start")
    p.add_argument("--dtype", choices=tuple(INFERENCE_DTYPES), default=None,
                   help="compute dtype (default: the config's train.dtype); norms stay float32")
    p.add_argument("--resize", choices=RESIZE_MODES, default="config",
                   help="config: work on label maps at the model's test size (as synthesize); none: as uploaded")
    p.set_defaults(fn=cmd_serve, takes_config=False)

    p = sub.add_parser("export", help="the generator as a program that runs without this project (StableHLO or "
                       "ONNX) and its signature.json")
    p.add_argument("--workdir", required=True, help="a trained or imported model")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--format", choices=export.FORMATS, default="stablehlo")
    p.add_argument("--height", type=int, required=True, help="a multiple of the generator's size factor")
    p.add_argument("--width", type=int, required=True)
    p.add_argument("--platforms", type=_platforms, default=list(export.DEFAULT_PLATFORMS),
                   help="stablehlo: comma-separated, of " + ", ".join(export.PLATFORMS) + " (default cpu,cuda,tpu)")
    p.add_argument("--dtype", choices=tuple(INFERENCE_DTYPES), default="float32",
                   help="compute dtype (onnx: float32 or float16); norms stay float32")
    p.add_argument("--clusters", default=None, help="a clusters file (default: the workdir's)")
    p.set_defaults(fn=cmd_export, takes_config=False)

    p = sub.add_parser("benchmark", help="time the train step and synthesis on random on-device batches, compile "
                       "them for a TPU topology, or time the input pipeline (one JSON line)")
    p.add_argument("--config", required=True, help="configs/X.py[:arg]")
    p.add_argument("--height", type=int, default=512)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--batch", type=int, default=1, help="global batch (all devices); per chip with --topology")
    p.add_argument("--steps", type=int, default=20, help="timed steps after the warm-up")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 3), or examples with "
                   "--input (default 8)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None, help="default: the config's")
    p.add_argument("--remat", default=None, help="train.remat: none, blocks, full or a jax.checkpoint_policies name "
                   "(default: the config's)")
    p.add_argument("--no-synthesis", action="store_true", help="skip the synthesis latency")
    p.add_argument("--compile-only", action="store_true", help="compile the accelerator's step without running it; "
                   "report XLA's memory estimate (estimated_device_bytes), compile time and FLOPs")
    p.add_argument("--topology", default=None, metavar="NAME",
                   help="compile the program train runs for a TPU topology's chips with XLA:TPU, on this machine "
                        "(e.g. v5e:2x2, v4:2x2x1, v5p:2x2x1, v6e:2x2; needs libtpu: pip install '.[tpu]'); reports "
                        "XLA:TPU's memory per chip, FLOPs and a roofline bound on the step time")
    p.add_argument("--what", choices=("train_step", "synthesis"), default="train_step",
                   help="with --topology: the program to compile")
    p.add_argument("--input", action="store_true", help="time the input pipeline alone (images/s, bytes per example)")
    p.add_argument("--workers", type=int, default=0, help="--input: parallel decoding calls (default: one per core)")
    p.add_argument("--images", type=int, default=48, help="--input: timed examples after the warm-up")
    p.add_argument("--split", default="train", help="--input: the split")
    p.set_defaults(fn=cmd_benchmark, takes_config=True)

    p = sub.add_parser("train-segmenter", help="train the evaluation segmenter on the real training photos")
    p.add_argument("--config", required=True, help="the dataset's config, e.g. configs/ablation_synthetic.py:segmenter "
                   "(data group; the segmenter group sets width, depth, steps, batch size, lr)")
    p.add_argument("--workdir", required=True)
    p.add_argument("--quiet", action="store_true")
    _add_distributed(p)
    p.set_defaults(fn=cmd_train_segmenter, takes_config=True)

    p = sub.add_parser("evaluate", help="segmentation score (generated vs real), Frechet distances, PSNR/SSIM, "
                       "diversity of a trained model on a split (JSON)")
    p.add_argument("--workdir", required=True, help="the trained model")
    p.add_argument("--segmenter", required=True, help="a train-segmenter workdir (or its export-segmenter folder) for this dataset")
    p.add_argument("--split", default="test")
    p.add_argument("--dataroot", default=None, help="the data (default: the model's config's data.dataroot)")
    p.add_argument("--out", default=None, help="write the metrics JSON here")
    p.add_argument("--inception", default=None, help="FID Inception weights (pytorch-fid's pt_inception-2015-12-05"
                   "-6726825d.pth, its .npz from convert-inception, or jax-fid's pickle); without it FID/KID are "
                   "skipped")
    p.add_argument("--style", default="auto", help="auto (encoded from the real photo when the model has the "
                   "feature encoder) | encode | random")
    p.add_argument("--num-samples", type=int, default=3, help="samples per label map for the diversity score")
    p.add_argument("--batch-size", type=int, default=4, help="images per process per call")
    p.add_argument("--samples-dir", default=None, help="also write the generated photos here")
    p.add_argument("--quiet", action="store_true")
    _add_distributed(p)
    p.set_defaults(fn=cmd_evaluate, takes_config=False)

    p = sub.add_parser("export-segmenter", help="a trained segmenter as a folder to keep or share (config.json and "
                       "its parameters); --segmenter reads it like the workdir")
    p.add_argument("--workdir", required=True, help="a train-segmenter workdir")
    p.add_argument("--out", required=True, help="the folder to write")
    p.set_defaults(fn=cmd_export_segmenter, takes_config=False)

    p = sub.add_parser("evaluate-segmenter", help="the oracle: a train-segmenter workdir on a split's real photos "
                       "(pixel accuracy, mean and per-class IoU; JSON)")
    p.add_argument("--segmenter", required=True, help="a train-segmenter workdir")
    p.add_argument("--split", default="test")
    p.add_argument("--dataroot", default=None, help="the data (default: the segmenter's config's data.dataroot)")
    p.add_argument("--out", default=None, help="write the JSON here")
    p.add_argument("--batch-size", type=int, default=8, help="images per process per call")
    p.add_argument("--quiet", action="store_true")
    _add_distributed(p)
    p.set_defaults(fn=cmd_evaluate_segmenter, takes_config=False)

    p = sub.add_parser("convert-inception", help="convert pytorch-fid's pt_inception .pth to .npz (needs torch once)")
    p.add_argument("--pth", required=True)
    p.add_argument("--out", required=True)
    p.set_defaults(fn=cmd_convert_inception, takes_config=False)

    p = sub.add_parser("convert-vgg19", help="convert torchvision's vgg19-dcbb9e9d.pth to .npz (needs torch once)")
    p.add_argument("--pth", required=True, help="torchvision's vgg19-dcbb9e9d.pth")
    p.add_argument("--out", required=True, help="output .npz, usable without torch")
    p.set_defaults(fn=cmd_convert_vgg19, takes_config=False)
    for p in sub.choices.values():
        p.add_argument("--verbose", action="store_true", help="show the libraries' start-up lines and logs (TPU and "
                       "TensorFlow start-up, Orbax, the ONNX converter)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        overrides, rest = split_config_args(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args = build_parser().parse_args(rest)
    if overrides and not args.takes_config:
        build_parser().error(f"{args.command} takes no --config overrides: {' '.join(overrides)}")
    console.quiet(args.verbose)
    try:
        if args.command in TENSORFLOW:
            console.import_tensorflow()
        if args.command not in NO_DEVICE and not getattr(args, "starts_backends_itself", False):
            console.start_backends()
        args.fn(args, overrides)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except NonFiniteLossError as e:
        print(f"error: {e}", file=sys.stderr)
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
