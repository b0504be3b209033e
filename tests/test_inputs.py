import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_test_config
from pix2pixhd_jax.models.pix2pixhd import instance_boundaries, one_hot_labels, size_divisor


def test_boundaries_mark_both_sides_of_every_4_neighbour_difference():
    inst = np.array([
        [1, 1, 2, 2],
        [1, 1, 2, 2],
        [3, 3, 3, 3],
    ])
    expected = np.array([
        [0, 1, 1, 0],
        [1, 1, 1, 1],
        [1, 1, 1, 1],
    ], np.float32)
    np.testing.assert_array_equal(instance_boundaries(inst), expected)


def test_boundaries_ignore_diagonal_neighbours_and_constant_maps():
    assert instance_boundaries(np.full((5, 7), 26001)).sum() == 0
    diagonal = np.array([[1, 2], [2, 1]])  # every pixel differs from its 4-neighbours
    assert instance_boundaries(diagonal).sum() == 4
    single = np.zeros((5, 5), np.int32)
    single[2, 2] = 7
    expected = np.zeros((5, 5), np.float32)
    expected[2, 2] = expected[1, 2] = expected[3, 2] = expected[2, 1] = expected[2, 3] = 1
    np.testing.assert_array_equal(instance_boundaries(single), expected)


def test_boundaries_touching_instances_of_one_class_are_separated():
    # Two cars side by side: the label map has no edge there, the instance map does.
    inst = np.full((4, 6), 26000)
    inst[:, 3:] = 26001
    b = instance_boundaries(inst)
    np.testing.assert_array_equal(b[:, 2:4], 1)
    assert b[:, [0, 1, 4, 5]].sum() == 0


def test_boundaries_batched_and_in_jax_match_numpy():
    rng = np.random.default_rng(0)
    inst = rng.integers(0, 3, size=(2, 9, 11))
    ref = np.stack([instance_boundaries(x) for x in inst])
    np.testing.assert_array_equal(instance_boundaries(inst), ref)
    np.testing.assert_array_equal(np.asarray(instance_boundaries(jnp.asarray(inst), xp=jnp)), ref)


def test_one_hot_labels():
    label = np.array([[0, 3], [34, 3]])
    oh = one_hot_labels(label, 35)
    assert oh.shape == (2, 2, 35) and oh.dtype == np.float32
    np.testing.assert_array_equal(oh.sum(-1), 1)
    np.testing.assert_array_equal(oh.argmax(-1), label)
    np.testing.assert_array_equal(np.asarray(one_hot_labels(jnp.asarray(label), 35, xp=jnp)), oh)


@pytest.mark.parametrize("overrides, expected", [
    ([], 8),  # synthetic_demo: 3 downsamplings
    (["model.n_downsample_global=4"], 16),
    (["model.netG=local", "model.n_downsample_global=4", "model.n_local_enhancers=1"], 32),
    (["model.netG=local", "model.n_downsample_global=4", "model.n_local_enhancers=2"], 64),
    (["model.netG=unet_256"], 256),
])
def test_size_divisor(overrides, expected):
    assert size_divisor(load_test_config(*overrides).model) == expected
