"""The engine through the binding: open (and its errors), analyze a photo
by path, bytes or Image (faces with boxes, landmarks and descriptors),
the flags, and images. Needs the model weights and the shared photos."""

import json
import os

import pytest

import lethe


def test_engine_properties(engine):
    assert engine.threads == 2
    assert engine.kernels in ("avx512", "avx2", "scalar")
    assert engine.precision in ("default", "int8")  # int8 where the CPU has AVX-512 VNNI
    assert "2 threads" in repr(engine)


def test_engine_missing_models_is_model_error(tmp_path):
    with pytest.raises(lethe.ModelError) as e:
        lethe.Engine(tmp_path, threads=1)
    assert str(tmp_path) in str(e.value) and "missing" in str(e.value)
    assert e.value.status == 6


def test_engine_option_names(models_dir):
    with pytest.raises(ValueError, match="detector must be one of ssd, tiny"):
        lethe.Engine(models_dir, detector="yolo")
    with lethe.Engine(models_dir, threads=1, precision="fp32", detector="tiny") as e:
        assert e.precision == "fp32" and e.threads == 1
    e.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        e.analyze(b"")


def test_analyze_group_photo(engine, photo):
    path = photo("faceapi/test-images/faces.jpg")
    a = engine.analyze(path)
    assert isinstance(a, lethe.Analysis)
    assert (a.width, a.height) == (710, 473)
    assert len(a.faces) == 6
    scores = [f.score for f in a.faces]
    assert scores == sorted(scores, reverse=True) and all(0.5 <= s <= 1 for s in scores)
    for f in a.faces:
        x, y, w, h = f.box
        assert 0 <= x and 0 <= y and x + w <= a.width + 1 and y + h <= a.height + 1
        assert 60 < w < 120 and 100 < h < 160
        assert len(f.landmarks) == lethe.LANDMARKS
        # the landmarks lie on the face
        assert all(x - 10 <= px <= x + w + 10 and y - 10 <= py <= y + h + 10
                   for px, py in f.landmarks)
        assert len(f.descriptor) == lethe.DESCRIPTOR_DIM
        norm = sum(v * v for v in f.descriptor) ** 0.5
        assert 0.5 < norm < 2
        assert f.crop_w > 0 and f.crop_h > 0
    # six different people: every pair far apart
    for i in range(6):
        for j in range(i + 1, 6):
            d = lethe.descriptor_distance(a.faces[i].descriptor, a.faces[j].descriptor)
            assert d > lethe.descriptor_threshold()


def test_group_photo_faces_match_face_api(engine, photo, data_dir):
    """Each face's descriptor is nearest to its own one of face-api.js's six
    (a different alignment, so not equal: test_parity.c checks equality)."""
    ref_path = os.path.join(data_dir, "faceapi/test-data/facesFaceDescriptors.json")
    if not os.path.isfile(ref_path):
        pytest.skip(f"{ref_path} is absent")
    with open(ref_path) as f:
        refs = json.load(f)
    faces = engine.analyze(photo("faceapi/test-images/faces.jpg")).faces
    nearest = []
    for face in faces:
        dists = [lethe.descriptor_distance(face.descriptor, r) for r in refs]
        best = min(range(len(refs)), key=dists.__getitem__)
        assert dists[best] < 0.3
        nearest.append(best)
    assert sorted(nearest) == list(range(6))


def test_chip_descriptor_matches_face_api(engine, photo, data_dir):
    ref_path = os.path.join(data_dir, "faceapi/test-data/faceDescriptor1.json")
    if not os.path.isfile(ref_path):
        pytest.skip(f"{ref_path} is absent")
    with open(ref_path) as f:
        ref = json.load(f)
    a = engine.analyze(photo("faceapi/test-images/face1.png"), chip=True)
    (face,) = a.faces
    assert face.box == (0, 0, a.width, a.height) and face.score == 1
    assert face.landmarks is None
    assert lethe.descriptor_distance(face.descriptor, ref) < 0.1


