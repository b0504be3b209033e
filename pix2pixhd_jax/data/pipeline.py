"""The tf.data input pipeline: host batches exactly as the reference feeds its model.

Each batch is a dict of numpy arrays:
  label      (B, H, W, label_nc) float32 one-hot, or (B, H, W, input_nc) in [-1, 1] when label_nc == 0
  label_ids  (B, H, W) int32 label ids (label_nc > 0)
  inst       (B, H, W) int32 instance ids (data.use_instance), for the encoder's pooling
  boundary   (B, H, W, 1) float32 instance boundary map (data.use_instance)
  image      (B, H, W, output_nc) float32 photo in [-1, 1] (8- or 16-bit levels: data.image_bit_depth)
  name       (B,) bytes, the examples' names

Order: an epoch's order depends only on (seed, epoch), and each example's crop
and flip only on (seed, epoch, name), so training resumes at an exact step by
building the pipeline from that step, without replaying it. Each process of a
multi-host run reads its own disjoint part of every global batch.

TensorFlow is imported when a pipeline is first built (`_tensorflow`), not when this module
is: the training, evaluation and encoding modules import this one at their top and still
import where TensorFlow is not installed (the accelerator images have none).
"""

import math
import os
import re
import zlib

import numpy as np

from pix2pixhd_jax.data import decode, readers, transforms
from pix2pixhd_jax.errors import DataError
from pix2pixhd_jax.models.pix2pixhd import instance_boundaries, size_divisor

_DATA_ERROR = re.compile(r"DataError: (.*?)(?:\n|$)", re.DOTALL)


