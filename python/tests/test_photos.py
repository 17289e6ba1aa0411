"""Real photos through the store: ingest by path and by bytes with
provenance, search by image with a purpose, lookup by file, forget by
uploader (dry run, then for real), by the exact photo and by face, with
receipts that verify; erased photos are no longer found. Needs the model
weights and the shared photos (faceapi/examples: 5 face photos each of
several people)."""

import json
import os

import pytest

import lethe

PEOPLE = ("amy", "sheldon", "raj")


def example(photo, person, i):
    return photo(f"faceapi/examples/{person}/{person}{i}.png")


def provenance(person, i):
    return lethe.Provenance(uploader=person, url=f"https://photos.example/{person}{i}",
                            photo_id=f"{person}-{i}", source="examples", license="MIT",
                            jurisdiction="US", consent="explicit",
                            collected_at="2020-01-0%d" % i)


@pytest.fixture
def gallery(store, engine, photo, tmp_path):
    """Photos 1-4 of each person ingested (amy and raj by path, sheldon by
    bytes), plus a photo with no face and a file that is not a photo.
    Photo 5 of each is left out, to search with."""
    not_photo = tmp_path / "notes.txt"
    not_photo.write_text("not a photo\n")
    with store.ingest(engine=engine, actor="pytest", threads=2) as ing:
        for person in PEOPLE:
            for i in range(1, 5):
                path = example(photo, person, i)
                if person == "sheldon":
                    with open(path, "rb") as f:
                        ing.add_photo_bytes(f.read(), provenance(person, i),
                                            name=f"upload/{person}{i}.png")
                else:
                    ing.add_photo(path, provenance(person, i))
        ing.add_photo(photo("faceapi/test-images/white.png"),
                      {"uploader": "blank", "jurisdiction": "US", "consent": "explicit"})
        ing.add_photo(not_photo, {"uploader": "notes"}, line=99)
    return store, ing


def test_ingest_photos(gallery, photo):
    store, ing = gallery
    st = ing.stats
    assert (st.seen, st.added, st.faces, st.templates) == (14, 13, 12, 12)
    assert (st.no_face, st.errors, st.refused, st.duplicates) == (1, 1, 0, 0)
    assert st.bytes > 12 * 1000
    (issue,) = ing.issues
    assert issue.line == 99 and issue.input.endswith("notes.txt")
    assert issue.message == "not a JPEG, PNG or WebP image"
    # provenance as given; the path made absolute and canonical (symbolic links
    # resolved, as realpath does), or the upload's name
    amy = store.lookup(uploader="amy").photos
    assert len(amy) == 4
    rec = amy[0].provenance[0]
    assert rec.path == os.path.realpath(example(photo, "amy", rec.photo_id[-1]))
    assert (rec.license, rec.source, rec.jurisdiction, rec.consent) == \
        ("MIT", "examples", "US", "explicit")
    assert amy[0].kind == "photo" and (amy[0].width, amy[0].height) == (150, 150)
    sheldon = store.lookup(uploader="sheldon").photos
    assert sorted(p.provenance[0].path for p in sheldon) == \
        [f"upload/sheldon{i}.png" for i in range(1, 5)]
    blank = store.lookup(uploader="blank").photos
    assert len(blank) == 1 and blank[0].faces == 0


def test_reingest_is_a_duplicate(gallery, engine, photo):
    store, _ = gallery
    with store.ingest(engine=engine) as ing:
        ing.add_photo(example(photo, "amy", 1), provenance("amy", 1))
    assert ing.stats.added == 0 and ing.stats.duplicates == 1


def test_ingest_photos_needs_an_engine(store, photo):
    with store.ingest() as ing:
        with pytest.raises(lethe.ArgumentError, match="ingesting photos needs an engine"):
            ing.add_photo(example(photo, "amy", 1), provenance("amy", 1))
    assert ing.stats.added == 0


def test_search_by_image_finds_the_person(gallery, engine, photo):
    store, _ = gallery
    threshold = lethe.descriptor_threshold()
    for person in PEOPLE:
        query = example(photo, person, 5)
        matches = store.search_image(query, engine, purpose="pytest: find " + person,
                                     actor="pytest", top_k=6)
        assert len(matches) == 6
        assert [m.provenance.uploader for m in matches[:4]] == [person] * 4
        assert all(m.distance < threshold for m in matches[:4])
        assert all(m.distance > threshold for m in matches[4:])
        assert all(m.box[2] > 50 for m in matches)
        with open(query, "rb") as f:
            data = f.read()
        assert store.search_image(data, engine, purpose="bytes", top_k=6) == matches
        with lethe.Image.load(query) as img:
            assert store.search_image(img, engine, purpose="image", top_k=6) == matches


def test_search_by_image_and_by_descriptor_agree(gallery, engine, photo):
    store, _ = gallery
    query = example(photo, "raj", 5)
    (face,) = engine.analyze(query, largest_face=True).faces
    assert store.search(face.descriptor, purpose="d", top_k=4) == \
        store.search_image(query, engine, purpose="i", top_k=4)


