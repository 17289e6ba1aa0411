"""The operator's calls on a store: API keys, data-subject requests, the
models of the templates, the keyring, reading a receipt back, and restore.

StoreAdmin is mixed into Store (store.py): its methods use the store's
handle and its error reporting. restore() is a function, as the store it
makes is not open while it runs.
"""

import ctypes
import json

from . import _native as N
from ._native import lib
from .errors import make_error
from .results import (REQUEST_KINDS, ForgetResult, KeyInfo, ModelInfo, RequestInfo,
                      RestoreResult, SubjectPhoto, arg, bytes_arg, path_arg, take_string,
                      text)

_MSG_LEN = 1024
_LOOKUP_KINDS = {"uploader": N.LOOKUP_UPLOADER, "url": N.LOOKUP_URL,
                 "photo_id": N.LOOKUP_PHOTO_ID}


def _request_by(by):
    """A request's kind by name ("uploader", "url", "photo-id" or
    "photo_id", "file", "face") as lethe_request_by."""
    name = by.replace("_", "-")
    if name not in REQUEST_KINDS:
        raise ValueError(f"unknown request kind {by!r} (one of {', '.join(REQUEST_KINDS)})")
    return REQUEST_KINDS.index(name)


def roles_mask(roles):
    """Roles as a LETHE_ROLE_* mask: a list of names or "search,audit"
    (lethe_roles_parse). ArgumentError naming an unknown role."""
    if not isinstance(roles, (str, bytes)):
        roles = ",".join(roles)
    mask = ctypes.c_uint()
    msg = ctypes.create_string_buffer(_MSG_LEN)
    rc = lib.lethe_roles_parse(arg(roles), ctypes.byref(mask), msg, _MSG_LEN)
    if rc:
        raise make_error(rc, msg.value)
    return mask.value


def restore(src, dest, *, actor=None, keyring_mirror=None, discard_newer=False,
            wait_seconds=None):
    """Restore the backup in folder src as the store dest (lethe_restore),
    with the live store's keyring or, when dest is not a live store, the
    one in keyring_mirror. What was erased after the backup is dropped, never
    brought back. Over a live store, photos ingested after the backup are
    refused (ConfirmError) unless discard_newer. Returns a RestoreResult."""
    opt = N.lethe_restore_options()
    lib.lethe_restore_options_init(ctypes.byref(opt))
    keep = (arg(actor), path_arg(keyring_mirror))
    opt.actor, opt.keyring_mirror = keep
    opt.discard_newer = 1 if discard_newer else 0
    if wait_seconds is not None:
        opt.wait_seconds = wait_seconds
    res = N.lethe_restore_result()
    msg = ctypes.create_string_buffer(_MSG_LEN)
    rc = lib.lethe_restore(path_arg(src), path_arg(dest), ctypes.byref(opt), ctypes.byref(res),
                           msg, _MSG_LEN)
    if rc:
        raise make_error(rc, msg.value)
    return RestoreResult._from_c(res)


