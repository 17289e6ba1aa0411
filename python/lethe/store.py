"""The store (lethe_store): photos with their provenance, face templates,
the consent policy, the audit log; ingest, search, lookup and forgetting."""

import ctypes
import json
import weakref

from . import _native as N
from ._native import lib
from .admin import StoreAdmin
from .errors import make_error
from .image import Image
from .results import (ForgetResult, FullDigest, IngestIssue, IngestStats, LogHead,
                      LookupResult, Match, PolicyDecision, Provenance, VerifyResult, arg,
                      bytes_arg, path_arg, take_string, text)

_LOOKUP_KINDS = {"uploader": N.LOOKUP_UPLOADER, "url": N.LOOKUP_URL,
                 "photo_id": N.LOOKUP_PHOTO_ID, "file": N.LOOKUP_FILE}


def descriptor_array(descriptor):
    """One descriptor (128 numbers) as a C float[128]."""
    values = list(descriptor)
    if len(values) != N.DESCRIPTOR_DIM:
        raise ValueError(f"a descriptor has {N.DESCRIPTOR_DIM} numbers, not {len(values)}")
    return (ctypes.c_float * N.DESCRIPTOR_DIM)(*values)


def descriptors_array(descriptors):
    """One descriptor (a sequence of 128 numbers) or several (a sequence of
    such) as one C float array of n*128, and n."""
    items = list(descriptors)
    if items and not hasattr(items[0], "__len__") and not hasattr(items[0], "__iter__"):
        items = [items]
    flat = []
    for d in items:
        values = list(d)
        if len(values) != N.DESCRIPTOR_DIM:
            raise ValueError(f"a descriptor has {N.DESCRIPTOR_DIM} numbers, not {len(values)}")
        flat.extend(values)
    return (ctypes.c_float * len(flat))(*flat), len(items)


