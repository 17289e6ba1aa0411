"""The store through the binding, with descriptor rows (no engine needed):
open and create, ingest with provenance, search with a purpose, lookup,
forget (dry run, then for real), receipts, opt-outs, the log, the policy,
the digest, and errors as exceptions of the right class with the
library's message."""

import json
import math
import os

import pytest

import lethe
from conftest import prov


# --- opening -----------------------------------------------------------------

def test_create_then_reopen(tmp_path, people):
    path = tmp_path / "s"
    with lethe.Store(path, create=True, actor="creator") as s:
        assert s.path == str(path)
        with s.ingest() as ing:
            ing.add_descriptor(people[0][0], prov(0, 0))
        digest = s.digest()
    with lethe.Store(path) as s:
        assert s.digest() == digest
        assert s.lookup(uploader="person0").photos[0].provenance[0].uploader == "person0"
    assert "creator" in lethe.Store(path, readonly=True).log("text")


def test_open_missing_store_is_store_error(tmp_path):
    with pytest.raises(lethe.StoreError) as e:
        lethe.Store(tmp_path / "nothing")
    assert "nothing: No such file or directory" in str(e.value)
    (tmp_path / "empty").mkdir()
    with pytest.raises(lethe.StoreError) as e:
        lethe.Store(tmp_path / "empty")
    assert "not a lethe store" in str(e.value)
    assert e.value.status == 11 and e.value.code == "ERR_STORE"
    assert e.value.reason == lethe.strerror(11)


def test_create_in_missing_folder_is_io_error(tmp_path):
    with pytest.raises(lethe.InputOutputError, match="cannot create"):
        lethe.Store(tmp_path / "no" / "such" / "folder", create=True)


def test_closed_store_refuses_calls(tmp_path):
    s = lethe.Store(tmp_path / "s", create=True)
    s.close()
    s.close()  # twice is fine
    with pytest.raises(ValueError, match="closed"):
        s.digest()


def test_readonly_store_refuses_writes(filled, tmp_path):
    path = filled.path
    digest = filled.digest()
    with lethe.Store(path, readonly=True) as ro:
        assert ro.digest() == digest and ro.verify_log() > 0
        with pytest.raises(lethe.ArgumentError, match="read-only"):
            ro.forget(uploader="person1")
        # a search is logged, so a store that never writes cannot search;
        # it says so as a refused argument, not as SQLite's write error
        with pytest.raises(lethe.ArgumentError, match="read-only"):
            ro.search(filled_query(), purpose="read")


def filled_query():
    import random
    rng = random.Random(1)
    return [rng.uniform(-0.2, 0.2) for _ in range(128)]


def test_second_writer_gets_busy_error(filled):
    with lethe.Store(filled.path, wait_seconds=0) as other:
        with filled.ingest(actor="first") as ing:  # holds the write lock until it ends
            ing.add_descriptor(filled_query(), prov(9, 9))
            with pytest.raises(lethe.BusyError) as e:
                other.forget(uploader="person1", actor="second")
            assert "is locked by" in str(e.value) and "ingest" in str(e.value)
            with pytest.raises(lethe.BusyError):
                other.ingest(actor="second")
        # the first writer is done: the second may write now
        assert other.forget(uploader="person1", actor="second").photos == 10


# --- ingest --------------------------------------------------------------------

def test_ingest_counts_and_issues(store, people):
    with store.ingest(actor="pytest") as ing:
        ing.add_descriptor(people[0][0], prov(0, 0), line=1)
        ing.add_descriptor(people[0][0], prov(0, 0), line=2)           # the same again
        ing.add_descriptor(people[0][1], {"uploader": "x", "jurisdiction": "ZZ"}, line=3)
        ing.add_descriptor(people[0][2], {"consent": "maybe"}, line=4)
        ing.fail("row 5", "did not parse", line=5)
        assert ing.progress().seen >= 4
    st = ing.stats
    assert ing.end() is st  # ending twice returns the same
    assert (st.seen, st.added, st.duplicates, st.errors) == (5, 1, 1, 3)
    assert st.templates == 1
    lines = {i.line: i for i in ing.issues}
    assert set(lines) == {3, 4, 5}
    assert "ZZ" in lines[3].message
    assert "unknown consent basis" in lines[4].message
    assert lines[5].input == "row 5" and lines[5].message == "did not parse"
    with pytest.raises(ValueError, match="ended"):
        ing.add_descriptor(people[0][3])