def _tensorflow():
    """TensorFlow, imported on first use, with the GPUs hidden from it (JAX owns the
    accelerators; TF only reads and decodes on the host)."""
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
      one_hot: also yield the one-hot `label`; False leaves it to the device.
    """

    def __init__(self, config, split="train", *, train=None, batch_size=None, process_index=0,
                 process_count=1, one_hot=True, seed=None):
        self.data_cfg = data = config.data
        self.split = split
        self.train = split == "train" if train is None else train
        self.seed = config.seed if seed is None else seed
        self.one_hot = one_hot
        self.process_index, self.process_count = process_index, process_count
        self.divisor = size_divisor(config.model)
        transforms.check_mode(data.resize_or_crop)
        self.channels, self.bit_depth = decode.photo_format(data)
        self.unknown_label = decode.unknown_label_of(data)
        if data.label_nc < 0:
            raise DataError(f"data.label_nc={data.label_nc} must be >= 0 (0 = RGB label images).")
        self.global_batch = config.train.batch_size if batch_size is None else batch_size
        if self.global_batch % process_count:
            raise DataError(
                f"batch size {self.global_batch} is not divisible by the {process_count} processes; "
                "choose a global batch size that is a multiple of the process count."
            )
        self.batch = self.global_batch // process_count
        self._tfds = data.dataset_format == "tfds"
        if self._tfds:
            self._init_tfds()
        else:
            self.source = readers.read_source(data, split)
            if data.max_dataset_size > 0:
                self.source = readers.Source(self.source.description,
                                             self.source.examples[: data.max_dataset_size],
                                             self.source.ab_direction)
            self.num_examples = len(self.source)
            self._ab = self.source.ab_direction
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
        """Encoded records of this process for one epoch, in order (a tf.data.Dataset)."""
        tf = _tensorflow()
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
        ds = tf.data.Dataset.from_tensor_slices(columns)

        def read(r):
            def maybe_read(path):
                return tf.cond(tf.strings.length(path) > 0, lambda: tf.io.read_file(path), lambda: tf.constant(b""))
            return dict(r, label=maybe_read(r["label_file"]), inst=maybe_read(r["inst_file"]),
                        image=tf.io.read_file(r["image_file"]))

        return ds.map(read, num_parallel_calls=self._parallel, deterministic=True)

    def _tfds_records(self, epoch: int, skip_examples: int):
        import tensorflow_datasets as tfds

        tf = _tensorflow()
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
        return _tensorflow().data.AUTOTUNE if n is None or n < 0 else n

    # ----- decoding --------------------------------------------------------
    def process(self, record: dict, epoch: int):
        """Decode, validate and transform one record (numpy in, numpy out)."""
        data = self.data_cfg
        text = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in record.items() if k.endswith("_file")}
        rec = dict(record, **text)
        label, inst, photo = decode.decode_example(rec, data.label_nc, data.use_instance and not self._ab,
                                                   self._ab, channels=self.channels, bit_depth=self.bit_depth,
                                                   unknown_label=self.unknown_label, input_nc=data.input_nc)
        w, h = photo.size
        rng = np.random.default_rng([self.seed, epoch, _name_key(record["name"])])
        params = transforms.get_params(rng, w, h, data.resize_or_crop, data.load_size, data.fine_size)
        label, inst, image = transforms.transform_example(label, inst, photo, params, data, self.divisor,
                                                          self.train, rec["image_file"])
        expected = getattr(self, "output_size", None)
        if expected is not None and image.shape[:2] != expected[::-1]:
            raise DataError(
                f"{rec['image_file']}: becomes {image.shape[1]}x{image.shape[0]} after "
                f"'{data.resize_or_crop}', but the first example of {self.description} became "
                f"{expected[0]}x{expected[1]}; examples in a batch must match. Use "
                "resize_and_crop or scale_width_and_crop, or give all images one aspect ratio."
            )
        if inst is None:
            inst = np.zeros((0, 0), np.int32)
            boundary = np.zeros((0, 0, 1), np.float32)
        else:
            boundary = instance_boundaries(inst)[..., None]
        return label, inst, boundary, image

    def _probe_output_size(self):
        """(w, h) of the first example after transforms: every example must match it."""
        first = next(iter(self._records_for_epoch(0, 0).take(1)), None)
        if first is None:
            raise DataError(f"{self.description}: no examples.")
        record = {k: v.numpy() for k, v in first.items()}
        _, _, _, image = self.process(record, 0)
        return image.shape[1], image.shape[0]

    def _decode_map(self, epoch: int):
        tf = _tensorflow()
        data = self.data_cfg
        w, h = self.output_size
        rgb_label = data.label_nc == 0
        keys = ("label", "inst", "image", "label_file", "inst_file", "image_file", "name")

        def py(*values):
            label, inst, boundary, image = self.process(dict(zip(keys, values)), epoch)
            return (label.astype(np.float32 if rgb_label else np.int32), inst, boundary, image)

        def fn(r):
            label, inst, boundary, image = tf.numpy_function(
                py, [r[k] for k in keys],
                [tf.float32 if rgb_label else tf.int32, tf.int32, tf.float32, tf.float32],
                stateful=False)
            out = {"name": r["name"], "image": tf.ensure_shape(image, [h, w, self.channels])}
            if rgb_label:
                out["label"] = tf.ensure_shape(label, [h, w, data.input_nc])
            else:
                out["label_ids"] = tf.ensure_shape(label, [h, w])
            if data.use_instance and not self._ab:
                out["inst"] = tf.ensure_shape(inst, [h, w])
                out["boundary"] = tf.ensure_shape(boundary, [h, w, 1])
            return out

        return fn

    def epoch_dataset(self, epoch: int, skip_batches: int = 0):
        """Batches of one epoch for this process, starting after `skip_batches` (a tf.data.Dataset)."""
        tf = _tensorflow()
        ds = self._records_for_epoch(epoch, skip_batches * self.batch)
        ds = ds.map(self._decode_map(epoch), num_parallel_calls=self._parallel, deterministic=True)
        ds = ds.batch(self.batch, drop_remainder=self.train)
        if self.one_hot and self.data_cfg.label_nc > 0:
            label_nc = self.data_cfg.label_nc
            ds = ds.map(lambda b: dict(b, label=tf.one_hot(b["label_ids"], label_nc, dtype=tf.float32)),
                        num_parallel_calls=self._parallel, deterministic=True)
        options = tf.data.Options()
        options.deterministic = True
        options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
        return ds.with_options(options).prefetch(self.data_cfg.prefetch)

    def iterate(self, start_step: int = 0, num_epochs=None):
        """Numpy batches from global step `start_step` on, over `num_epochs` epochs (None: forever)."""
        tf = _tensorflow()
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