def test_search_by_image_needs_a_purpose_and_a_face(gallery, engine, photo):
    store, _ = gallery
    with pytest.raises(lethe.ArgumentError, match="needs a purpose"):
        store.search_image(example(photo, "amy", 5), engine, purpose="")
    head = store.log_head()
    with pytest.raises(lethe.NoFaceError) as e:
        store.search_image(photo("faceapi/test-images/white.png"), engine, purpose="none")
    assert "no face" in str(e.value)
    assert store.log_head() == head  # nothing logged


def test_lookup_by_file(gallery, photo):
    store, _ = gallery
    found = store.lookup(file=example(photo, "amy", 2), actor="pytest")
    assert found.lookup == "file"
    (p,) = found.photos
    assert p.faces == 1 and p.templates == 1
    assert p.provenance[0].url == "https://photos.example/amy2"
    assert store.lookup(photo_id=p.photo).photos == found.photos
    assert store.lookup(file=example(photo, "amy", 5)).photos == []  # never ingested


def test_forget_uploader_dry_run_then_real(gallery, engine, photo):
    store, _ = gallery
    before = store.digest()
    dry = store.forget(uploader="amy", dry_run=True, actor="pytest")
    assert (dry.photos, dry.faces, dry.templates) == (4, 4, 4)
    assert dry.receipt is None and store.digest() == before
    assert len(store.lookup(uploader="amy").photos) == 4

    done = store.forget(uploader="amy", actor="pytest")
    assert (done.photos, done.faces, done.templates) == (4, 4, 4)
    assert {m.url for m in done.matched} == {f"https://photos.example/amy{i}" for i in range(1, 5)}
    lethe.verify_receipt(done.receipt, store.public_key)
    store.check_receipt(done.receipt)
    assert json.loads(done.receipt)["erased"]["photos"] == 4
    # no longer found: not by search, not by lookup
    matches = store.search_image(example(photo, "amy", 5), engine, purpose="after", top_k=20)
    assert matches and not any(m.provenance.uploader == "amy" for m in matches)
    assert all(m.distance > lethe.descriptor_threshold() for m in matches)
    assert store.lookup(uploader="amy").photos == []
    for i in range(1, 5):
        assert store.lookup(file=example(photo, "amy", i)).photos == []
    assert len(store.lookup(uploader="raj").photos) == 4
    assert store.verify_log() == store.log_head().seq


def test_forget_exact_photo(gallery, engine, photo):
    store, _ = gallery
    with open(example(photo, "sheldon", 2), "rb") as f:
        data = f.read()
    done = store.forget(image_bytes=data, actor="pytest")
    assert done.photos == 1 and done.matched[0].path == "upload/sheldon2.png"
    store.check_receipt(done.receipt)
    done = store.forget(image=example(photo, "raj", 3), actor="pytest")
    assert done.photos == 1 and done.matched[0].url == "https://photos.example/raj3"
    assert store.lookup(file=example(photo, "sheldon", 2)).photos == []
    assert store.lookup(file=example(photo, "raj", 3)).photos == []
    found = store.search_image(example(photo, "sheldon", 5), engine, purpose="p", top_k=4)
    assert sorted(m.provenance.path for m in found if m.provenance.uploader == "sheldon") == \
        ["upload/sheldon1.png", "upload/sheldon3.png", "upload/sheldon4.png"]


def test_forget_by_face_and_opt_out(gallery, engine, photo):
    store, _ = gallery
    (selfie,) = engine.analyze(example(photo, "raj", 5), largest_face=True).faces
    done = store.forget(faces=[selfie.descriptor], optout=True, actor="pytest")
    assert done.faces == 4 and done.templates == 4 and done.photos == 0
    assert all(m.distance < lethe.forget_face_threshold() for m in done.matched)
    store.check_receipt(done.receipt)
    # the photos stay, without their faces' templates
    photos = store.lookup(uploader="raj").photos
    assert len(photos) == 4 and all(p.templates == 0 for p in photos)
    found = store.search_image(example(photo, "raj", 5), engine, purpose="after", top_k=5)
    assert not any(m.provenance.uploader == "raj" for m in found)
    # the opt-out holds on re-ingest
    with store.ingest(engine=engine) as ing:
        ing.add_photo(example(photo, "raj", 5), provenance("raj", 5))
    assert ing.stats.opted_out_faces == 1 and ing.stats.templates == 0
    found = store.search_image(example(photo, "raj", 5), engine, purpose="again", top_k=5)
    assert not any(m.provenance.uploader == "raj" for m in found)


def test_ingest_refused_by_policy(store, engine, photo):
    store.set_policy("US-IL", "", actor="pytest")  # Illinois: no templates at all
    with store.ingest(engine=engine) as ing:
        p = provenance("amy", 1)
        p.jurisdiction = "US-IL"
        ing.add_photo(example(photo, "amy", 1), p)
    assert ing.stats.added == 1 and ing.stats.refused == 1 and ing.stats.templates == 0
    (held,) = store.lookup(uploader="amy").photos
    assert held.templates == 0