def test_ingest_descriptor_needs_128_numbers(store):
    with store.ingest() as ing:
        with pytest.raises(ValueError, match="128"):
            ing.add_descriptor([0.0] * 127)


def test_policy_refuses_templates(store, people):
    with store.ingest() as ing:
        ing.add_descriptor(people[0][0], {"uploader": "a", "jurisdiction": "US",
                                          "consent": "none"})
    assert ing.stats.added == 1 and ing.stats.refused == 1 and ing.stats.templates == 0
    assert store.search(people[0][0], purpose="check") == []
    photo = store.lookup(uploader="a").photos[0]
    assert photo.templates == 0 and photo.kind == "descriptor"


def test_closing_the_store_ends_its_ingest(tmp_path, people):
    s = lethe.Store(tmp_path / "s", create=True)
    ing = s.ingest()
    ing.add_descriptor(people[1][0], prov(1, 0))
    s.close()
    assert ing.stats is not None and ing.stats.added == 1
    with lethe.Store(tmp_path / "s") as s:
        assert len(s.lookup(uploader="person1").photos) == 1


# --- search --------------------------------------------------------------------

def test_search_finds_the_person(filled, people):
    matches = filled.search(people[2][0], purpose="find person 2", actor="pytest", top_k=5)
    assert len(matches) == 5
    assert all(isinstance(m, lethe.Match) for m in matches)
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert matches[0].distance == pytest.approx(0, abs=1e-6)
    assert all(m.provenance.uploader == "person2" for m in matches)
    assert matches[0].provenance.url == "https://photos.example/2/0"
    assert matches[0].provenance_count == 1 and len(matches[0].photo) == 64
    assert all(m.query == 0 for m in matches)


def test_search_several_queries_and_threshold(filled, people):
    matches = filled.search([people[1][0], people[5][3]], purpose="two", top_k=20,
                            threshold=lethe.descriptor_threshold())
    by_query = {0: set(), 1: set()}
    for m in matches:
        by_query[m.query].add(m.provenance.uploader)
    assert by_query == {0: {"person1"}, 1: {"person5"}}
    assert len(matches) == 20  # each person's 10 rows, nobody else within the threshold


def test_search_needs_a_purpose(filled, people):
    for purpose in (None, ""):
        with pytest.raises(lethe.ArgumentError) as e:
            filled.search(people[0][0], purpose=purpose)
        assert str(e.value) == "a search needs a purpose (it is logged)"
        assert e.value.status == 7
    with pytest.raises(TypeError):
        filled.search(people[0][0])  # the binding has no default purpose either


def test_search_is_logged_with_its_purpose(filled, people):
    before = filled.log_head().seq
    filled.search(people[0][0], purpose="audit me", actor="searcher")
    head = filled.log_head()
    assert head.seq == before + 1 and len(head.hash) == 64
    last = json.loads(filled.log("jsonl").splitlines()[-1])
    assert "audit me" in json.dumps(last) and "searcher" in json.dumps(last)
    assert filled.verify_log() == head.seq


# --- lookup --------------------------------------------------------------------

def test_lookup_by_uploader_url_and_id(filled):
    found = filled.lookup(uploader="person3", actor="pytest")
    assert found.lookup == "uploader" and len(found.photos) == 10
    p = found.photos[0]
    assert p.faces == 1 and p.templates == 1 and p.status
    rec = p.provenance[0]
    assert isinstance(rec, lethe.ProvenanceRecord)
    assert rec.uploader == "person3" and rec.jurisdiction == "US" and rec.added_at
    assert len(filled.lookup(url="https://photos.example/3/4").photos) == 1
    by_id = filled.lookup(photo_id="photo-3-4").photos
    assert len(by_id) == 1 and by_id[0].provenance[0].url == "https://photos.example/3/4"
    assert filled.lookup(photo_id=by_id[0].photo).photos[0].photo == by_id[0].photo
    assert filled.lookup(uploader="nobody").photos == []
    text = filled.lookup_text(uploader="person3")
    assert text.startswith("10 photos held for person3")


def test_lookup_takes_one_selector(filled):
    with pytest.raises(TypeError):
        filled.lookup()
    with pytest.raises(TypeError):
        filled.lookup(uploader="a", url="b")
    with pytest.raises(lethe.ArgumentError, match="needs a value"):
        filled.lookup(uploader="")


