"""Object-level editing (pix2pixhd_jax.inference.editing): Scene's edits without a model, then the
Editor with a random tiny model (one 40x24 shape, compiled once)."""

import numpy as np
import pytest

from conftest import make_model_workdir
from pix2pixhd_jax.errors import EditError
from pix2pixhd_jax.errors import UserError
from pix2pixhd_jax.inference.editing import CITYSCAPES_THINGS, Editor, Scene, brush_mask

# One xdist worker builds the synthesizer once for all the tests here.
pytestmark = pytest.mark.xdist_group("editing")

H, W = 24, 40
ROAD, SKY, CAR, PERSON = 7, 23, 26, 24
CAR_A, CAR_B, PERSON_A = 26000, 26001, 24000


def _box(y0, y1, x0, x1):
    m = np.zeros((H, W), bool)
    m[y0:y1, x0:x1] = True
    return m


BOXES = {CAR_A: _box(14, 20, 3, 11), CAR_B: _box(2, 5, 26, 33), PERSON_A: _box(12, 22, 30, 34)}
SKY_BOX = _box(0, 8, 20, 40)  # car B sits in the sky; road is the scene's majority class


def _arrays():
    label, inst = np.full((H, W), ROAD, np.int32), np.full((H, W), ROAD, np.int32)
    label[SKY_BOX], inst[SKY_BOX] = SKY, SKY
    for i, m in BOXES.items():
        label[m], inst[m] = i // 1000, i
    return label, inst


@pytest.fixture
def scene():
    return Scene.from_arrays(*_arrays())


def _unchanged_outside(before, after, mask):
    np.testing.assert_array_equal(after.label[~mask], before.label[~mask])
    np.testing.assert_array_equal(after.inst[~mask], before.inst[~mask])


# ----- Scene -----------------------------------------------------------------------------------
def test_from_arrays_validates_and_freezes():
    label, inst = _arrays()
    with pytest.raises(EditError, match=r"\(24, 40, 3\)"):
        Scene.from_arrays(np.stack([label] * 3, -1))
    with pytest.raises(EditError, match=r"\(24, 39\).*\(24, 40\)"):
        Scene.from_arrays(label, inst[:, :-1])
    assert issubclass(EditError, UserError)
    s = Scene.from_arrays(label)
    np.testing.assert_array_equal(s.inst, label)  # no instance map: one region per class
    s = Scene.from_arrays(label, inst)
    assert s.label.dtype == np.int32 and s.inst.dtype == np.int32
    with pytest.raises(ValueError):
        s.label[0, 0] = 1
    with pytest.raises(ValueError):
        s.inst[0, 0] = 1
    label[0, 0] = 99  # the scene holds its own copy
    assert s.label[0, 0] == ROAD
    assert s.things >= CITYSCAPES_THINGS


def test_instances_and_queries(scene):
    label, inst = _arrays()
    rows = scene.instances()
    assert [r[0] for r in rows] == sorted(np.unique(inst).tolist())
    for i, cls, count in rows:
        assert count == (inst == i).sum() and np.all(label[inst == i] == cls)
    counts = {i: c for i, _, c in rows}
    assert counts[CAR_A] == 6 * 8 and counts[CAR_B] == 3 * 7 and counts[PERSON_A] == 10 * 4
    assert {i: cls for i, cls, _ in rows}[SKY] == SKY
    np.testing.assert_array_equal(scene.mask(CAR_B), BOXES[CAR_B])
    assert scene.instance_at(15, 4) == CAR_A and scene.instance_at(0, 0) == ROAD
    with pytest.raises(EditError, match="outside"):
        scene.instance_at(H, 0)
    with pytest.raises(EditError, match="26005"):
        scene.mask(26005)


def test_new_instance_ids(scene):
    assert scene.new_instance_id(CAR) == 26002  # 26000 and 26001 taken
    assert scene.new_instance_id(PERSON) == 24001
    assert scene.new_instance_id(33) == 33000  # a thing class not in the scene yet
    assert scene.new_instance_id(ROAD) == ROAD  # stuff: the class id itself
    assert scene.new_instance_id(11) == 11
    label, inst = _arrays()
    inst[BOXES[CAR_A]] = 26002  # a hole at k=0: the smallest free k
    assert Scene.from_arrays(label, inst).new_instance_id(CAR) == 26000
    # A class the map splits into objects counts as a thing even outside Cityscapes' list.
    label[BOXES[CAR_A]], inst[BOXES[CAR_A]] = 5, 5000
    s = Scene.from_arrays(label, inst)
    assert 5 in s.things and 5 not in CITYSCAPES_THINGS
    assert s.new_instance_id(5) == 5001
    assert Scene.from_arrays(label, inst, things={5}).new_instance_id(CAR) == CAR


