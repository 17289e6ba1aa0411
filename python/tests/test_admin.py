"""The operator's calls through the binding (admin.py), on descriptor rows:
API keys, data-subject requests and the subject lookup, the models and a
retirement, the keyring, a receipt read back by its hash, lookup by a
file's bytes, and restore. Each asserts what the store does, not only that
the call returns."""

import pytest

import lethe
from conftest import prov


# --- API keys ----------------------------------------------------------------

def test_key_add_authenticate_revoke(store):
    key, info = store.add_key("case desk", ["search", "audit"], rate_per_minute=60,
                              daily_quota=1000, purpose="case 2026-114", actor="op")
    assert key.startswith(f"lk_{info.id}_") and len(key) > 40
    assert info.roles == ["search", "audit"] and info.rate_per_minute == 60
    assert info.daily_quota == 1000 and info.revoked_at is None
    assert store.authenticate(key) == info
    assert store.key_purpose(info.id) == "case 2026-114"
    other, _ = store.add_key("intake", "ingest")
    assert [k.name for k in store.keys()] == ["case desk", "intake"]
    # the store keeps no key: a key with one character changed is refused
    wrong = key[:-1] + ("A" if key[-1] != "A" else "B")
    with pytest.raises(lethe.DeniedError, match="not valid"):
        store.authenticate(wrong)
    store.revoke_key(info.id, actor="op")
    with pytest.raises(lethe.DeniedError, match="revoked"):
        store.authenticate(key)
    assert store.authenticate(other).roles == ["ingest"]
    assert store.keys()[0].revoked_at is not None
    with pytest.raises(lethe.ArgumentError):
        store.revoke_key(info.id)
    with pytest.raises(lethe.NotFoundError):
        store.revoke_key(99)
    assert '"kind":"key-revoke"' in store.log()
    assert store.verify_log() > 0


def test_roles(store):
    assert lethe.roles_mask("search, audit") == lethe.roles_mask(["audit", "search"]) == 0x0c
    with pytest.raises(lethe.ArgumentError, match="janitor"):
        store.add_key("x", ["janitor"])
    with pytest.raises(lethe.ArgumentError):
        lethe.roles_mask("")


# --- data-subject requests ---------------------------------------------------

def test_request_filed_approved_and_receipted(filled):
    before = filled.subject_lookup(uploader="person3")
    assert len(before) == 10 and all(p.templates == 1 for p in before)
    assert before[0].provenance[0].consent == "explicit"
    rid, info = filled.file_request("uploader", "person3", actor="page")
    assert rid.startswith("rq_") and info.status == "pending" and info.by == "uploader"
    pending = filled.requests(pending_only=True)
    assert [q.number for q in pending] == [info.number]
    assert pending[0].selector and "person3" in pending[0].selector
    # the requester sees the status by id; nothing is erased yet
    assert filled.request_status(rid).status == "pending"
    assert len(filled.subject_lookup(uploader="person3")) == 10
    done = filled.approve_request(info.number, actor="key:5")
    assert done.status == "done" and done.photos == 10 and done.decided_by == "key:5"
    assert filled.subject_lookup(uploader="person3") == []
    st = filled.request_status(rid)
    assert st.receipt and st.receipt_hash == done.receipt_hash
    filled.check_receipt(st.receipt)
    assert filled.receipt(done.receipt_hash) == st.receipt
    with pytest.raises(lethe.ArgumentError):
        filled.approve_request(info.number)  # decided already
    with pytest.raises(lethe.NotFoundError):
        filled.request_status(rid[:-1] + ("A" if rid[-1] != "A" else "B"))


def test_request_auto_and_deny(filled):
    assert filled.request_auto() == set()
    filled.set_request_auto("photo-id", True)
    assert filled.request_auto() == {"photo-id"}
    _, info = filled.file_request("photo_id", "photo-5-2")
    assert info.status == "done" and info.decided_by == "auto" and info.photos == 1
    assert filled.lookup(photo_id="photo-5-2").photos == []
    _, q = filled.file_request("url", "https://photos.example/6/1", optout=True)
    assert q.status == "pending" and q.action == "optout"
    filled.deny_request(q.number, reason="not yours")
    denied = [r for r in filled.requests() if r.number == q.number][0]
    assert denied.status == "denied" and denied.note == "not yours"
    assert len(filled.lookup(url="https://photos.example/6/1").photos) == 1
    with pytest.raises(ValueError, match="unknown request kind"):
        filled.file_request("name", "x")