def test_lookup_missing_file_is_not_found(filled, tmp_path):
    with pytest.raises(lethe.NotFoundError) as e:
        filled.lookup(file=tmp_path / "absent.jpg")
    assert "absent.jpg" in str(e.value)


# --- forget --------------------------------------------------------------------

def test_forget_dry_run_then_for_real(filled, people):
    digest = filled.digest()
    entries = filled.verify_log()
    dry = filled.forget(uploader="person4", dry_run=True, actor="pytest")
    assert isinstance(dry, lethe.ForgetResult)
    assert (dry.photos, dry.provenance, dry.faces, dry.templates) == (10, 10, 10, 10)
    assert dry.receipt is None and dry.receipt_hash is None
    assert len(dry.matched) == 10 and all(len(m.photo) == 64 for m in dry.matched)
    assert {m.url for m in dry.matched} == {f"https://photos.example/4/{j}" for j in range(10)}
    assert filled.digest() == digest and filled.verify_log() == entries  # nothing changed
    assert len(filled.lookup(uploader="person4").photos) == 10

    done = filled.forget(uploader="person4", actor="pytest")
    assert done.photos == 10 and done.templates == 10
    assert done.digest_before == digest and done.digest_after == filled.digest() != digest
    assert done.receipt and len(done.receipt_hash) == 64
    receipt = json.loads(done.receipt)
    assert receipt["kind"] == "forget" and receipt["store_key"] == filled.public_key
    assert filled.digest_full() == lethe.FullDigest(digest=done.digest_after, matches=True)
    # gone from lookup and search
    assert filled.lookup(uploader="person4").photos == []
    assert not any(m.provenance.uploader == "person4"
                   for m in filled.search(people[4][0], purpose="after", top_k=80))
    # the others stay
    assert len(filled.lookup(uploader="person5").photos) == 10


def test_forget_digest_is_that_of_a_store_that_never_held_it(tmp_path, people):
    with lethe.Store(tmp_path / "a", create=True) as a, \
            lethe.Store(tmp_path / "b", create=True) as b:
        with a.ingest() as ia, b.ingest() as ib:
            for p in range(3):
                for j in range(3):
                    ia.add_descriptor(people[p][j], prov(p, j))
                    if p != 1:
                        ib.add_descriptor(people[p][j], prov(p, j))
        assert a.digest() != b.digest()
        a.forget(uploader="person1")
        assert a.digest() == b.digest()


def test_receipt_verifies_and_a_modified_one_fails(filled):
    done = filled.forget(url="https://photos.example/6/2", actor="pytest")
    assert done.photos == 1
    lethe.verify_receipt(done.receipt)
    lethe.verify_receipt(done.receipt, filled.public_key)
    lethe.verify_receipt(done.receipt.encode())
    filled.check_receipt(done.receipt)

    forged = done.receipt.replace('"photos":1', '"photos":2')
    assert forged != done.receipt
    with pytest.raises(lethe.FormatError) as e:
        lethe.verify_receipt(forged)
    assert e.value.status == 3
    assert str(e.value) == "the signature does not match: the receipt was altered"
    with pytest.raises(lethe.FormatError, match="the receipt was altered"):
        filled.check_receipt(forged)
    # unaltered, but not signed by the key the verifier expects
    with pytest.raises(lethe.FormatError, match="signed by another store's key"):
        lethe.verify_receipt(done.receipt, "00" * 32)
    with pytest.raises(lethe.FormatError, match="not a lethe receipt"):
        lethe.verify_receipt("not a receipt")


def test_receipt_of_another_store_fails_check(filled, tmp_path, people):
    with lethe.Store(tmp_path / "other", create=True) as other:
        with other.ingest() as ing:
            ing.add_descriptor(people[0][0], prov(0, 0))
        theirs = other.forget(uploader="person0").receipt
    lethe.verify_receipt(theirs)  # unaltered: its own signature holds
    with pytest.raises(lethe.FormatError, match="a key this store never had"):
        filled.check_receipt(theirs)  # but this store did not issue it


def test_wide_erasure_needs_confirmation(filled):
    digest = filled.digest()
    with pytest.raises(lethe.ConfirmError) as e:
        filled.forget(source="site-b", actor="pytest")
    err = e.value
    assert err.status == 14 and "confirm" in str(err)
    assert err.result.photos == 40 and err.result.wide and err.result.receipt is None
    assert filled.digest() == digest
    done = filled.forget(source="site-b", confirmed=True, actor="pytest")
    assert done.photos == 40 and done.receipt
    assert filled.lookup(uploader="person7").photos == []