def test_relabel(scene):
    scene = scene.set_style(CAR_A, 2).set_style(PERSON_A, [0.5, 0.5, 0.5])
    mask = BOXES[CAR_A]
    out, new_id = scene.relabel(CAR_A, PERSON)
    assert new_id == 24001
    assert np.all(out.label[mask] == PERSON) and np.all(out.inst[mask] == new_id)
    _unchanged_outside(scene, out, mask)
    assert CAR_A not in out.inst and CAR_A not in out.style_map and new_id not in out.style_map
    np.testing.assert_array_equal(out.style_map[PERSON_A], [0.5, 0.5, 0.5])
    # To a stuff class: the object merges with that class's region.
    out, new_id = scene.relabel(CAR_A, ROAD)
    assert new_id == ROAD and np.all(out.inst[mask] == ROAD) and np.all(out.label[mask] == ROAD)
    _unchanged_outside(scene, out, mask)
    # The original scene is untouched.
    np.testing.assert_array_equal(scene.inst, _arrays()[1])
    assert scene.style_map[CAR_A] == 2
    with pytest.raises(EditError):
        scene.relabel(26005, PERSON)


def test_remove_fills_with_the_class_around(scene):
    label, _ = _arrays()
    assert np.bincount(label.reshape(-1)).argmax() == ROAD  # the scene's majority is road ...
    mask = BOXES[CAR_B]
    scene = scene.set_style(CAR_B, 1).set_style(CAR_A, 0)
    out = scene.remove(CAR_B)  # ... but car B sits in the sky
    assert np.all(out.label[mask] == SKY) and np.all(out.inst[mask] == SKY)
    _unchanged_outside(scene, out, mask)
    assert CAR_B not in out.inst and out.style_map == {CAR_A: 0}
    out = scene.remove(CAR_A)
    assert np.all(out.label[BOXES[CAR_A]] == ROAD) and np.all(out.inst[BOXES[CAR_A]] == ROAD)
    out = scene.remove(CAR_B, fill_label=ROAD)
    assert np.all(out.label[mask] == ROAD) and np.all(out.inst[mask] == ROAD)
    _unchanged_outside(scene, out, mask)
    out = scene.remove(CAR_B, fill_label=PERSON)  # a thing fill is a new object
    assert np.all(out.inst[mask] == 24001)
    with pytest.raises(EditError, match="26005"):
        scene.remove(26005)
    whole = Scene.from_arrays(np.full((4, 4), CAR), np.full((4, 4), CAR_A))
    with pytest.raises(EditError, match="fill_label"):
        whole.remove(CAR_A)
    assert np.all(whole.remove(CAR_A, fill_label=ROAD).label == ROAD)


def test_paste_and_paint(scene):
    mask = _box(9, 12, 12, 18)  # over road
    out, new_id = scene.paste(mask, CAR)
    assert new_id == 26002
    assert np.all(out.label[mask] == CAR) and np.all(out.inst[mask] == new_id)
    _unchanged_outside(scene, out, mask)
    out2, id2 = out.paste(_box(20, 23, 14, 20), CAR, style=[1, 2, 3])
    assert id2 == 26003
    np.testing.assert_array_equal(out2.style_map[id2], [1, 2, 3])
    # Over part of an existing object: both stay, the new one on top.
    over = _box(16, 22, 8, 14)
    out, new_id = scene.paste(over, PERSON, style=4)
    assert new_id == 24001 and out.style_map == {new_id: 4}
    assert np.all(out.inst[over] == new_id) and np.all(out.inst[BOXES[CAR_A] & ~over] == CAR_A)
    # Painting stuff merges with its region; painting a thing makes one object.
    out = scene.paint(mask, SKY)
    assert np.all(out.inst[mask] == SKY) and np.all(out.label[mask] == SKY)
    _unchanged_outside(scene, out, mask)
    out = scene.paint(mask, PERSON)
    assert np.all(out.inst[mask] == 24001)
    with pytest.raises(EditError, match="empty"):
        scene.paste(np.zeros((H, W), bool), CAR)
    with pytest.raises(EditError, match=r"\(24, 39\)"):
        scene.paste(np.ones((H, W - 1), bool), CAR)
    with pytest.raises(EditError, match="empty"):
        scene.paint(np.zeros((H, W), bool), ROAD)


