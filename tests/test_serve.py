"""The editor server's API without a browser (pix2pixhd_jax.serve): scenes, uploads and their
validation, every edit, downloads, errors, filesystem isolation, concurrency, sessions.

One random tiny model with clusters and a 2-scene 128x64 test split serves every test (one
compiled shape); the limits are shrunk so that the caps are cheap to hit.
"""

import base64
import io
import socket
import threading
import types

import numpy as np
import pytest
from PIL import Image

from pix2pixhd_jax.inference.editing import Editor, Scene, brush_mask
from pix2pixhd_jax.serve import (ApiError, EditorService, Limits, check_instances, instances_from_labels, is_loopback,
                                 list_test_scenes)
from serve_helpers import (BOXES, BUILDING, CAR, CAR_A, CAR_B, H, N_CAR_STYLES, PERSON, PERSON_A, ROAD, SKY, W,
                           RunningServer, decode_data_url, download, make_editor_workdir, png_b64, request,
                           scene_arrays)

LIMITS = Limits(max_body_bytes=200_000, max_upload_bytes=12_000, max_pixels=W * H * 2, max_side=2 * W,
                max_sessions=8, max_history=5, max_points=50, max_radius=20)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    from pix2pixhd_jax.inference.synthesis import Synthesizer

    return Synthesizer.from_workdir(make_editor_workdir(str(tmp_path_factory.mktemp("editor"))))


@pytest.fixture(scope="module")
def server(synth):
    running = RunningServer(EditorService(synth, list_test_scenes(synth.config), LIMITS))
    yield running
    running.stop()


def post(server, op, body=None, **kw):
    return request(f"{server.url}/api/{op}", body if body is not None else {}, **kw)


def ok(server, op, body):
    status, payload, _ = post(server, op, body)
    assert status == 200, payload
    return payload


def error(server, op, body, status, *fragments, **kw):
    got, payload, _ = post(server, op, body, **kw)
    assert got == status, (got, payload)
    assert set(payload) == {"error"}
    for f in fragments:
        assert f in payload["error"], payload["error"]
    return payload["error"]


def open_session(server, index=0):
    return ok(server, "open", {"index": index})


# ----- pieces ---------------------------------------------------------------------------------------
def test_helpers():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1") and is_loopback("[::1]")
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2")
    assert not is_loopback("example.com")
    label, inst = scene_arrays()
    check_instances(label.astype(np.int32), inst.astype(np.int32), "here")
    bad = inst.astype(np.int32).copy()
    bad[0, 0] = CAR_A  # a car id on a sky pixel
    with pytest.raises(ApiError, match=r"instance id 26000 at pixel \(0, 0\) lies on class 23"):
        check_instances(label.astype(np.int32), bad, "here")
    # Without an instance map each connected blob of a thing class is one object.
    two_cars = np.full((H, W), ROAD, np.int32)
    two_cars[BOXES[CAR_A]] = two_cars[BOXES[CAR_B]] = CAR
    derived = instances_from_labels(two_cars)
    assert set(np.unique(derived).tolist()) == {ROAD, 26000, 26001}
    assert len(np.unique(derived[BOXES[CAR_A]])) == 1 and derived[BOXES[CAR_A]][0] != derived[BOXES[CAR_B]][0]


def test_service_refuses_rgb_label_models(synth):
    class RGB:
        maps = types.SimpleNamespace(label_nc=0)

    from pix2pixhd_jax.errors import UserError

    with pytest.raises(UserError, match="label_nc"):
        EditorService(RGB())