class Store(StoreAdmin):
    """A store opened (lethe_store_open_with) in directory path.

    create makes the directory and catalog if absent; readonly never
    writes. Arguments left None keep the library's defaults
    (lethe_store_options_init): actor (who creates the store, logged),
    wait_seconds (how long a writer waits for another: 30; 0: not at all),
    keyring_mirror (with create: a folder where the keyring is mirrored).
    Close it with close() or a with block; it is closed when collected.

    The store reports a failure's message per handle (lethe_store_errmsg),
    not per thread: a Store shared by threads may raise an exception
    carrying another thread's message if two calls fail at once.
    """

    def __init__(self, path, *, create=False, readonly=False, actor=None, wait_seconds=None,
                 keyring_mirror=None):
        opt = N.lethe_store_options()
        lib.lethe_store_options_init(ctypes.byref(opt))
        opt.flags = (N.STORE_CREATE if create else 0) | (N.STORE_READONLY if readonly else 0)
        keep = (arg(actor), path_arg(keyring_mirror))
        opt.actor, opt.keyring_mirror = keep
        if wait_seconds is not None:
            opt.wait_seconds = wait_seconds
        ptr = ctypes.POINTER(N.lethe_store)()
        rc = lib.lethe_store_open_with(path_arg(path), ctypes.byref(opt), ctypes.byref(ptr))
        if rc:
            message = lib.lethe_store_errmsg(ptr)
            lib.lethe_store_close(ptr)
            raise make_error(rc, message)
        self._ptr = ptr
        self._users = weakref.WeakSet()  # ingests: ended before the store closes
        self._finalizer = weakref.finalize(self, lib.lethe_store_close, ptr)

    # --- plumbing ---------------------------------------------------------

    def _c(self):
        if not self._ptr:
            raise ValueError("the store is closed")
        return self._ptr

    def _check(self, rc):
        """Raise the exception for status rc with the store's message."""
        if rc:
            raise make_error(rc, lib.lethe_store_errmsg(self._ptr))

    def _string_call(self, fn, *args):
        """Call fn(store, *args, char **out) and return *out as str."""
        out = ctypes.c_void_p()
        rc = fn(self._c(), *args, ctypes.byref(out))
        result = take_string(lib, out)
        self._check(rc)
        return result

    def close(self):
        """Close the store (lethe_store_close); an ingest still open on it is
        ended first (what it was offered is committed). Closing twice is
        fine."""
        for user in list(self._users):
            user.end()
        self._finalizer()
        self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"<lethe.Store {self.path!r}>" if self._ptr else "<lethe.Store closed>"

    @property
    def path(self):
        """The store's directory, as given when it was opened."""
        return text(lib.lethe_store_path(self._c()))

    # --- ingest -------------------------------------------------------------

    def ingest(self, *, engine=None, actor=None, threads=None, batch_photos=None,
               batch_seconds=None):
        """Begin an ingest (lethe_ingest_begin); see Ingest. engine is
        required to ingest photos, not descriptors."""
        return Ingest(self, engine=engine, actor=actor, threads=threads,
                      batch_photos=batch_photos, batch_seconds=batch_seconds)

    # --- search -------------------------------------------------------------

    def _search_options(self, purpose, actor, top_k, threshold, threads, fpir=None):
        opt = N.lethe_search_options()
        lib.lethe_search_options_init(ctypes.byref(opt))
        keep = (arg(purpose), arg(actor))
        opt.purpose, opt.actor = keep
        for name, value in (("top_k", top_k), ("threshold", threshold), ("threads", threads),
                            ("fpir", fpir)):
            if value is not None:
                setattr(opt, name, value)
        return opt, keep

    def _matches(self, rc, matches, count):
        try:
            self._check(rc)
            return [Match._from_c(matches[i]) for i in range(count.value)]
        finally:
            lib.lethe_matches_free(matches, count.value)

    def search(self, descriptors, *, purpose, actor=None, top_k=None, threshold=None,
               threads=None, fpir=None, fuse=False):
        """Exact 1:N search (lethe_search) for one descriptor (128 numbers)
        or several (a sequence of them): for each, the top_k nearest
        templates at most threshold away, nearest first, as one list of
        Match (Match.query says which query each answers). purpose is
        required by the library (ArgumentError without one); the search is
        logged with it and actor before results are returned.

        fpir: instead of a threshold, the chance (0 < fpir < 1) that a
        search for someone the store does not hold returns any face; the
        threshold is chosen from the calibration table and the store's
        size. Each Match carries its evidence (fmr, strangers, gallery,
        tier).

        fuse=True: the descriptors are several photos of one person, ranked
        once by their mean (lethe_search_fused): one list, one log entry;
        its matches are tier "uncalibrated" (fmr and strangers NaN), and
        fpir is refused."""
        queries, nq = descriptors_array(descriptors)
        opt, keep = self._search_options(purpose, actor, top_k, threshold, threads, fpir)
        matches = ctypes.POINTER(N.lethe_match)()
        count = ctypes.c_size_t(0)
        fn = lib.lethe_search_fused if fuse else lib.lethe_search
        rc = fn(self._c(), queries, nq, ctypes.byref(opt), ctypes.byref(matches),
                ctypes.byref(count))
        return self._matches(rc, matches, count)

    def verify(self, descriptor, *, purpose, uploader=None, url=None, photo_id=None, file=None,
               actor=None, threshold=None):
        """1:1 verification (lethe_verify): is descriptor the person of the
        photos held for this account, link, photo id (the source's, or the
        SHA-256 hex) or file (its bytes hashed)? Exactly one of them.
        Logged with purpose and a keyed hash of the value. NotFoundError
        when the store holds no template of those photos."""
        given = [(k, v) for k, v in (("uploader", uploader), ("url", url),
                                      ("photo_id", photo_id), ("file", file)) if v is not None]
        if len(given) != 1:
            raise TypeError("verify takes exactly one of uploader, url, photo_id, file")
        kind, value = given[0]
        value = path_arg(value) if kind == "file" else arg(value)
        opt, keep = self._search_options(purpose, actor, None, threshold, None)
        result = N.lethe_verify_result()
        self._check(lib.lethe_verify(self._c(), descriptor_array(descriptor),
                                     _LOOKUP_KINDS[kind], value, ctypes.byref(opt),
                                     ctypes.byref(result)))
        return VerifyResult._from_c(result)

    def search_image(self, image, engine, *, purpose, actor=None, top_k=None, threshold=None,
                     threads=None):
        """Search with the largest face of image (lethe_search_image): an
        Image, a path or a photo's bytes (decoded with Image.load or
        Image.decode). NoFaceError when it holds none (nothing is logged)."""
        if isinstance(image, Image):
            return self._search_image(image, engine, purpose, actor, top_k, threshold, threads)
        if isinstance(image, (bytes, bytearray, memoryview)):
            img = Image.decode(image)
        else:
            img = Image.load(image)
        with img:
            return self._search_image(img, engine, purpose, actor, top_k, threshold, threads)

    def _search_image(self, image, engine, purpose, actor, top_k, threshold, threads):
        opt, keep = self._search_options(purpose, actor, top_k, threshold, threads)
        matches = ctypes.POINTER(N.lethe_match)()
        count = ctypes.c_size_t(0)
        rc = lib.lethe_search_image(self._c(), engine._c(), image._c(), ctypes.byref(opt),
                                    ctypes.byref(matches), ctypes.byref(count))
        return self._matches(rc, matches, count)

    # --- lookup -------------------------------------------------------------

    def _lookup(self, selectors, actor, fmt):
        given = [(k, v) for k, v in selectors.items() if v is not None]
        if len(given) != 1:
            raise TypeError("lookup takes exactly one of uploader, url, photo_id, file, "
                            "file_bytes")
        kind, value = given[0]
        if kind == "file_bytes":
            data = bytes(value)
            return self._string_call(lib.lethe_lookup_bytes, data, len(data), arg(actor),
                                     arg(fmt))
        value = path_arg(value) if kind == "file" else arg(value)
        return self._string_call(lib.lethe_lookup, _LOOKUP_KINDS[kind], value, arg(actor),
                                 arg(fmt))

    def lookup(self, *, uploader=None, url=None, photo_id=None, file=None, file_bytes=None,
               actor=None):
        """What does the store hold for this account, link, photo id (the
        source's, or the SHA-256 hex), file (its bytes hashed) or
        file_bytes (the file's bytes, as a server receives them: hashed,
        never decoded)? Exactly one of them. Logged with a keyed hash of the
        value (lethe_lookup, lethe_lookup_bytes). Returns a LookupResult."""
        doc = self._lookup(dict(uploader=uploader, url=url, photo_id=photo_id, file=file,
                                file_bytes=file_bytes), actor, "json")
        return LookupResult._from_json(doc)

    def lookup_text(self, *, uploader=None, url=None, photo_id=None, file=None,
                    file_bytes=None, actor=None):
        """The same answer as lookup, as the library's text for people."""
        return self._lookup(dict(uploader=uploader, url=url, photo_id=photo_id, file=file,
                                 file_bytes=file_bytes), actor, "text")

    # --- forgetting ---------------------------------------------------------

    def forget(self, *, photo_id=None, url=None, uploader=None, source=None,
               jurisdiction=None, collected_before=None, include_undated=False, image=None,
               image_bytes=None, faces=None, face_threshold=None, dry_run=False, optout=False,
               confirmed=False, actor=None):
        """Erase what the selectors select, completely (lethe_forget): every
        selector given must hold. photo_id, url, uploader, source,
        jurisdiction, collected_before (ISO 8601; include_undated takes
        photos without a date too), image (a file: that exact photo) or
        image_bytes (its bytes) select whole photos; faces (descriptors of
        one person, within face_threshold: None for the library's default)
        select faces.

        dry_run counts and changes nothing; optout also refuses such photos
        and faces from now on; confirmed is needed for erasures wider than
        one person (without it, ConfirmError, whose .result is the dry run's
        with .wide saying why). Returns a ForgetResult with the signed
        receipt. Any exception raised here carries .result (a ForgetResult
        or None): if the erasure committed before a later step failed, its
        receipt is there.
        """
        sel = N.lethe_selector()
        keep = [arg(photo_id), arg(url), arg(uploader), arg(source), arg(jurisdiction),
                arg(collected_before), path_arg(image)]
        (sel.photo_id, sel.url, sel.uploader, sel.source, sel.jurisdiction,
         sel.collected_before, sel.image) = keep
        sel.include_undated = 1 if include_undated else 0
        if image_bytes is not None:
            sel.image_bytes, sel.image_len = bytes_arg(image_bytes, keep)
        if faces is not None:
            vecs, n = descriptors_array(faces)
            keep.append(vecs)
            sel.faces = ctypes.cast(vecs, ctypes.POINTER(ctypes.c_float))
            sel.n_faces = n
        if face_threshold is not None:
            sel.face_threshold = face_threshold
        flags = ((N.FORGET_DRY_RUN if dry_run else 0) | (N.FORGET_OPTOUT if optout else 0) |
                 (N.FORGET_CONFIRMED if confirmed else 0))
        res = N.lethe_forget_result()
        receipt, matched = ctypes.c_void_p(), ctypes.c_void_p()
        rc = lib.lethe_forget(self._c(), ctypes.byref(sel), flags, arg(actor), ctypes.byref(res),
                              ctypes.byref(receipt), ctypes.byref(matched))
        result = ForgetResult._from_c(res, take_string(lib, receipt), take_string(lib, matched))
        if rc:
            err = make_error(rc, lib.lethe_store_errmsg(self._ptr))
            err.result = result
            raise err
        return result

    def check_receipt(self, receipt):
        """Check that this store issued receipt (str or bytes): signed by one
        of its keys and recorded in its log (lethe_receipt_check).
        FormatError saying what failed, otherwise None."""
        data = arg(receipt)
        self._check(lib.lethe_receipt_check(self._c(), data, len(data)))

    @property
    def public_key(self):
        """The store's current receipt-signing public key, hex."""
        buf = ctypes.create_string_buffer(65)
        self._check(lib.lethe_store_public_key(self._c(), buf))
        return text(buf.value)

    def optouts(self):
        """The standing opt-outs (lethe_optout_list), parsed from its JSON."""
        return json.loads(self._string_call(lib.lethe_optout_list))

    def remove_optout(self, optout_id, *, actor=None):
        """Withdraw an opt-out by its id (lethe_optout_remove)."""
        self._check(lib.lethe_optout_remove(self._c(), optout_id, arg(actor)))

    def backup(self, dest, *, actor=None):
        """Back the store up into the new folder dest (lethe_backup; never
        the keyring). Returns backup.json, parsed."""
        return json.loads(self._string_call(lib.lethe_backup, path_arg(dest), arg(actor)))

    # --- the log, the policy, the datasheet, the digest ---------------------

    def log(self, format="jsonl"):
        """Every log entry, as "jsonl" or "text" (lethe_log_export)."""
        return self._string_call(lib.lethe_log_export, arg(format))

    def log_head(self):
        """The log's last entry: a LogHead (lethe_log_head)."""
        seq, buf = ctypes.c_uint64(0), ctypes.create_string_buffer(65)
        self._check(lib.lethe_log_head(self._c(), ctypes.byref(seq), buf))
        return LogHead(seq=seq.value, hash=text(buf.value))

    def verify_log(self):
        """Check the log's hash chain (lethe_log_verify) and return its
        number of entries. FormatError if it is broken, with .first_bad the
        number of the first entry that fails."""
        entries, first_bad = ctypes.c_uint64(0), ctypes.c_uint64(0)
        rc = lib.lethe_log_verify(self._c(), ctypes.byref(entries), ctypes.byref(first_bad))
        if rc:
            err = make_error(rc, lib.lethe_store_errmsg(self._ptr))
            err.first_bad = first_bad.value
            raise err
        return entries.value

    def policy(self):
        """The consent policy's text (lethe_policy_get)."""
        return self._string_call(lib.lethe_policy_get)

    def set_policy(self, key, consents, *, actor=None, dry_run=False):
        """Set what key (default, EEA, a country or subdivision) allows:
        consents is a comma-separated list of bases, "" to refuse all
        (lethe_policy_set). Returns how many templates held the new rule
        drops (or, dry run, would drop)."""
        dropped = ctypes.c_uint64(0)
        self._check(lib.lethe_policy_set(self._c(), arg(key), arg(consents), arg(actor),
                                         1 if dry_run else 0, ctypes.byref(dropped)))
        return dropped.value

    def check_policy(self, jurisdiction, consent):
        """May a template be computed for (jurisdiction, consent)? A
        PolicyDecision (lethe_policy_check); ArgumentError for a bad
        argument, the status's exception for another failure."""
        rule = ctypes.c_char_p()
        rc = lib.lethe_policy_check(self._c(), arg(jurisdiction), arg(consent),
                                    ctypes.byref(rule))
        if rc < 0:  # minus the status; the library's message says why
            self._check(-rc)
        return PolicyDecision(allowed=rc == 1, rule=text(rule.value))

    def datasheet(self, format="json"):
        """The datasheet as "json", "md" or "html" (lethe_datasheet)."""
        return self._string_call(lib.lethe_datasheet, arg(format))

    def digest(self):
        """The canonical digest of the store's content, hex (lethe_store_digest)."""
        buf = ctypes.create_string_buffer(65)
        self._check(lib.lethe_store_digest(self._c(), buf))
        return text(buf.value)

    def digest_full(self):
        """The digest recomputed from every record: a FullDigest
        (lethe_store_digest_full)."""
        buf, matches = ctypes.create_string_buffer(65), ctypes.c_int(0)
        self._check(lib.lethe_store_digest_full(self._c(), buf, ctypes.byref(matches)))
        return FullDigest(digest=text(buf.value), matches=bool(matches.value))


