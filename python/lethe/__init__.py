"""lethe: a face recognition database that keeps provenance and consent with
every face and can forget for real; Python bindings over liblethe.

A thin binding (ctypes over liblethe.so, the library's public API only):

    import lethe

    with lethe.Engine() as engine, lethe.Store("faces", create=True) as store:
        with store.ingest(engine=engine, actor="me") as ing:
            ing.add_photo("a.jpg", lethe.Provenance(uploader="alice",
                                                    jurisdiction="US",
                                                    consent="explicit"))
        print(ing.stats)
        for m in store.search_image("query.jpg", engine, purpose="testing"):
            print(m.distance, m.photo, m.provenance.uploader)
        done = store.forget(uploader="alice")
        lethe.verify_receipt(done.receipt)     # raises if altered
        store.check_receipt(done.receipt)      # raises unless this store issued it

Errors are exceptions: each LETHE_ERR_* status has its class under
LetheError (BusyError, NoFaceError, ...), carrying the library's message.
Results are dataclasses (Match, Analysis, Face, ForgetResult, ...).
The library is found at $LETHE_LIBRARY, else ../build/liblethe.so from this
package's source tree (`make python`), else on the system's library path.
"""

import ctypes

from . import _native
from ._native import lib, library_path
from .engine import Engine
from .errors import (ERRORS, ArgumentError, BusyError, ConfirmError, DeniedError, FormatError,
                     InputOutputError, InternalError, LetheError, ModelError, NoFaceError,
                     NotFoundError, OutOfMemoryError, PolicyError, StoreError, TooLargeError,
                     UnsupportedError, error_class, make_error)
from .image import Image
from .results import (Analysis, Face, ForgetResult, FullDigest, IngestIssue, IngestStats,
                      LogHead, LookupPhoto, LookupResult, Match, MatchedPhoto, PolicyDecision,
                      Provenance, ProvenanceRecord, VerifyResult, arg, text)
from .store import Ingest, Store, descriptor_array
from .admin import restore, roles_mask
from .results import KeyInfo, ModelInfo, PurposeCount, RequestInfo, RestoreResult, SubjectPhoto

LANDMARKS = _native.LANDMARKS
DESCRIPTOR_DIM = _native.DESCRIPTOR_DIM

_MSG_LEN = 1024


def version():
    """The library's version at run time, e.g. "0.2.0"."""
    return text(lib.lethe_version())


def strerror(status):
    """The library's fixed description of a status code."""
    return text(lib.lethe_strerror(status))


def descriptor_distance(a, b):
    """Euclidean distance between two descriptors (lethe_descriptor_distance)."""
    return lib.lethe_descriptor_distance(descriptor_array(a), descriptor_array(b))


def descriptor_threshold():
    """The calibrated same-person threshold: a distance below it means "same"."""
    return lib.lethe_descriptor_threshold()


def forget_face_threshold():
    """The default face threshold of an erasure by face."""
    return lib.lethe_forget_face_threshold()


def parse_descriptor(json_text):
    """One descriptor from JSON text: an array of 128 numbers, or an object
    whose "embedding" or "descriptor" is one (lethe_descriptor_parse).
    FormatError saying what is wrong."""
    data = arg(json_text)
    out = (ctypes.c_float * DESCRIPTOR_DIM)()
    msg = ctypes.create_string_buffer(_MSG_LEN)
    rc = lib.lethe_descriptor_parse(data, len(data), out, msg, _MSG_LEN)
    if rc:
        raise make_error(rc, msg.value)
    return tuple(out)


def verify_receipt(receipt, store_key=None):
    """Check a receipt's signature against the key it names and, if
    store_key (hex) is given, that it is this key (lethe_receipt_verify).
    It proves the receipt unaltered, not that any store issued it
    (Store.check_receipt does). FormatError saying why, otherwise None."""
    data = arg(receipt)
    msg = ctypes.create_string_buffer(_MSG_LEN)
    rc = lib.lethe_receipt_verify(data, len(data), arg(store_key), msg, _MSG_LEN)
    if rc:
        raise make_error(rc, msg.value)


__all__ = [
    "Analysis", "ArgumentError", "BusyError", "ConfirmError", "DESCRIPTOR_DIM", "DeniedError",
    "ERRORS",
    "Engine", "Face", "ForgetResult", "FormatError", "FullDigest", "Image", "Ingest",
    "IngestIssue", "IngestStats", "InputOutputError", "InternalError", "LANDMARKS",
    "LetheError", "LogHead", "LookupPhoto", "LookupResult", "Match", "MatchedPhoto",
    "ModelError", "NoFaceError", "NotFoundError", "OutOfMemoryError", "PolicyDecision",
    "PolicyError", "Provenance", "ProvenanceRecord", "Store", "StoreError", "TooLargeError",
    "UnsupportedError", "VerifyResult", "descriptor_distance", "descriptor_threshold", "error_class",
    "forget_face_threshold", "library_path", "parse_descriptor", "strerror",
    "verify_receipt", "version",
    "KeyInfo", "ModelInfo", "PurposeCount", "RequestInfo", "RestoreResult", "SubjectPhoto",
    "restore", "roles_mask",
]