def test_forget_by_face(filled, people):
    done = filled.forget(faces=[people[3][0], people[3][1]], actor="pytest")
    assert done.faces == 10 and done.photos == 0
    assert all(m.distance is not None for m in done.matched)
    assert not any(m.provenance.uploader == "person3"
                   for m in filled.search(people[3][0], purpose="after", top_k=80))
    photos = filled.lookup(uploader="person3").photos
    assert len(photos) == 10 and all(p.templates == 0 for p in photos)


def test_forget_with_optout_refuses_reingest(filled, people):
    done = filled.forget(uploader="person2", optout=True, actor="pytest")
    assert done.photos == 10
    (optout,) = filled.optouts()
    assert optout["receipt"] == done.receipt_hash and optout["selects"] == ["uploader"]
    assert "person2" not in json.dumps(optout)  # no personal data in the list
    with filled.ingest() as ing:
        ing.add_descriptor(people[2][0], prov(2, 0))
    assert ing.stats.opted_out == 1 and ing.stats.added == 0
    assert filled.lookup(uploader="person2").photos == []


def test_optout_can_be_withdrawn(filled, people):
    filled.forget(uploader="person2", optout=True, actor="pytest")
    (optout,) = filled.optouts()
    filled.remove_optout(optout["id"], actor="pytest")
    assert filled.optouts() == []
    with filled.ingest() as ing:
        ing.add_descriptor(people[2][0], prov(2, 0))
    assert ing.stats.added == 1
    with pytest.raises(lethe.NotFoundError, match="no standing opt-out"):
        filled.remove_optout(optout["id"], actor="pytest")


def test_forget_nothing_selected(filled):
    with pytest.raises(lethe.ArgumentError, match="nothing selected") as e:
        filled.forget(actor="pytest")  # no selector at all
    assert e.value.result.receipt is None
    none = filled.forget(uploader="nobody", actor="pytest")
    assert none.photos == 0


# --- the log, policy, datasheet, backup -----------------------------------------

def test_log_verify_detects_tampering(filled):
    n = filled.verify_log()
    assert n == filled.log_head().seq
    path = filled.path
    filled.close()
    # alter entry 2 (the ingest) in the catalog behind lethe's back
    import sqlite3
    db = sqlite3.connect(os.path.join(path, "catalog.db"))
    assert db.execute("UPDATE log SET results = results + 1 WHERE seq = 2").rowcount == 1
    db.commit()
    db.close()
    with lethe.Store(path, readonly=True) as s:
        with pytest.raises(lethe.FormatError) as e:
            s.verify_log()
        assert e.value.first_bad == 2 and str(e.value)


def test_policy(store, people):
    assert "default" in store.policy()
    decision = store.check_policy("US", "explicit")
    assert decision == lethe.PolicyDecision(allowed=True, rule="default")
    with store.ingest() as ing:
        ing.add_descriptor(people[0][0], {"uploader": "de", "jurisdiction": "DE",
                                          "consent": "public-license"})
    held = store.check_policy("DE", "public-license").allowed
    dropped = store.set_policy("DE", "explicit", actor="pytest", dry_run=True)
    assert dropped == (1 if held else 0)
    store.set_policy("DE", "explicit", actor="pytest")
    assert store.check_policy("DE", "public-license").allowed is False
    assert store.check_policy("DE", "explicit") == lethe.PolicyDecision(True, "DE")
    with pytest.raises(lethe.ArgumentError, match="unknown consent basis"):
        store.check_policy("DE", "maybe")
    with pytest.raises(lethe.ArgumentError, match="ZZ"):
        store.check_policy("ZZ", "explicit")


def test_datasheet_formats(filled):
    sheet = json.loads(filled.datasheet())
    assert isinstance(sheet, dict)
    assert "80" in json.dumps(sheet)
    assert filled.datasheet("md").startswith("#")
    assert "<html" in filled.datasheet("html").lower()
    with pytest.raises(lethe.ArgumentError, match='unknown datasheet format "pdf"'):
        filled.datasheet("pdf")