def _end_collected(ptr, callback):
    lib.lethe_ingest_end(ptr, None)


class Ingest:
    """An ingest (lethe_ingest_begin ... lethe_ingest_end): offer photos or
    descriptors with their provenance; they are analysed in parallel and
    committed in batches. Leaving a with block (even by an exception) or
    calling end() waits for the photos in flight and commits: the library
    has no way to abandon an ingest. Inputs that fail do not raise: they
    are counted in the stats and listed in .issues (IngestIssue); a call
    raises only when the ingest cannot go on (the store cannot be written).
    """

    def __init__(self, store, *, engine=None, actor=None, threads=None, batch_photos=None,
                 batch_seconds=None):
        opt = N.lethe_ingest_options()
        lib.lethe_ingest_options_init(ctypes.byref(opt))
        self.issues = issues = []
        self.stats = None
        self._store, self._engine = store, engine
        self._actor = arg(actor)

        # Runs on whichever thread reports, while the calling thread is in
        # the library (ctypes released the GIL). It holds the list, not
        # self, so that the finalizer below may keep it alive.
        def report(ctx, input, line, message):
            issues.append(IngestIssue(input=text(input), line=line, message=text(message)))

        self._on_error = N.lethe_ingest_error_fn(report)
        opt.engine = engine._c() if engine is not None else None
        opt.actor = self._actor
        opt.on_error = self._on_error
        for name, value in (("threads", threads), ("batch_photos", batch_photos),
                            ("batch_seconds", batch_seconds)):
            if value is not None:
                setattr(opt, name, value)
        ptr = ctypes.POINTER(N.lethe_ingest)()
        store._check(lib.lethe_ingest_begin(store._c(), ctypes.byref(opt), ctypes.byref(ptr)))
        self._ptr = ptr
        store._users.add(self)
        if engine is not None:
            engine._users.add(self)
        # Collected without end(): ended then (the callback kept alive for it).
        self._finalizer = weakref.finalize(self, _end_collected, ptr, self._on_error)

    def _c(self):
        if not self._ptr:
            raise ValueError("the ingest has ended")
        return self._ptr

    @staticmethod
    def _prov(provenance):
        if provenance is None:
            return None, None
        if isinstance(provenance, dict):
            provenance = Provenance(**provenance)
        return provenance._to_c()

    def add_photo(self, path, provenance=None, *, line=0):
        """Offer the photo file at path with its provenance (a Provenance or
        a dict of its fields) (lethe_ingest_photo)."""
        prov, keep = self._prov(provenance)
        self._store._check(lib.lethe_ingest_photo(
            self._c(), path_arg(path), ctypes.byref(prov) if prov else None, line))

    def add_photo_bytes(self, data, provenance=None, *, name=None, line=0):
        """Offer a photo held in memory; name is used in messages and
        recorded as its path (lethe_ingest_photo_bytes). The bytes are copied."""
        data = bytes(data)
        prov, keep = self._prov(provenance)
        self._store._check(lib.lethe_ingest_photo_bytes(
            self._c(), data, len(data), arg(name), ctypes.byref(prov) if prov else None, line))

    def add_descriptor(self, descriptor, provenance=None, *, line=0):
        """Offer one descriptor (128 numbers) computed elsewhere
        (lethe_ingest_descriptor); its "photo" is the descriptor's hash."""
        vec = descriptor_array(descriptor)
        prov, keep = self._prov(provenance)
        self._store._check(lib.lethe_ingest_descriptor(
            self._c(), vec, ctypes.byref(prov) if prov else None, line))

    def fail(self, input, message, *, line=0):
        """Record an input that failed before it could be offered
        (lethe_ingest_fail): counted in errors and listed in issues."""
        self._store._check(lib.lethe_ingest_fail(self._c(), arg(input), line, arg(message)))

    def progress(self):
        """Counts so far, committed batches and the open one (IngestStats)."""
        stats = N.lethe_ingest_stats()
        lib.lethe_ingest_progress(self._c(), ctypes.byref(stats))
        return IngestStats._from_c(stats)

    def end(self):
        """Wait for the photos in flight, commit, and free the ingest
        (lethe_ingest_end). Returns the IngestStats of what was committed
        (also kept in .stats); a second call returns them again."""
        if not self._ptr:
            return self.stats
        stats = N.lethe_ingest_stats()
        ptr, self._ptr = self._ptr, None
        self._finalizer.detach()
        rc = lib.lethe_ingest_end(ptr, ctypes.byref(stats))
        self.stats = IngestStats._from_c(stats)
        self._store._users.discard(self)
        if self._engine is not None:
            self._engine._users.discard(self)
        self._store._check(rc)
        return self.stats

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.end()