# ----- page and info ---------------------------------------------------------------------------------
def test_page_and_info(server):
    status, page, headers = request(server.url + "/")
    assert status == 200 and b"editor.js" in page and headers["Content-Type"].startswith("text/html")
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    for path in ("/editor.js", "/editor.css"):
        assert request(server.url + path)[0] == 200
    status, info, _ = request(server.url + "/api/info")
    assert status == 200 and info["scenes"] == ["scene_0", "scene_1"] and info["label_nc"] == 35 and info["styles"]
    classes = info["classes"]
    assert len(classes) == 35 and classes[CAR]["name"] == "car" and classes[CAR]["thing"]
    assert classes[CAR]["color"] == "#00008e" and len(classes[CAR]["styles"]) == N_CAR_STYLES
    assert classes[PERSON]["styles"] == [] and not classes[SKY]["thing"]
    assert info["limits"]["max_pixels"] == W * H * 2


def test_open_scene_by_name_and_index(server, synth):
    state = ok(server, "open", {"scene": "scene_1"})
    assert (state["name"], state["width"], state["height"], state["edits"], state["can_undo"]) == ("scene_1", W, H, 0,
                                                                                                   False)
    label, inst = scene_arrays(1)
    np.testing.assert_array_equal(download(server.url, state["session"], "label"), label)
    np.testing.assert_array_equal(download(server.url, state["session"], "inst"), inst)
    photo = download(server.url, state["session"], "photo")
    np.testing.assert_array_equal(photo, decode_data_url(state["photo"]))
    np.testing.assert_array_equal(photo, synth.synthesize(label, inst, seed=0))
    assert decode_data_url(state["labels"]).shape == (H, W, 3)
    assert ok(server, "open", {"index": 1})["name"] == "scene_1"
    error(server, "open", {"index": 2}, 400, "field 'index'", "0..1")
    error(server, "open", {"scene": "scene_9"}, 404, "field 'scene'", "scene_0")


# ----- filesystem isolation --------------------------------------------------------------------------
@pytest.mark.parametrize("path", ["/../../etc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/editor_page/index.html",
                                  "/serve.py", "/api/download/../../../etc/passwd.png", "//etc/passwd",
                                  "/editor.js/../../../../etc/passwd"])
def test_no_request_path_reaches_the_filesystem(server, path):
    # Raw request line: urllib would normalise some of these paths away.
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
        reply = b"".join(iter(lambda: s.recv(65536), b""))
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.split()[1] in (b"404", b"400"), head
    assert b"root:" not in body and b"import" not in body


@pytest.mark.parametrize("name", ["../../etc/passwd", "/etc/passwd", "scene_0/../scene_1", "test_label/scene_0.png",
                                  "scene_0.png", ""])
def test_scene_names_are_looked_up_not_opened(server, name):
    error(server, "open", {"scene": name}, 404, "is not one of the test-split scenes")


def test_upload_name_is_only_a_label(server):
    label, inst = scene_arrays()
    state = ok(server, "upload", {"label": png_b64(label), "name": "../../etc/passwd"})
    assert "/" not in state["name"] and ".." not in state["name"]
    status, _, headers = request(f"{server.url}/api/download/photo.png?session={state['session']}")
    assert status == 200 and headers["Content-Disposition"] == f'attachment; filename="{state["name"]}_photo.png"'


# ----- uploads -----------------------------------------------------------------------------------------
def test_upload_label_and_instances(server, synth):
    label, inst = scene_arrays()
    state = ok(server, "upload", {"label": "data:image/png;base64," + png_b64(label), "inst": png_b64(inst),
                                  "name": "mine"})
    assert (state["name"], state["width"], state["height"]) == ("mine", W, H)
    np.testing.assert_array_equal(download(server.url, state["session"], "inst"), inst)
    np.testing.assert_array_equal(decode_data_url(state["photo"]), synth.synthesize(label, inst, seed=0))
    # No instance map: the car and person blobs become objects of their own.
    state = ok(server, "upload", {"label": png_b64(label)})
    derived = download(server.url, state["session"], "inst")
    assert derived[BOXES[CAR_A]][0] // 1000 == CAR and derived[BOXES[CAR_A]][0] != derived[BOXES[CAR_B]][0]
    assert derived[0, 0] == SKY
    # 16-bit label ids, and RGB with equal channels, are read as ids too.
    for encoded in (png_b64(label.astype(np.uint16)), png_b64(np.repeat(label[..., None], 3, -1))):
        state = ok(server, "upload", {"label": encoded, "inst": png_b64(inst)})
        np.testing.assert_array_equal(download(server.url, state["session"], "label"), label)