def test_request_by_face_descriptor(filled, people):
    _, info = filled.file_request("face", face=people[2][0])
    done = filled.approve_request(info.number)
    assert done.faces == 10 and done.photos == 0
    assert all(p.templates == 0 for p in filled.subject_lookup(uploader="person2"))


def test_subject_lookup_counts_searches_by_purpose(filled, people):
    # each search returns all ten of person1's rows
    filled.search([people[1][0]], purpose="missing person", top_k=10)
    filled.search([people[1][1]], purpose="missing person", top_k=10)
    photos = filled.subject_lookup(url="https://photos.example/1/0")
    assert len(photos) == 1
    (count,) = photos[0].purposes
    assert count.purpose == "missing person" and count.searches == 2 and count.last
    with pytest.raises(TypeError):
        filled.subject_lookup(uploader="a", url="b")


# --- the exact file, receipts by hash ------------------------------------------

def test_lookup_by_file_bytes(store, tmp_path):
    # a descriptor row's "photo" hash is the descriptor's: lookup by bytes
    # finds nothing, and says it looked up a file
    res = store.lookup(file_bytes=b"\x89PNG\r\n\x1a\nnot a photo")
    assert res.lookup == "file" and res.photos == []
    assert store.lookup_text(file_bytes=b"abc").startswith("0 photos held for the file given")
    with pytest.raises(lethe.ArgumentError):
        store.lookup(file_bytes=b"")


def test_receipt_by_hash(filled):
    done = filled.forget(uploader="person7")
    assert filled.receipt(done.receipt_hash) == done.receipt
    with pytest.raises(lethe.NotFoundError):
        filled.receipt("0" * 64)
    with pytest.raises(lethe.ArgumentError):
        filled.receipt("not a hash")


# --- models ----------------------------------------------------------------------

def test_models_and_retirement(filled):
    (m,) = filled.models()
    assert m.shipped and m.state == "current" and m.templates == 80
    assert filled.find_model(m.id) == m == filled.find_model(m.name)
    with pytest.raises(lethe.ConfirmError) as e:
        filled.retire_model(m.id)
    assert e.value.result.templates == 80 and e.value.result.receipt is None
    dry = filled.retire_model(m.id, dry_run=True)
    assert dry.templates == 80 and dry.receipt is None
    done = filled.retire_model(m.id, confirmed=True, actor="op")
    assert done.templates == 80 and done.receipt_hash
    filled.check_receipt(done.receipt)
    (after,) = filled.models()
    assert after.state == "retired" and after.templates == 0
    # descriptor rows go whole: nothing of person0 is held any more
    assert filled.lookup(uploader="person0").photos == []
    with pytest.raises(lethe.NotFoundError):
        filled.find_model("no-such-model@1")


# --- the keyring and restore ------------------------------------------------------

def test_keyring_rotate_and_check(filled, tmp_path):
    old = filled.public_key
    done = filled.forget(uploader="person4")
    new = filled.keyring_rotate(actor="op")
    assert new != old and filled.public_key == new
    filled.check_receipt(done.receipt)  # signed by the old key, still the store's
    state = filled.keyring_check()
    assert state["receipts"] >= 1 and state["damaged_slots"] == 0
    assert state["mirror"] is None and state["signing_epoch"] == 2
    (tmp_path / "mirror").mkdir()
    filled.keyring_mirror(tmp_path / "mirror")
    assert filled.keyring_check()["mirror"] == str(tmp_path / "mirror")
    assert [p.suffix for p in (tmp_path / "mirror").iterdir()] == [".keyring"]


def test_restore_never_brings_back_the_forgotten(filled, tmp_path):
    path = filled.path
    filled.backup(tmp_path / "bk")
    filled.forget(uploader="person5")
    filled.close()
    res = lethe.restore(tmp_path / "bk", path, actor="op")
    assert res.dropped_erased == 10 and res.photos == 70
    with lethe.Store(path) as s:
        assert s.lookup(uploader="person5").photos == []
        assert len(s.lookup(uploader="person6").photos) == 10
        assert s.digest() == res.digest
    with pytest.raises(lethe.LetheError):
        lethe.restore(tmp_path / "no-backup", path)