def test_pasting_over_a_whole_object_drops_its_style(scene):
    scene = scene.set_style(CAR_A, 3).set_style(CAR_B, 1)
    out, covering = scene.paste(_box(13, 21, 2, 12), CAR)  # covers car A entirely
    assert covering == 26002 and CAR_A not in out.inst
    assert out.style_map == {CAR_B: 1}
    out, reused = out.paste(_box(21, 23, 20, 25), CAR)  # a new car takes the free id 26000 ...
    assert reused == CAR_A and CAR_A not in out.style_map  # ... and a random style, not car A's


def test_set_style_and_style_map(scene):
    s = scene.set_style(CAR_A, 3).set_style(CAR_B, [0.5, -1, 2]).set_style(PERSON_A, np.int64(2))
    styles = s.style_map
    assert styles[CAR_A] == 3 and type(styles[CAR_A]) is int
    assert type(styles[PERSON_A]) is int and styles[PERSON_A] == 2
    assert styles[CAR_B].dtype == np.float32
    np.testing.assert_array_equal(styles[CAR_B], [0.5, -1, 2])
    again = Scene.from_arrays(s.label, s.inst, s.style_map, s.things)  # round trip
    assert again.styles == s.styles
    s2 = s.set_style(CAR_A, None)
    assert CAR_A not in s2.style_map and set(s2.style_map) == {CAR_B, PERSON_A}
    assert s.set_style(CAR_A, 5).style_map[CAR_A] == 5 and s.style_map[CAR_A] == 3
    assert scene.style_map == {}
    assert scene.set_style(ROAD, None).style_map == {}
    with pytest.raises(EditError, match="26005"):
        scene.set_style(26005, 1)


def test_brush_mask():
    one = brush_mask((H, W), [(10, 5)], 2)  # one dab: a disc of radius 2 around x=10, y=5
    ys, xs = np.nonzero(one)
    assert one.sum() == 13 and set(zip(xs.tolist(), ys.tolist())) >= {(8, 5), (12, 5), (10, 3), (10, 7)}
    assert not one[5, 13] and not one[3, 9]
    line = brush_mask((H, W), [(2, 10), (30, 10)], 1)  # a horizontal capsule 3 pixels tall
    np.testing.assert_array_equal(np.nonzero(line.any(1))[0], [9, 10, 11])
    assert line[10, 1:32].all() and not line[10, 0] and not line[10, 32] and line[9, 2:31].all()
    np.testing.assert_array_equal(brush_mask((H, W), [(30, 10), (2, 10)], 1), line)  # direction does not matter
    edge = brush_mask((H, W), [(0, 0), (W + 5, 0)], 3)  # cut at the borders
    assert edge[:4].all(axis=0).all() and not edge[4:].any()
    assert not brush_mask((H, W), [(-10, -10)], 2).any()
    np.testing.assert_array_equal(brush_mask((H, W), [(4, 4), (4, 4)], 2), brush_mask((H, W), [(4, 4)], 2))
    for points, radius, match in (([], 2, "no points"), ([(1, float("nan"))], 2, "finite"), ([(1, 1)], 0, "radius")):
        with pytest.raises(EditError, match=match):
            brush_mask((H, W), points, radius)


def test_fill_mask_is_the_connected_piece_under_the_pixel():
    label, inst = _arrays()
    scene = Scene.from_arrays(label, inst)
    np.testing.assert_array_equal(scene.fill_mask(15, 4), BOXES[CAR_A])  # an object: itself
    np.testing.assert_array_equal(scene.fill_mask(3, 25), SKY_BOX & ~BOXES[CAR_B])
    road = scene.fill_mask(23, 0)
    np.testing.assert_array_equal(road, inst == ROAD)  # connected around the objects
    # Two separate pieces of one stuff class: only the touched one.
    label[:, 18:20], inst[:, 18:20] = SKY, SKY  # a sky column cuts the road in two
    scene = Scene.from_arrays(label, inst)
    left = scene.fill_mask(23, 0)
    assert left[23, 17] and not left[23, 25] and not left[:, 18:].any()
    with pytest.raises(EditError, match="outside"):
        scene.fill_mask(0, W)