def test_backup(filled, tmp_path):
    info = filled.backup(tmp_path / "backup", actor="pytest")
    assert info["digest"] == filled.digest()
    with open(tmp_path / "backup" / "backup.json") as f:
        assert json.load(f) == info
    assert not os.path.exists(tmp_path / "backup" / "keyring")
    with pytest.raises(lethe.ArgumentError, match="already exists"):
        filled.backup(tmp_path / "backup")  # dest must be new


def test_descriptor_helpers(people):
    a, b = people[0][0], people[1][0]
    assert lethe.descriptor_distance(a, a) == 0
    d = lethe.descriptor_distance(a, b)
    assert d == pytest.approx(sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5, rel=1e-5)
    assert 0 < lethe.forget_face_threshold() < lethe.descriptor_threshold()
    parsed = lethe.parse_descriptor(json.dumps({"embedding": a}))
    assert parsed == pytest.approx(a, abs=1e-6)
    with pytest.raises(lethe.FormatError, match="expected 128 numbers, found 3"):
        lethe.parse_descriptor("[1, 2, 3]")


def test_ingest_dropped_without_end_is_committed_when_collected(store, people):
    import gc
    ing = store.ingest(actor="pytest")
    ing.add_descriptor(people[6][0], prov(6, 0))
    del ing
    gc.collect()
    assert len(store.lookup(uploader="person6").photos) == 1
    with store.ingest() as again:  # the lock was released
        again.add_descriptor(people[6][1], prov(6, 1))
    assert again.stats.added == 1


# --- 1:1 verification, evidence, several photos of one person ------------------

def test_verify_same_and_other_person(filled, people):
    same = filled.verify(people[3][0], uploader="person3", purpose="is this person3?",
                         actor="pytest")
    assert isinstance(same, lethe.VerifyResult)
    assert same.match and same.distance == pytest.approx(0, abs=1e-6)
    assert same.templates == 10 and same.photos == 10 and len(same.photo) == 64
    assert same.threshold == pytest.approx(lethe.descriptor_threshold())
    other = filled.verify(people[3][0], photo_id="photo-4-2", purpose="is this photo-4-2?")
    assert not other.match and other.distance > other.threshold
    assert other.templates == 1 and other.photos == 1


def test_verify_is_logged_and_refuses(filled, people):
    before = filled.log_head().seq
    filled.verify(people[0][0], url="https://photos.example/0/1", purpose="check")
    assert filled.log_head().seq == before + 1
    with pytest.raises(lethe.NotFoundError):
        filled.verify(people[0][0], uploader="nobody", purpose="check")
    with pytest.raises(lethe.ArgumentError) as e:
        filled.verify(people[0][0], uploader="person0", purpose="")
    assert "purpose" in str(e.value)
    with pytest.raises(TypeError):
        filled.verify(people[0][0], uploader="person0", url="x", purpose="check")
    with pytest.raises(ValueError):
        filled.verify(people[0][0][:5], uploader="person0", purpose="check")


def test_search_evidence_and_fpir(filled, people):
    matches = filled.search(people[6][0], purpose="evidence", top_k=3)
    m = matches[0]
    assert m.gallery == 80
    assert 0 < m.fmr < 1e-3  # a distance near 0: few strangers that close
    assert m.strangers == pytest.approx(m.gallery * m.fmr, rel=1e-6)
    assert m.tier == "strong"
    # with fpir the threshold comes from the table: the person's own rows
    # (within ~0.1 of each other) come back, nobody else (about 1.9 away)
    found = filled.search(people[6][0], purpose="fpir", top_k=20, fpir=0.01)
    assert found and all(x.provenance.uploader == "person6" for x in found)
    with pytest.raises(lethe.ArgumentError):
        filled.search(people[6][0], purpose="fpir", fpir=1.5)


def test_search_fused(filled, people):
    before = filled.log_head().seq
    probes = [people[5][1], people[5][2]]
    matches = filled.search(probes, purpose="two photos of one person", top_k=10, fuse=True)
    assert len(matches) == 10
    assert all(m.provenance.uploader == "person5" and m.query == 0 for m in matches)
    assert all(m.tier == "uncalibrated" and math.isnan(m.fmr) for m in matches)
    assert filled.log_head().seq == before + 1  # one search, one entry
    with pytest.raises(lethe.ArgumentError) as e:
        filled.search(probes, purpose="x", fuse=True, fpir=0.01)
    assert "fpir" in str(e.value)
