"""The tf.data input pipeline: host batches of exactly what the reference feeds its model,
in the smallest form that holds it.

Each batch is a dict of numpy arrays:
  label_ids  (B, H, W) label ids, uint8 (uint16 when label_nc > 256) (label_nc > 0)
  label      (B, H, W, input_nc) uint8 label image (label_nc == 0)
  inst       (B, H, W) uint16 instance ids (data.use_instance)
  image      (B, H, W, output_nc) the photo's levels, uint8 (uint16 for data.image_bit_depth=16)
  name       (B,) bytes, the examples' names
Nothing derived travels: the one-hot labels, the instance boundaries and the [-1, 1] scaling
are built on the device, inside the programs, by `models.pix2pixhd.model_inputs` (at 1024x512
an example is 3 MB instead of the 86 MB of its float32 network input).

Two ways to make an example: from the dataset's files (Pillow decodes, validates and applies
the reference's transforms, `process`), or from a dataset prepared for the config once
(`data.prepared_dir`, data/prepared.py), where only TensorFlow ops run per example.

Order: an epoch's order depends only on (seed, epoch), and each example's crop
and flip only on (seed, epoch, name), so training resumes at an exact step by
building the pipeline from that step, without replaying it. Each process of a
multi-host run reads its own disjoint part of every global batch.

TensorFlow is imported when a pipeline is first built (`tensorflow`), not when this module
is: the training, evaluation and encoding modules import this one at their top and still
import where TensorFlow is not installed (the accelerator images have none).
"""

import dataclasses
import math
import os
import re
import zlib

import numpy as np

from pix2pixhd_jax.data import decode, prepared, readers, transforms
from pix2pixhd_jax.data.label_maps import ModelMaps
from pix2pixhd_jax.errors import DataError

_DATA_ERROR = re.compile(r"DataError: (.*?)(?:\n|$)", re.DOTALL)


def tensorflow():
    """TensorFlow, imported on first use, with the GPUs hidden from it (JAX owns the
    accelerators; TF only reads, decodes and encodes on the host): the pipeline's and the TFDS
    builders'."""
    try:
        import tensorflow as tf
    except ImportError:
        raise DataError("the input pipeline reads data through tf.data, and TensorFlow is not installed: "
                        "pip install tensorflow-cpu tensorflow-datasets (see requirements.txt).") from None
    try:
        tf.config.set_visible_devices([], "GPU")
    except RuntimeError:  # already initialised by the caller
        pass
    return tf