# ----- Editor ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    config, variables = make_model_workdir(tmp_path_factory.mktemp("model"))
    return Synthesizer(config, variables)


def test_editor_edits_and_undo(synth, scene):
    editor = Editor(synth, scene, seed=0)
    photos = [editor.render()]
    edits = [lambda: editor.remove(CAR_B), lambda: editor.paste(_box(9, 12, 12, 18), CAR),
             lambda: editor.relabel(PERSON_A, CAR), lambda: editor.paint(_box(22, 24, 0, 40), SKY),
             lambda: editor.set_style(CAR_A, [0.3, -0.2, 0.9])]
    for k, edit in enumerate(edits):
        photo = edit()
        assert photo.shape == (H, W, 3) and photo.dtype == np.uint8
        assert len(editor.history) == k + 2
        assert not np.array_equal(photo, photos[-1])
        np.testing.assert_array_equal(photo, editor.render())
        photos.append(photo)
    final = editor.scene
    assert np.all(final.label[BOXES[CAR_B]] == SKY) and np.all(final.label[BOXES[PERSON_A]] == CAR)
    assert np.all(final.inst[_box(9, 12, 12, 18)] == CAR_B)  # the pasted car reuses car B's freed id
    assert PERSON_A not in final.inst and np.all(final.inst[BOXES[PERSON_A]] == 26002)
    np.testing.assert_array_equal(editor.scene.style_map[CAR_A], np.float32([0.3, -0.2, 0.9]))
    for k in range(len(edits), 0, -1):
        np.testing.assert_array_equal(editor.undo(), photos[k - 1])
        assert len(editor.history) == k
    np.testing.assert_array_equal(editor.undo(), photos[0])  # nothing left to undo
    assert len(editor.history) == 1 and editor.scene is scene
    # A failed edit leaves the history alone.
    with pytest.raises(UserError, match="label id 40"):
        editor.paint(_box(0, 2, 0, 2), 40)
    with pytest.raises(EditError):
        editor.remove(26005)
    assert len(editor.history) == 1


def test_editor_set_style_changes_mostly_that_object(synth, scene):
    mask = BOXES[CAR_A]
    editor = Editor(synth, scene.set_style(CAR_A, [-1.0, -1.0, -1.0]), seed=0)
    before = editor.render()
    after = editor.set_style(CAR_A, [1.0, 1.0, 1.0])
    diff = np.abs(after.astype(float) - before.astype(float)).mean(-1)
    assert diff[mask].mean() > 0
    assert diff[mask].mean() > diff[~mask].mean()
    # Another object's style is not redrawn by the edit.
    np.testing.assert_array_equal(editor.undo(), before)


def test_editor_brush_fill_and_history_cap(synth, scene):
    editor = Editor(synth, scene, seed=0, max_history=3)
    editor.brush([(12, 9), (17, 9)], 1.5, CAR)
    assert np.all(editor.scene.label[brush_mask((H, W), [(12, 9), (17, 9)], 1.5)] == CAR)
    assert editor.scene.inst[9, 14] == CAR_B + 1
    editor.fill(15, 4, PERSON)  # car A becomes one new person
    assert np.all(editor.scene.label[BOXES[CAR_A]] == PERSON) and editor.scene.inst[15, 4] == 24001
    before = editor.scene
    road = before.inst == ROAD
    photo = editor.fill(23, 0, SKY)  # the road turns to sky, nothing else changes
    assert np.all(editor.scene.label[road] == SKY)
    np.testing.assert_array_equal(editor.scene.label[~road], before.label[~road])
    assert len(editor.history) == 3 and editor.history[0] is not scene  # the oldest dropped
    np.testing.assert_array_equal(photo, editor.render())
    editor.undo(), editor.undo(), editor.undo()
    assert len(editor.history) == 1 and editor.scene.label[15, 4] == CAR  # back to the oldest kept
    with pytest.raises(EditError, match="max_history"):
        Editor(synth, scene, max_history=0)
