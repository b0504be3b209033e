"""The tf.data pipeline: batch contents, order determinism, exact resume, per-process shards."""

import numpy as np
import pytest

from conftest import load_test_config, make_aligned
from pix2pixhd_jax.data.pipeline import InputPipeline, epoch_order, process_indices
from pix2pixhd_jax.models.pix2pixhd import instance_boundaries, model_inputs


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("aligned")
    made = make_aligned(root, n=10, w=128, h=64)
    make_aligned(root, phase="test", n=3, w=128, h=64, seed=5)
    return root, {name: rest for name, *rest in made}


def make_config(root, *overrides):
    return load_test_config(f"data.dataroot={root}", "data.load_size=128", "train.batch_size=2", *overrides)


def make(root, *overrides, split="train", **kwargs):
    return InputPipeline(make_config(root, *overrides), split, **kwargs)


def names(batches):
    return [n.decode() for b in batches for n in b["name"]]


def test_batch_carries_ids_and_levels_and_the_networks_input_is_built_from_them(dataset):
    root, made = dataset
    pipe = make(root, "data.no_flip=True")
    batch = next(pipe.iterate(0))
    assert set(batch) == {"name", "label_ids", "inst", "image"}
    assert batch["label_ids"].shape == (2, 64, 128) and batch["label_ids"].dtype == np.uint8
    assert batch["inst"].shape == (2, 64, 128) and batch["inst"].dtype == np.uint16
    assert batch["image"].shape == (2, 64, 128, 3) and batch["image"].dtype == np.uint8
    # An example's bytes: a byte per id, two per instance id, three per pixel of photo.
    assert sum(v.nbytes for k, v in batch.items() if k != "name") == 2 * 64 * 128 * (1 + 2 + 3)
    inputs = model_inputs(batch, make_config(root, "data.no_flip=True"), xp=np)
    for i, name in enumerate(batch["name"]):
        label, inst, photo = made[name.decode()]
        np.testing.assert_array_equal(batch["label_ids"][i], label)
        np.testing.assert_array_equal(batch["inst"][i], inst)
        np.testing.assert_array_equal(batch["image"][i], photo)
        np.testing.assert_array_equal(inputs["label"][i, ..., :35].argmax(-1), label)
        np.testing.assert_array_equal(inputs["label"][i, ..., :35].sum(-1), 1)
        np.testing.assert_array_equal(inputs["label"][i, ..., 35], instance_boundaries(inst))
        np.testing.assert_allclose(inputs["image"][i], photo / 127.5 - 1, atol=1e-6)


def test_without_instances_there_are_no_instance_ids(dataset):
    batch = next(make(dataset[0], "data.use_instance=False").iterate(0))
    assert "inst" not in batch


def test_order_is_fixed_by_seed_and_epoch(dataset):
    root = dataset[0]
    a = names(make(root, "seed=1").iterate(0, num_epochs=2))
    b = names(make(root, "seed=1").iterate(0, num_epochs=2))
    c = names(make(root, "seed=2").iterate(0, num_epochs=2))
    assert a == b and a != c
    assert a[:10] != a[10:] and sorted(a[:10]) == sorted(a[10:])  # each epoch reshuffles, all examples
    assert sorted(a[:10]) == sorted(dataset[1])


def test_augmentation_is_fixed_by_seed(dataset):
    root = dataset[0]
    cfg = ("data.resize_or_crop=crop", "data.fine_size=64")
    a = [b["image"] for b in make(root, *cfg).iterate(0, num_epochs=1)]
    b = [b["image"] for b in make(root, *cfg).iterate(0, num_epochs=1)]
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_resume_at_any_step_continues_exactly(dataset):
    root = dataset[0]
    full = list(make(root, "data.resize_or_crop=crop", "data.fine_size=64").iterate(0, num_epochs=3))
    assert len(full) == 15
    for start in (3, 5, 7, 14):
        resumed = list(make(root, "data.resize_or_crop=crop", "data.fine_size=64").iterate(start, num_epochs=3))
        assert names(resumed) == names(full[start:])
        for x, y in zip(resumed, full[start:]):
            np.testing.assert_array_equal(x["image"], y["image"])
            np.testing.assert_array_equal(x["inst"], y["inst"])


@pytest.mark.parametrize("processes, batch", [(2, 2), (2, 4), (3, 3)])
def test_process_shards_cover_each_epoch_once(dataset, processes, batch):
    root = dataset[0]
    for epoch in range(2):
        parts = [names(make(root, f"train.batch_size={batch}", process_index=p, process_count=processes)
                       .epoch_dataset(epoch).as_numpy_iterator()) for p in range(processes)]
        steps = 10 // batch
        assert all(len(p) == steps * batch // processes for p in parts)
        seen = [n for p in parts for n in p]
        assert len(seen) == len(set(seen)) == steps * batch
        # Global batch k is the k-th slice of the epoch's order, split across processes.
        order = epoch_order(10, 0, epoch, True)
        example_names = sorted(dataset[1])
        for k in range(steps):
            global_batch = sorted(n for p in parts for n in p[k * batch // processes:(k + 1) * batch // processes])
            assert global_batch == sorted(example_names[i] for i in order[k * batch:(k + 1) * batch])


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_eval_shards_cover_every_example_exactly_once(dataset, processes):
    root = dataset[0]
    seen = []
    for p in range(processes):
        pipe = make(root, f"train.batch_size={processes}", split="test", train=False, process_index=p,
                    process_count=processes)
        part = names(pipe.iterate(0, num_epochs=1))
        assert len(part) == len(np.array_split(np.arange(3), processes)[p])
        seen += part
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 3


def test_eval_keeps_the_last_incomplete_batch_and_does_not_flip(dataset):
    root = dataset[0]
    batches = list(make(root, split="test", train=False).iterate(0, num_epochs=1))
    assert [len(b["name"]) for b in batches] == [2, 1]
    assert names(batches) == sorted(names(batches))


def test_process_indices_helper():
    order = np.arange(10)
    assert process_indices(order, 4, 0, 2).tolist() == [0, 1, 4, 5]
    assert process_indices(order, 4, 1, 2).tolist() == [2, 3, 6, 7]
    assert [len(process_indices(order, 4, p, 3, drop_remainder=False)) for p in range(3)] == [4, 3, 3]


def test_global_batch_must_split_over_processes(dataset):
    from pix2pixhd_jax.errors import DataError
    with pytest.raises(DataError, match="not divisible by the 3 processes"):
        make(dataset[0], process_index=0, process_count=3)


def test_cityscapes_samples_through_the_pipeline(cityscapes_samples):
    cfg = load_test_config(f"data.dataroot={cityscapes_samples}", "data.load_size=256", "train.batch_size=2",
                           "data.no_flip=True")
    pipe = InputPipeline(cfg, "train")
    assert pipe.output_size == (256, 128)
    batch = next(pipe.iterate(0))
    big = batch["inst"] >= 1000
    assert big.any()
    np.testing.assert_array_equal(batch["inst"][big] // 1000, batch["label_ids"][big])
    assert batch["inst"].dtype == np.uint16 and int(batch["inst"].max()) > 26000  # car ids 26xxx