def epoch_seed(seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def epoch_order(num_examples: int, seed: int, epoch: int, shuffle: bool) -> np.ndarray:
    """The global order of one epoch, fixed by (seed, epoch)."""
    if not shuffle:
        return np.arange(num_examples)
    return np.random.default_rng(epoch_seed(seed, epoch)).permutation(num_examples)


def process_indices(order: np.ndarray, global_batch: int, process_index: int, process_count: int,
                    drop_remainder: bool = True) -> np.ndarray:
    """This process's examples of an epoch, in order.

    Training (drop_remainder): each global batch of `order` is cut into
    process_count equal parts and this process takes its part of every batch;
    the incomplete last batch is dropped. Evaluation: contiguous near-equal shards
    that together cover every example once.
    """
    if not drop_remainder:
        return np.array_split(order, process_count)[process_index]
    steps = len(order) // global_batch
    per_process = global_batch // process_count
    return order[: steps * global_batch].reshape(steps, process_count, per_process)[:, process_index].ravel()


def _name_key(name: bytes) -> int:
    return zlib.crc32(name)


class InputPipeline:
    """Batches of one split for this process.

    Args:
      config: the full config (data and model groups are read).
      split: 'train' or 'test'.
      train: random crops/flips, shuffling and dropping the last incomplete batch;
        defaults to split == 'train'.
      batch_size: global batch size (all processes); defaults to config.train.batch_size.
    """

    def __init__(self, config, split="train", *, train=None, batch_size=None, process_index=0,
                 process_count=1, seed=None):
        self.data_cfg = data = config.data
        self.split = split
        self.train = split == "train" if train is None else train
        self.seed = config.seed if seed is None else seed
        self.process_index, self.process_count = process_index, process_count
        transforms.check_mode(data.resize_or_crop)
        self.maps = maps = ModelMaps.of(config)
        self.divisor, self.channels, self.bit_depth = maps.divisor, maps.channels, maps.bits
        self.global_batch = config.train.batch_size if batch_size is None else batch_size
        if self.global_batch % process_count:
            raise DataError(
                f"batch size {self.global_batch} is not divisible by the {process_count} processes; "
                "choose a global batch size that is a multiple of the process count."
            )
        self.batch = self.global_batch // process_count
        self.label_dtype, self.image_dtype = maps.label_dtype, maps.photo_dtype
        self._prepared = prepared.read(config, split) if data.prepared_dir else None
        self._tfds = self._prepared is None and data.dataset_format == "tfds"
        if self._tfds:
            self._init_tfds()
        else:
            source = self._prepared or readers.read_source(data, split)
            if data.max_dataset_size > 0:
                source = dataclasses.replace(source, examples=source.examples[: data.max_dataset_size])
            self.source, self.num_examples = source, len(source)
            self._ab = getattr(source, "ab_direction", None)
        if self.train and self.num_examples < self.global_batch:
            raise DataError(
                f"{self.description}: {self.num_examples} examples, fewer than one batch of "
                f"{self.global_batch}; lower train.batch_size or add data."
            )
        self.output_size = self._probe_output_size()

    # ----- sources ---------------------------------------------------------
    def _init_tfds(self):
        import tensorflow_datasets as tfds

        # Imported for its side effect, registering the project's builders; it is TFDS at import.
        from pix2pixhd_jax.data import tfds_builders  # noqa: F401

        data = self.data_cfg
        if not data.tfds_name:
            raise DataError("data.dataset_format='tfds' needs data.tfds_name, e.g. 'cityscapes_instances'.")
        self._builder = tfds.builder(data.tfds_name, data_dir=data.tfds_data_dir or None)
        if self.split not in self._builder.info.splits:
            raise DataError(
                f"TFDS dataset {data.tfds_name} has no split {self.split!r} "
                f"(it has {', '.join(self._builder.info.splits)}); prepare it first with "
                "`pix2pixhd-jax prepare-tfds`."
            )
        self._subsplit = tfds.even_splits(self.split, n=self.process_count,
                                          drop_remainder=self.train)[self.process_index]
        self.num_examples = self._builder.info.splits[self.split].num_examples
        self._process_examples = self._builder.info.splits[self._subsplit].num_examples
        self._ab = None
        self.source = None

    @property
    def description(self):
        if self._tfds:
            return f"TFDS {self.data_cfg.tfds_name} ({self.split})"
        return self.source.description

    @property
    def steps_per_epoch(self) -> int:
        """Batches per epoch for this process (equal on every process when training)."""
        if self.train and not self._tfds:
            return self.num_examples // self.global_batch
        if self._tfds:
            n = self._process_examples
        else:  # this process's np.array_split shard of the examples
            n = self.num_examples // self.process_count + (self.process_index < self.num_examples % self.process_count)
        return n // self.batch if self.train else math.ceil(n / self.batch)

    def _example_files(self, i):
        ex = self.source.examples[i]
        return ex.label or "", ex.inst or "", ex.image

    def _records_for_epoch(self, epoch: int, skip_examples: int):
        """Encoded records of this process for one epoch, in order (a tf.data.Dataset); for a
        prepared dataset, with each example's crop and flip (crop_x, crop_y, flip) beside it."""
        tf = tensorflow()
        if self._tfds:
            return self._tfds_records(epoch, skip_examples)
        order = epoch_order(self.num_examples, self.seed, epoch, self.train)
        idx = process_indices(order, self.global_batch, self.process_index, self.process_count,
                              drop_remainder=self.train)[skip_examples:]
        files = [self._example_files(i) for i in idx]
        names = [self.source.examples[i].name for i in idx]
        columns = {
            "name": tf.constant(names, tf.string),
            "label_file": tf.constant([f[0] for f in files], tf.string),
            "inst_file": tf.constant([f[1] for f in files], tf.string),
            "image_file": tf.constant([f[2] for f in files], tf.string),
        }
        if self._prepared is not None:
            params = [self.params(self.source.examples[i].name, *self.source.examples[i].source_size, epoch)
                      for i in idx]
            columns.update(crop_x=tf.constant([p.crop_x for p in params], tf.int32),
                           crop_y=tf.constant([p.crop_y for p in params], tf.int32),
                           flip=tf.constant([p.flip for p in params], tf.bool))
            return tf.data.Dataset.from_tensor_slices(columns)
        ds = tf.data.Dataset.from_tensor_slices(columns)

        def read(r):
            def maybe_read(path):
                return tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path), lambda: tf.constant(b""))
            return dict(r, label=maybe_read(r["label_file"]), inst=maybe_read(r["inst_file"]),
                        image=tf.io.read_file(r["image_file"]))

        return ds.map(read, num_parallel_calls=self._parallel, deterministic=True)

    def _tfds_records(self, epoch: int, skip_examples: int):
        import tensorflow_datasets as tfds

        tf = tensorflow()
        seed = epoch_seed(self.seed, epoch)
        read_config = tfds.ReadConfig(shuffle_seed=seed, interleave_cycle_length=4)
        features = self._builder.info.features
        decoders = {k: tfds.decode.SkipDecoding() for k in ("label", "inst", "image") if k in features}
        ds = self._builder.as_dataset(split=self._subsplit, shuffle_files=self.train,
                                      read_config=read_config, decoders=decoders)
        if self.train:
            ds = ds.shuffle(self.data_cfg.tfds_shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
            ds = ds.take(self.steps_per_epoch * self.batch)
        ds = ds.skip(skip_examples)
        where = f"TFDS {self.data_cfg.tfds_name}/{self.split}"

        def to_record(ex):
            name = ex["name"]
            return {
                "name": name,
                "label": ex.get("label", tf.constant(b"")),
                "inst": ex["inst"] if "inst" in ex else tf.constant(b""),
                "image": ex["image"],
                "label_file": tf.strings.join([where, "[", name, "].label"]),
                "inst_file": tf.strings.join([where, "[", name, "].inst"]),
                "image_file": tf.strings.join([where, "[", name, "].image"]),
            }

        return ds.map(to_record, num_parallel_calls=self._parallel, deterministic=True)

    @property
    def _parallel(self):
        n = self.data_cfg.num_parallel_calls
        return tensorflow().data.AUTOTUNE if n is None or n < 0 else n

    # ----- decoding --------------------------------------------------------
    def params(self, name, width: int, height: int, epoch: int) -> transforms.TransformParams:
        """An example's random crop and flip: a function of (seed, epoch, name) and its size."""
        data = self.data_cfg
        rng = np.random.default_rng([self.seed, epoch, _name_key(name.encode() if isinstance(name, str) else name)])
        return transforms.get_params(rng, width, height, data.resize_or_crop, data.load_size, data.fine_size)

    def process(self, record: dict, epoch: int):
        """Decode, validate and transform one record (numpy in, numpy out): (label ids in the batch's
        dtype or the label image's uint8 levels, uint16 instance ids or None, the photo's levels)."""
        data = self.data_cfg
        text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in record.items() if k.endswith("_file")}
        rec = dict(record, **text)
        label, inst, photo = decode.decode_example(rec, data.label_nc, data.use_instance and not self._ab,
                                                   self._ab, channels=self.channels, bit_depth=self.bit_depth,
                                                   unknown_label=self.maps.unknown_label, input_nc=data.input_nc)
        params = self.params(record["name"], *photo.size, epoch)
        label, inst, image = transforms.transform_example(label, inst, photo, params, data, self.divisor,
                                                          self.train, rec["image_file"])
        if getattr(self, "output_size", None) is not None:  # set once the first example is probed
            self._check_size(image.shape[1], image.shape[0], rec["image_file"], self.output_size)
        if data.label_nc:
            label = label.astype(self.label_dtype)
        if inst is not None:
            prepared.check_instance_ids(inst, rec["inst_file"])
            inst = inst.astype(np.uint16)
        return label, inst, image

    def _check_size(self, w: int, h: int, where: str, expected):
        if (w, h) != tuple(expected):
            data = self.data_cfg
            raise DataError(
                f"{where}: becomes {w}x{h} after '{data.resize_or_crop}', but the first example of "
                f"{self.description} became {expected[0]}x{expected[1]}; examples in a batch must match. Use "
                "resize_and_crop or scale_width_and_crop, or give all images one aspect ratio."
            )

    def _probe_output_size(self):
        """(w, h) of the first example after transforms: every example must match it."""
        if self._prepared is not None:
            return self._prepared_sizes()
        first = next(iter(self._records_for_epoch(0, 0).take(1)), None)
        if first is None:
            raise DataError(f"{self.description}: no examples.")
        record = {k: v.numpy() for k, v in first.items()}
        image = self.process(record, 0)[2]
        return image.shape[1], image.shape[0]

    def _prepared_sizes(self):
        """A prepared split's output size, every example's checked (their sizes are in the manifest)."""
        data = self.data_cfg
        if not self.source.examples:
            raise DataError(f"{self.description}: no examples.")
        size, self._crops = None, False
        for ex in self.source.examples:
            window = transforms.crop_window(*ex.size, transforms.TransformParams(0, 0, False), data.resize_or_crop,
                                            data.fine_size, ex.image)
            out = tuple(ex.size if window is None else window[2:])
            transforms.check_divisible(*out, self.divisor, data.resize_or_crop, ex.image)
            size = size or out
            self._check_size(*out, ex.image, size)
            self._crops = self._crops or window is not None
        return size

    def _decode_map(self, epoch: int):
        """Record -> example through `process` (Pillow, in tf.numpy_function)."""
        tf = tensorflow()
        data = self.data_cfg
        w, h = self.output_size
        keys = ("label", "inst", "image", "label_file", "inst_file", "image_file", "name")
        with_inst = data.use_instance and not self._ab
        label_type = tf.as_dtype(self.label_dtype if data.label_nc else np.uint8)

        def py(*values):
            label, inst, image = self.process(dict(zip(keys, values)), epoch)
            return label, (np.zeros((0, 0), np.uint16) if inst is None else inst), image

        def fn(r):
            label, inst, image = tf.numpy_function(py, [r[k] for k in keys],
                                                   [label_type, tf.uint16, tf.as_dtype(self.image_dtype)],
                                                   stateful=False)
            out = {"name": r["name"], "image": tf.ensure_shape(image, [h, w, self.channels])}
            if data.label_nc:
                out["label_ids"] = tf.ensure_shape(label, [h, w])
            else:
                out["label"] = tf.ensure_shape(label, [h, w, data.input_nc])
            if with_inst:
                out["inst"] = tf.ensure_shape(inst, [h, w])
            return out

        return fn

    def _prepared_map(self):
        """Prepared record -> example with TensorFlow ops only: PNG decode, crop, flip (no Python
        per example, so tf.data's threads run it in parallel)."""
        tf = tensorflow()
        data = self.data_cfg
        w, h = self.output_size
        crops = self._crops
        flips = self.train and not data.no_flip

        def png(path, channels, dtype):
            return tf.io.decode_png(tf.io.read_file(path), channels=channels, dtype=dtype)

        def place(image, r):
            if crops:
                image = image[r["crop_y"]:r["crop_y"] + h, r["crop_x"]:r["crop_x"] + w]
            if flips:
                image = tf.cond(r["flip"], lambda: tf.reverse(image, axis=[1]), lambda: image)
            return image

        def fn(r):
            image = place(png(r["image_file"], self.channels, tf.as_dtype(self.image_dtype)), r)
            out = {"name": r["name"], "image": tf.ensure_shape(image, [h, w, self.channels])}
            if data.label_nc:
                label = place(png(r["label_file"], 1, tf.as_dtype(self.label_dtype)), r)
                out["label_ids"] = tf.ensure_shape(label[..., 0], [h, w])
            else:
                label = place(png(r["label_file"], data.input_nc, tf.uint8), r)
                out["label"] = tf.ensure_shape(label, [h, w, data.input_nc])
            if data.use_instance:
                inst = place(png(r["inst_file"], 1, tf.uint16), r)
                out["inst"] = tf.ensure_shape(inst[..., 0], [h, w])
            return out

        return fn

    def epoch_dataset(self, epoch: int, skip_batches: int = 0):
        """Batches of one epoch for this process, starting after `skip_batches` (a tf.data.Dataset)."""
        tf = tensorflow()
        ds = self._records_for_epoch(epoch, skip_batches * self.batch)
        make = self._prepared_map() if self._prepared is not None else self._decode_map(epoch)
        ds = ds.map(make, num_parallel_calls=self._parallel, deterministic=True)
        ds = ds.batch(self.batch, drop_remainder=self.train)
        options = tf.data.Options()
        options.deterministic = True
        n = self.data_cfg.num_parallel_calls
        options.threading.private_threadpool_size = n if n and n > 0 else max(2, os.cpu_count() or 2)
        return ds.with_options(options).prefetch(self.data_cfg.prefetch)

    def iterate(self, start_step: int = 0, num_epochs=None):
        """Numpy batches from global step `start_step` on, over `num_epochs` epochs (None: forever)."""
        tf = tensorflow()
        steps = self.steps_per_epoch
        if steps == 0:
            raise DataError(f"{self.description}: no complete batch of {self.batch} per process.")
        epoch, skip = divmod(start_step, steps)
        while num_epochs is None or epoch < num_epochs:
            iterator = self.epoch_dataset(epoch, skip).as_numpy_iterator()
            while True:
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                except tf.errors.OpError as e:
                    raise _as_data_error(e) from None
                yield batch
            epoch, skip = epoch + 1, 0


def _as_data_error(error: Exception) -> Exception:
    """Our DataError's message from inside a tf.numpy_function, else the TF error itself."""
    match = _DATA_ERROR.search(str(error))
    if match:
        return DataError(match.group(1).strip())
    return error