def test_uploads_are_scaled_to_the_models_test_size_and_say_so(synth):
    service = EditorService(synth, {})
    label, inst = scene_arrays()
    big_label, big_inst = (np.kron(a, np.ones((2, 2), a.dtype)) for a in (label, inst))  # 256x128
    state = service.upload({"label": png_b64(big_label), "inst": png_b64(big_inst)})
    # The model's config scales to width W (scale_width, data.load_size): as its test.py would.
    assert (state["width"], state["height"], state["scaled_from"]) == (W, H, [2 * W, 2 * H])
    scene = service.sessions[state["session"]].editor.scene
    np.testing.assert_array_equal(scene.label, synth.maps.prepare(big_label)[0])
    assert service.info["resize"] == "config" and "scale_width" in service.info["size"]
    assert service.info["size"].endswith(f"{W}x{W // 2}")  # where a 2048x1024 map would be worked on
    assert service.upload({"label": png_b64(label)})["scaled_from"] is None
    unscaled = EditorService(synth, {}, resize="none").upload({"label": png_b64(big_label)})
    assert (unscaled["width"], unscaled["height"], unscaled["scaled_from"]) == (2 * W, 2 * H, None)


def _png(array, fmt="PNG"):
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


def test_bad_uploads(server):
    label, inst = scene_arrays()
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    cases = [
        ({}, 400, "field 'label' is missing"),
        ({"label": 12}, 400, "field 'label' is int"),
        ({"label": "%%%not base64%%%"}, 400, "not valid base64"),
        ({"label": b64(b"hello, I am text")}, 415, "not a PNG"),
        ({"label": b64(_png(np.repeat(label[..., None], 3, -1), "JPEG"))}, 415, "not a PNG"),
        ({"label": "data:image/jpeg;base64," + b64(_png(label))}, 415, "'image/jpeg;base64'"),
        ({"label": b64(_png(label)[:70])}, 400, "cannot be decoded"),
        ({"label": png_b64(np.random.default_rng(0).integers(0, 65535, (H, W)).astype(np.uint16))}, 413,
         "MiB cap per image"),
        ({"label": png_b64(np.full((H, 3 * W), ROAD, np.uint8))}, 413, "384x64 pixels, over this server's cap"),
        ({"label": png_b64(np.full((H * 5, W // 4), ROAD, np.uint8))}, 413, "per side"),
        ({"label": png_b64(np.full((8, 40), ROAD, np.uint8))}, 400, "40x8 pixels; both sides must be at least 16"),
        ({"label": png_b64(np.where(label == SKY, 40, label).astype(np.uint8))}, 400,
         "label id 40 at pixel (0, 0)", "ids 0..34", "Remap"),
        ({"label": png_b64(np.where(label == SKY, 300, label.astype(np.uint16)).astype(np.uint16))}, 400,
         "label id 300"),
        ({"label": png_b64(np.stack([label, label, label + 1], -1))}, 400, "colour (RGB) image"),
        ({"label": png_b64(label), "inst": png_b64(inst[:, :-16])}, 400, "the instance map is 112x64, the label map "
                                                                       "128x64"),
        ({"label": png_b64(label), "inst": png_b64(np.where(inst == CAR_A, PERSON_A, inst).astype(np.uint16))}, 400,
         "instance id 24000", "lies on class 26"),
        ({"label": png_b64(label), "inst": "nope!"}, 400, "field 'inst'", "base64"),
    ]
    for body, status, *fragments in cases:
        error(server, "upload", body, status, *fragments)


def test_bad_requests(server):
    sid = open_session(server)["session"]
    error(server, "paint", None, 400, "not valid JSON", raw=b"{not json")
    error(server, "paint", None, 400, "JSON list", raw=b"[1, 2]")
    error(server, "paint", None, 415, "application/json", raw=b"{}", headers={"Content-Type": "text/plain"})
    error(server, "upload", None, 413, "over the 0 MiB cap", raw=b"{" + b" " * 200_001 + b"}")
    error(server, "explode", {"session": sid}, 404, "no API at '/api/explode'")
    assert request(server.url + "/api/paint")[0] == 404  # GET on a POST route
    error(server, "undo", {}, 400, "field 'session' is missing")
    error(server, "undo", {"session": "made-up"}, 404, "'made-up' is unknown or expired")
    # A page from elsewhere (DNS rebinding) cannot reach the API of a loopback server.
    error(server, "undo", {"session": sid}, 403, "Host 'evil.example:80'", headers={"Host": "evil.example:80"})
    assert request(f"{server.url}/api/download/photo.png")[0] == 400
    assert request(f"{server.url}/api/download/secrets.png?session={sid}")[0] == 404
    assert request(f"{server.url}/api/download/photo.png?session=nope")[0] == 404


def raw_exchange(port, data: bytes, wait_s=10.0):
    """Send bytes as they are on one connection; (status, parsed JSON body, raw head)."""
    import json

    with socket.create_connection(("127.0.0.1", port), timeout=wait_s) as conn:
        conn.sendall(data)
        received = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body), head.decode("latin-1")


def test_malformed_http_gets_a_json_answer_with_the_reason(synth, caplog):
    import dataclasses
    import logging

    limits = dataclasses.replace(LIMITS, request_timeout_s=1.0)
    running = RunningServer(EditorService(synth, list_test_scenes(synth.config), limits))
    post_head = ("POST /api/undo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Content-Length: {}\r\n\r\n")
    try:
        with caplog.at_level(logging.DEBUG):
            # A body that stops part way: 408 once the request timeout passes, no traceback logged.
            status, body, _ = raw_exchange(running.port, post_head.format(100).encode() + b'{"session": ')
            assert status == 408 and "12 of its 100 bytes arrived in 1.0 s" in body["error"], body
            assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
        for length in ("-5", "ten", "1e3"):
            status, body, _ = raw_exchange(running.port, post_head.format(length).encode() + b"{}")
            assert status == 400 and f"Content-Length {length!r} is not a byte count" in body["error"], body
        for method in ("PUT", "DELETE", "PATCH"):
            status, body, head = raw_exchange(
                running.port, f"{method} /api/paint HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n".encode())
            assert status == 405 and f"{method} is not an operation of the editor" in body["error"], body
            assert "Allow: GET, HEAD, POST" in head
    finally:
        running.stop()


def test_bad_edit_fields(server):
    sid = open_session(server)["session"]
    base = {"session": sid}
    cases = [
        ("fill", {"class": ROAD, "x": W, "y": 0}, 400, "field 'x': 128 is out of range (0..127)", "inside the 128x64"),
        ("fill", {"class": ROAD, "x": 3, "y": -1}, 400, "field 'y': -1"),
        ("fill", {"class": ROAD, "x": 3.5, "y": 1}, 400, "field 'x': 3.5 is not an integer"),
        ("fill", {"class": ROAD, "x": True, "y": 1}, 400, "field 'x': true is not an integer"),
        ("fill", {"class": 35, "x": 3, "y": 1}, 400, "field 'class': 35", "0..34"),
        ("fill", {"x": 3, "y": 1}, 400, "field 'class' is missing"),
        ("paint", {"class": ROAD, "points": [[3, 3], [W + 5, 3]], "radius": 2}, 400, "[133, 3] is outside the 128x64"),
        ("paint", {"class": ROAD, "points": [], "radius": 2}, 400, "1..50 [x, y] pairs"),
        ("paint", {"class": ROAD, "points": [[1, 1]] * 51, "radius": 2}, 400, "1..50 [x, y] pairs"),
        ("paint", {"class": ROAD, "points": [[1, "a"]], "radius": 2}, 400, "not an [x, y] pair"),
        ("paint", {"class": ROAD, "points": [[1, 1]], "radius": 99}, 400, "field 'radius': 99", "0.5..20"),
        ("paint", {"class": ROAD, "points": [[1, 1]]}, 400, "field 'radius' is missing"),
        ("select", {"x": 0, "y": H}, 400, "field 'y'"),
        ("delete", {"instance": 26005}, 404, "26005 is not in the scene"),
        ("delete", {"instance": CAR_A, "fill_class": 99}, 400, "field 'fill_class'"),
        ("relabel", {"instance": CAR_A, "class": -1}, 400, "field 'class'"),
        ("style", {"instance": CAR_A, "style": N_CAR_STYLES}, 400, "field 'style'", "0..3, 'random' or 'default'"),
        ("style", {"instance": CAR_A, "style": "pretty"}, 400, "field 'style'"),
        ("style", {"instance": PERSON_A, "style": 0}, 400, "class 24 (person) has no k-means styles"),
        ("style", {"instance": CAR_A, "style": "random", "seed": -3}, 400, "field 'seed'"),
    ]
    for op, body, status, *fragments in cases:
        error(server, op, dict(base, **body), status, *fragments)
    state = ok(server, "undo", base)
    assert state["edits"] == 0  # no failed request left an edit behind


# ----- edits -------------------------------------------------------------------------------------------
def test_edits_and_undo(server, synth):
    label, inst = scene_arrays()
    reference = Editor(synth, Scene.from_arrays(label, inst), seed=0, max_history=LIMITS.max_history)
    sid = open_session(server)["session"]
    base = {"session": sid}

    def check(state, photo):
        np.testing.assert_array_equal(decode_data_url(state["photo"]), photo)
        np.testing.assert_array_equal(download(server.url, sid, "label"), reference.scene.label)
        np.testing.assert_array_equal(download(server.url, sid, "inst"), reference.scene.inst)

    points = [[5, 60], [40, 58]]
    check(ok(server, "paint", dict(base, **{"class": SKY, "points": points, "radius": 2.5})),
          reference.brush(points, 2.5, SKY))
    check(ok(server, "fill", dict(base, **{"class": BUILDING, "x": 2, "y": 2})), reference.fill(2, 2, BUILDING))
    sel = ok(server, "select", dict(base, x=20, y=44))["selected"]
    assert (sel["instance"], sel["class"], sel["name"], sel["thing"], sel["pixels"], sel["styles"]) == (
        CAR_A, CAR, "car", True, BOXES[CAR_A].sum(), N_CAR_STYLES)
    assert sel["bbox"] == [14, 38, 39, 49] and sel["style_kind"] == "default" and 0 <= sel["style"] < N_CAR_STYLES
    np.testing.assert_array_equal(decode_data_url(sel["mask"])[..., 3] > 0, BOXES[CAR_A])
    state = ok(server, "style", dict(base, instance=CAR_A, style=(sel["style"] + 1) % N_CAR_STYLES))
    check(state, reference.set_style(CAR_A, (sel["style"] + 1) % N_CAR_STYLES))
    assert state["selected"]["style"] == (sel["style"] + 1) % N_CAR_STYLES
    assert state["selected"]["style_kind"] == "chosen"
    state = ok(server, "style", dict(base, instance=CAR_A, style="random", seed=3))
    picked = state["selected"]["style"]
    assert picked != (sel["style"] + 1) % N_CAR_STYLES  # random picks another style than the current one
    check(state, reference.set_style(CAR_A, picked))
    state = ok(server, "style", dict(base, instance=CAR_A, style="default"))
    assert state["selected"]["style"] == sel["style"] and state["selected"]["style_kind"] == "default"
    check(state, reference.set_style(CAR_A, None))
    state = ok(server, "relabel", dict(base, instance=CAR_B, **{"class": PERSON}))
    check(state, reference.relabel(CAR_B, PERSON))
    assert state["selected"]["instance"] == 24001 and state["selected"]["name"] == "person"
    state = ok(server, "delete", dict(base, instance=PERSON_A))
    check(state, reference.remove(PERSON_A))
    assert state["selected"] is None and state["edits"] == 4 and state["can_undo"]  # 7 edits, 5 scenes kept
    state = ok(server, "delete", dict(base, instance=24001, fill_class=ROAD))
    check(state, reference.remove(24001, ROAD))
    assert state["edits"] == 4
    for _ in range(4):
        reference.undo()
        state = ok(server, "undo", base)
    check(state, reference.render())
    assert state["edits"] == 0 and not state["can_undo"]
    assert ok(server, "undo", base)["edits"] == 0
    assert set(state["timing_ms"]) == {"edit_and_synthesis", "total"}


def test_styles_unavailable_without_clusters(synth):
    class NoClusters:
        def __getattr__(self, name):
            return None if name == "clusters" else getattr(synth, name)

    service = EditorService(NoClusters(), list_test_scenes(synth.config))
    assert not service.info["styles"] and service.info["classes"][CAR]["styles"] == []
    sid = service.open_scene({"index": 0})["session"]
    with pytest.raises(ApiError, match="no clusters file"):
        service.style({"session": sid, "instance": CAR_A, "style": 0})


# ----- sessions and concurrency ----------------------------------------------------------------------
def test_sessions_are_capped_least_recently_used_first(synth):
    service = EditorService(synth, list_test_scenes(synth.config), Limits(max_sessions=2))
    a, b = (service.open_scene({"index": 0})["session"] for _ in range(2))
    service.undo({"session": a})  # a is now the most recently used
    c = service.open_scene({"index": 0})["session"]
    assert list(service.sessions) == [a, c]
    with pytest.raises(ApiError, match="unknown or expired"):
        service.undo({"session": b})
    assert service.close({"session": a}) == {"closed": a} and list(service.sessions) == [c]


def test_concurrent_sessions_edit_independently(server, synth):
    """Threads painting different classes in their own sessions at once get the photos a lone editor gets."""
    label, inst = scene_arrays()
    jobs = [(SKY, [[5, 60], [30, 60]]), (BUILDING, [[60, 55], [90, 58]]), (CAR, [[100, 8], [120, 8]]),
            (PERSON, [[50, 5], [50, 12]])]
    sessions = [open_session(server)["session"] for _ in jobs]
    barrier = threading.Barrier(len(jobs))
    results, failures = {}, []

    def run(k):
        try:
            cls, points = jobs[k]
            barrier.wait(timeout=60)
            ok(server, "paint", {"session": sessions[k], "class": cls, "points": points, "radius": 3})
            results[k] = ok(server, "fill", {"session": sessions[k], "class": cls, "x": 2, "y": 2})
        except Exception as e:  # noqa: BLE001 - reported below
            failures.append(repr(e))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(jobs))]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert not failures, failures
    for k, (cls, points) in enumerate(jobs):
        editor = Editor(synth, Scene.from_arrays(label, inst), seed=0)
        editor.brush(points, 3, cls)
        expected = editor.fill(2, 2, cls)
        np.testing.assert_array_equal(decode_data_url(results[k]["photo"]), expected)
        np.testing.assert_array_equal(download(server.url, sessions[k], "label"), editor.scene.label)
        assert results[k]["edits"] == 2


def test_concurrent_edits_of_one_session_are_serialized(server):
    sid = open_session(server)["session"]
    strokes = [[[x, 58], [x + 4, 60]] for x in range(4, 100, 12)]  # 8 disjoint dabs
    errors = []

    def paint(points):
        status, payload, _ = post(server, "paint", {"session": sid, "class": SKY, "points": points, "radius": 1})
        if status != 200:
            errors.append(payload)

    threads = [threading.Thread(target=paint, args=(p,)) for p in strokes]
    [t.start() for t in threads]
    [t.join(timeout=300) for t in threads]
    assert not errors
    label = download(server.url, sid, "label")
    for points in strokes:  # no edit was lost to another one's stale scene
        assert np.all(label[brush_mask((H, W), points, 1)] == SKY)


def test_undo_history_is_capped_by_memory(synth):
    scene_bytes = W * H * 8  # int32 label + instance maps
    service = EditorService(synth, list_test_scenes(synth.config), Limits(max_history_bytes=3 * scene_bytes))
    sid = service.open_scene({"index": 0})["session"]
    assert service.sessions[sid].editor.max_history == 3
    service = EditorService(synth, list_test_scenes(synth.config), Limits(max_history_bytes=1))
    sid = service.open_scene({"index": 0})["session"]
    assert service.sessions[sid].editor.max_history == 2  # one undo step at least


def test_create_warms_up_and_guards_its_address(tmp_path, caplog):
    import logging

    from pix2pixhd_jax.errors import UserError
    from pix2pixhd_jax.serve import create

    workdir = make_editor_workdir(str(tmp_path))
    with caplog.at_level(logging.INFO):
        server, service = create(workdir, "127.0.0.1", 0)
    assert "compiled for the test scenes' size" in caplog.text and not service.sessions
    assert "not loopback" not in caplog.text and not server.RequestHandlerClass.allow_any_host
    busy = server.server_address[1]
    with pytest.raises(UserError, match=f"cannot listen on 127.0.0.1:{busy}"):
        create(workdir, "127.0.0.1", busy, warmup=False)
    server.server_close()
    with caplog.at_level(logging.WARNING):
        other, _ = create(workdir, "0.0.0.0", 0, warmup=False)
    other.server_close()
    assert "not loopback" in caplog.text and other.RequestHandlerClass.allow_any_host
    # A test scene deleted after the start is a clear error, not a crash.
    service = EditorService(service.synth, {"gone": (str(tmp_path / "nope.png"), None)})
    with pytest.raises(ApiError, match="cannot be read any more"):
        service.open_scene({"scene": "gone"})


def test_serve_needs_no_tensorflow_nor_ml_collections(tmp_path):
    """As the other core modules: the GPU machines have neither."""
    import subprocess
    import sys

    from conftest import ROOT

    workdir = make_editor_workdir(str(tmp_path))
    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['tensorflow_datasets'] = None; "
            "sys.modules['ml_collections'] = None; sys.modules['torch'] = None\n"
            "from pix2pixhd_jax import checkpoint, serve\n"
            f"config = checkpoint.read_config({workdir!r})\n"
            "print(sorted(serve.list_test_scenes(config)))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['scene_0', 'scene_1']"


# ----- CLI -----------------------------------------------------------------------------------------------
def test_cli_serve_arguments():
    from pix2pixhd_jax.cli import build_parser, cmd_serve

    args = build_parser().parse_args(["serve", "--workdir", "w"])
    assert args.fn is cmd_serve and (args.host, args.port) == ("127.0.0.1", 8000)
    args = build_parser().parse_args(["serve", "--workdir", "w", "--host", "0.0.0.0", "--port", "0",
                                      "--dataroot", "d", "--max-pixels", "100", "--no-warmup"])
    assert (args.host, args.port, args.dataroot, args.max_pixels, args.no_warmup) == ("0.0.0.0", 0, "d", 100, True)


def test_urls_in_the_page_are_relative_to_the_server():
    from pix2pixhd_jax.serve import load_page

    page = load_page()
    assert set(page) == {"/", "/editor.js", "/editor.css"}
    js = page["/editor.js"][0].decode()
    assert "/api/" in js and "http://" not in js and "https://" not in js  # nothing loaded from elsewhere