def test_path_bytes_and_image_agree(engine, photo):
    path = photo("faceapi/test-images/faces.jpg")
    by_path = engine.analyze(path)
    with open(path, "rb") as f:
        data = f.read()
    assert engine.analyze(data) == by_path
    assert engine.analyze(bytearray(data)) == by_path
    with lethe.Image.load(path) as img:
        assert engine.analyze(img) == by_path
    with lethe.Image.decode(data) as img:
        assert (img.width, img.height, img.orig_width, img.orig_height) == (710, 473, 710, 473)
        rgb = img.rgb
        assert len(rgb) == 710 * 473 * 3
    with lethe.Image.from_rgb(rgb, 710, 473) as copy:
        assert copy.rgb == rgb
        assert engine.analyze(copy) == by_path


def test_flags(engine, photo):
    path = photo("faceapi/test-images/faces.jpg")
    boxes_only = engine.analyze(path, landmarks=False, descriptor=False)
    assert len(boxes_only.faces) == 6
    assert all(f.landmarks is None and f.descriptor is None for f in boxes_only.faces)
    marks = engine.analyze(path, descriptor=False)
    assert all(f.landmarks and f.descriptor is None for f in marks.faces)
    full = engine.analyze(path)
    (largest,) = engine.analyze(path, largest_face=True).faces
    areas = [f.box[2] * f.box[3] for f in full.faces]
    assert largest.box == full.faces[areas.index(max(areas))].box
    assert largest.descriptor == full.faces[areas.index(max(areas))].descriptor
    single = engine.analyze(path, single_thread=True)
    assert [f.box for f in single.faces] == [f.box for f in full.faces]


def test_no_face(engine, photo):
    path = photo("faceapi/test-images/white.png")
    assert engine.analyze(path) == lethe.Analysis(width=150, height=150, faces=[])
    with pytest.raises(lethe.NoFaceError) as e:
        engine.analyze(path, largest_face=True)
    assert "no face found" in str(e.value) and "white.png" in str(e.value)
    with lethe.Image.load(path) as img:
        assert engine.analyze(img).faces == []
        with pytest.raises(lethe.NoFaceError, match="no face found"):
            engine.analyze(img, largest_face=True)


def test_analyze_errors(engine, tmp_path):
    with pytest.raises(lethe.NotFoundError) as e:
        engine.analyze(tmp_path / "absent.jpg")
    assert "absent.jpg" in str(e.value)
    with pytest.raises(lethe.InputOutputError, match="not a regular file"):
        engine.analyze(tmp_path)
    with pytest.raises(lethe.FormatError, match="not an image"):
        engine.analyze(b"hello, this is text")
    with pytest.raises(TypeError):
        engine.analyze(42)


def test_image_errors(photo, tmp_path):
    path = photo("faceapi/test-images/faces.jpg")
    with pytest.raises(lethe.TooLargeError) as e:
        lethe.Image.load(path, max_pixels=1000)
    assert e.value.status == 4 and str(e.value) != e.value.reason
    with pytest.raises(lethe.FormatError):
        lethe.Image.decode(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(lethe.NotFoundError):
        lethe.Image.load(tmp_path / "absent.png")
    with pytest.raises(lethe.ArgumentError):
        lethe.Image.from_rgb(b"\0" * 12, 0, 4)
    img = lethe.Image.load(path)
    img.close()
    img.close()
    with pytest.raises(ValueError, match="closed"):
        img.width


def test_one_engine_from_several_threads(engine, photo):
    """ctypes releases the GIL in each call: threads analyse at once, and
    each gets its own photo's faces."""
    import threading
    paths = [photo("faceapi/test-images/faces.jpg"), photo("faceapi/examples/amy/amy1.png"),
             photo("faceapi/test-images/white.png")]
    want = [engine.analyze(p, single_thread=True) for p in paths]
    got = [None] * 6
    errors = []

    def work(k):
        try:
            got[k] = engine.analyze(paths[k % 3], single_thread=True)
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert got == want + want
