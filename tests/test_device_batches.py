"""The loop's batches go to the devices ahead of their step (runtime/loop.py device_batches)."""

import jax
import numpy as np

from pix2pixhd_jax.runtime import loop, sharding


def host_batches(events, n=5):
    for i in range(n):
        events.append(("made", i))
        yield {"x": np.full((2, 3), i, np.float32), "name": np.array([b"a", b"b"], object)}


def test_each_batch_is_copied_two_steps_before_it_is_used():
    mesh = sharding.make_mesh(jax.devices()[:1])
    events = []
    for i, (host, batch) in enumerate(loop.device_batches(host_batches(events), mesh, {"x"}, depth=2)):
        events.append(("used", i))
        assert set(batch) == {"x"} and isinstance(batch["x"], jax.Array)
        assert float(batch["x"][0, 0]) == i and host["x"][0, 0] == i  # each host batch with its copy, in order
    assert [e for e in events if e[0] == "used"] == [("used", i) for i in range(5)]
    for i in range(3):  # batch i + 2 was on its way to the device when step i started
        assert events.index(("made", i + 2)) < events.index(("used", i))


def test_depth_zero_copies_each_batch_when_it_is_used():
    mesh = sharding.make_mesh(jax.devices()[:1])
    events = []
    for i, _ in enumerate(loop.device_batches(host_batches(events, 3), mesh, {"x"}, depth=0)):
        events.append(("used", i))
    assert events == [("made", 0), ("used", 0), ("made", 1), ("used", 1), ("made", 2), ("used", 2)]


def test_arrays_already_on_the_devices_pass_as_they_are():
    mesh = sharding.make_mesh(jax.devices()[:1])
    resident = jax.device_put(np.ones((2, 3), np.float32), sharding.batch_sharding(mesh))
    assert sharding.global_batch({"x": resident}, mesh)["x"] is resident