class StoreAdmin:
    """The operator's calls, as methods of Store."""

    # --- API keys ---------------------------------------------------------------

    def add_key(self, name, roles, *, rate_per_minute=0, daily_quota=0, purpose=None,
                actor=None):
        """Make an API key for name with roles (names, or "search,audit"),
        optional limits and a fixed purpose (lethe_key_add_with_purpose).
        Returns (key, KeyInfo): the key's text is shown here only; the store
        keeps a keyed hash of it. Logged."""
        opt = N.lethe_key_options()
        lib.lethe_key_options_init(ctypes.byref(opt))
        keep = (arg(name), arg(actor))
        opt.name, opt.actor = keep
        opt.roles = roles_mask(roles)
        opt.rate_per_minute = rate_per_minute
        opt.daily_quota = daily_quota
        info = N.lethe_key_info()
        key = ctypes.create_string_buffer(N.KEY_SIZE)
        self._check(lib.lethe_key_add_with_purpose(self._c(), ctypes.byref(opt), arg(purpose),
                                                   ctypes.byref(info), key))
        secret = text(key.value)
        ctypes.memset(key, 0, N.KEY_SIZE)
        return secret, KeyInfo._from_c(info)

    def keys(self):
        """Every key, valid or revoked, by id (lethe_key_list)."""
        out = ctypes.POINTER(N.lethe_key_info)()
        n = ctypes.c_size_t()
        self._check(lib.lethe_key_list(self._c(), ctypes.byref(out), ctypes.byref(n)))
        try:
            return [KeyInfo._from_c(out[i]) for i in range(n.value)]
        finally:
            lib.lethe_keys_free(out)

    def revoke_key(self, key_id, *, actor=None):
        """Revoke key key_id for good (lethe_key_revoke; logged). NotFoundError
        when there is none, ArgumentError when it is revoked already."""
        self._check(lib.lethe_key_revoke(self._c(), key_id, arg(actor)))

    def authenticate(self, key):
        """Who holds this key? Its KeyInfo, or DeniedError saying why
        (lethe_key_authenticate; nothing is logged)."""
        data = arg(key)
        info = N.lethe_key_info()
        self._check(lib.lethe_key_authenticate(self._c(), data, len(data), ctypes.byref(info)))
        return KeyInfo._from_c(info)

    def key_purpose(self, key_id):
        """The purpose fixed on key key_id when it was made, or None."""
        buf = ctypes.create_string_buffer(N.KEY_PURPOSE_MAX + 1)
        self._check(lib.lethe_key_purpose(self._c(), key_id, buf))
        return text(buf.value) or None

    # --- data-subject requests --------------------------------------------------

    def subject_lookup(self, *, uploader=None, url=None, photo_id=None, file_bytes=None,
                       actor=None):
        """What does the store hold about me? (lethe_subject_lookup): exactly
        one of uploader, url, photo_id, or file_bytes (the exact photo file,
        hashed, never decoded). A list of SubjectPhoto. Logged as a lookup."""
        values = dict(uploader=uploader, url=url, photo_id=photo_id, file_bytes=file_bytes)
        given = [k for k, v in values.items() if v is not None]
        if len(given) != 1:
            raise TypeError("subject_lookup takes exactly one of uploader, url, photo_id, "
                            "file_bytes")
        out = ctypes.POINTER(N.lethe_subject_photo)()
        n = ctypes.c_size_t()
        if file_bytes is not None:
            data = bytes(file_bytes)
            rc = lib.lethe_subject_lookup(self._c(), N.LOOKUP_FILE, None, data, len(data),
                                          arg(actor), ctypes.byref(out), ctypes.byref(n))
        else:
            kind = given[0]
            rc = lib.lethe_subject_lookup(self._c(), _LOOKUP_KINDS[kind], arg(values[kind]),
                                          None, 0, arg(actor), ctypes.byref(out),
                                          ctypes.byref(n))
        try:
            self._check(rc)
            return [SubjectPhoto._from_c(out[i]) for i in range(n.value)]
        finally:
            lib.lethe_subject_photos_free(out, n.value)

    def file_request(self, by, value=None, *, optout=False, file_bytes=None, face=None,
                     selfie=None, engine=None, actor=None):
        """File an erasure (or, with optout, an opt-out) request
        (lethe_request_file). by: "uploader", "url" or "photo-id" with value;
        "file" with file_bytes (the exact photo); "face" with face (one
        descriptor) or selfie (a photo's bytes) and the engine that
        describes it. Returns (id, RequestInfo): the id is the requester's
        only handle, shown here once. Approved at once when the operator's
        rule for its kind says so."""
        from .store import descriptor_array
        spec = N.lethe_request_spec()
        spec.action = N.REQUEST_OPTOUT if optout else N.REQUEST_ERASE
        spec.by = _request_by(by)
        keep = [arg(value)]
        spec.value = keep[0]
        data = file_bytes if file_bytes is not None else selfie
        if data is not None:
            spec.bytes, spec.len = bytes_arg(data, keep)
        if face is not None:
            vec = descriptor_array(face)
            keep.append(vec)
            spec.face = ctypes.cast(vec, ctypes.POINTER(ctypes.c_float))
        if engine is not None:
            spec.engine = engine._c()
        rid = ctypes.create_string_buffer(N.REQUEST_ID_SIZE)
        info = N.lethe_request_info()
        self._check(lib.lethe_request_file(self._c(), ctypes.byref(spec), arg(actor), rid,
                                           ctypes.byref(info)))
        return text(rid.value), RequestInfo._from_c(info)

    def request_status(self, request_id):
        """The request with this id, with its signed receipt once done
        (lethe_request_status). NotFoundError for an unknown or wrong id."""
        info = N.lethe_request_info()
        receipt = ctypes.c_void_p()
        rc = lib.lethe_request_status(self._c(), arg(request_id), ctypes.byref(info),
                                      ctypes.byref(receipt))
        body = take_string(lib, receipt)
        self._check(rc)
        return RequestInfo._from_c(info, body)

    def requests(self, *, pending_only=False):
        """Requests by number (lethe_request_list); pending ones carry what
        they select in .selector."""
        out = ctypes.POINTER(N.lethe_request_info)()
        n = ctypes.c_size_t()
        self._check(lib.lethe_request_list(self._c(), 1 if pending_only else 0,
                                           ctypes.byref(out), ctypes.byref(n)))
        try:
            return [RequestInfo._from_c(out[i]) for i in range(n.value)]
        finally:
            lib.lethe_requests_free(out, n.value)

    def approve_request(self, number, *, confirmed=False, actor=None):
        """Approve pending request number: the erasure runs, with a receipt
        (lethe_request_approve). Returns its RequestInfo after."""
        info = N.lethe_request_info()
        self._check(lib.lethe_request_approve(self._c(), number,
                                              N.FORGET_CONFIRMED if confirmed else 0, arg(actor),
                                              ctypes.byref(info)))
        return RequestInfo._from_c(info)

    def deny_request(self, number, *, reason=None, actor=None):
        """Deny pending request number; reason is shown to the requester."""
        self._check(lib.lethe_request_deny(self._c(), number, arg(actor), arg(reason)))

    def set_request_auto(self, by, automatic, *, actor=None):
        """Approve requests of kind by at once (True) or let them wait."""
        self._check(lib.lethe_request_auto_set(self._c(), _request_by(by),
                                               1 if automatic else 0, arg(actor)))

    def request_auto(self):
        """The kinds approved at once, as a set of names."""
        mask = ctypes.c_uint()
        self._check(lib.lethe_request_auto_get(self._c(), ctypes.byref(mask)))
        return {name for i, name in enumerate(REQUEST_KINDS) if mask.value & (1 << i)}

    # --- models -------------------------------------------------------------------

    def models(self):
        """Every model the store has seen, oldest first (lethe_model_list)."""
        out = ctypes.POINTER(N.lethe_model_info)()
        n = ctypes.c_size_t()
        self._check(lib.lethe_model_list(self._c(), ctypes.byref(out), ctypes.byref(n)))
        try:
            return [ModelInfo._from_c(out[i]) for i in range(n.value)]
        finally:
            lib.lethe_free_models(out)

    def find_model(self, which):
        """A model by its number, NAME or NAME@VERSION[@WEIGHTS]
        (lethe_model_find); NotFoundError when the store has not seen it."""
        info = N.lethe_model_info()
        self._check(lib.lethe_model_find(self._c(), arg(str(which)), ctypes.byref(info)))
        return ModelInfo._from_c(info)

    def retire_model(self, which, *, dry_run=False, confirmed=False, actor=None):
        """Erase every template model which made (lethe_model_retire): an
        erasure with a receipt, of everyone's templates, so it needs
        confirmed (ConfirmError otherwise, whose .result holds the counts);
        dry_run only counts. The model may never add templates again.
        Returns a ForgetResult."""
        flags = (N.FORGET_DRY_RUN if dry_run else 0) | (N.FORGET_CONFIRMED if confirmed else 0)
        res = N.lethe_forget_result()
        receipt = ctypes.c_void_p()
        rc = lib.lethe_model_retire(self._c(), arg(str(which)), flags, arg(actor),
                                    ctypes.byref(res), ctypes.byref(receipt))
        result = ForgetResult._from_c(res, take_string(lib, receipt), None)
        if rc:
            err = make_error(rc, lib.lethe_store_errmsg(self._ptr))
            err.result = result
            raise err
        return result

    # --- the keyring, receipts ----------------------------------------------------

    def keyring_check(self):
        """The keyring's state (lethe_keyring_check), parsed from its JSON."""
        return json.loads(self._string_call(lib.lethe_keyring_check))

    def keyring_mirror(self, folder, *, actor=None):
        """Mirror the keyring into folder from now on (None stops)."""
        self._check(lib.lethe_keyring_mirror(self._c(), path_arg(folder), arg(actor)))

    def keyring_rotate(self, *, actor=None):
        """A new receipt-signing key; returns its public key, hex. Receipts
        the old key signed still check."""
        buf = ctypes.create_string_buffer(65)
        self._check(lib.lethe_keyring_rotate(self._c(), arg(actor), buf))
        return text(buf.value)

    def receipt(self, receipt_hash):
        """A receipt this store issued, byte for byte, by its hash
        (lethe_receipt_get). NotFoundError when it holds none."""
        return self._string_call(lib.lethe_receipt_get, arg(receipt_hash))
