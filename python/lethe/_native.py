"""ctypes declarations of liblethe's public API, written from include/lethe.h.

Every structure here mirrors one of lethe.h field for field (the tests
compare their sizes and offsets with what the C compiler says), and every
function gets its argument and result types, so that ctypes converts and
checks arguments instead of guessing. Nothing here holds logic: the classes
in the package turn these into Python objects.

The library is looked up, in order, at $LETHE_LIBRARY, then in the build
folder of the source tree this package sits in (../../build/liblethe.so,
made by `make python`), then by ctypes.util.find_library("lethe").
"""

import ctypes
import ctypes.util
import os
from ctypes import (CFUNCTYPE, POINTER, Structure, c_char, c_char_p, c_double, c_float,
                    c_int, c_int64, c_size_t, c_uint, c_uint8, c_uint32, c_uint64, c_void_p)

# --- constants (lethe.h) ------------------------------------------------

LANDMARKS = 68
DESCRIPTOR_DIM = 128

DETECTOR_SSD, DETECTOR_TINY = 0, 1
PRECISION_DEFAULT, PRECISION_FP32, PRECISION_INT8 = 0, 1, 2
ALIGN_SIMILARITY, ALIGN_BOX = 0, 1

WANT_LANDMARKS = 1
WANT_DESCRIPTOR = 2
LARGEST_FACE = 4
CHIP = 8
SINGLE_THREAD = 256

STORE_CREATE = 1
STORE_READONLY = 2

LOOKUP_UPLOADER, LOOKUP_URL, LOOKUP_PHOTO_ID, LOOKUP_FILE = 0, 1, 2, 3

FORGET_DRY_RUN = 1
FORGET_OPTOUT = 2
FORGET_CONFIRMED = 4

REQUEST_BY_UPLOADER, REQUEST_BY_URL, REQUEST_BY_PHOTO_ID, REQUEST_BY_FILE, REQUEST_BY_FACE = \
    0, 1, 2, 3, 4
REQUEST_KINDS = 5
REQUEST_ERASE, REQUEST_OPTOUT = 0, 1
REQUEST_ID_SIZE = 48

ROLE_ADMIN, ROLE_INGEST, ROLE_SEARCH, ROLE_AUDIT, ROLE_ERASURE = 0x01, 0x02, 0x04, 0x08, 0x10
ROLES_ALL = 0x1f
KEY_SIZE = 80
KEY_NAME_MAX = 128
ROLES_TEXT = 40
KEY_PURPOSE_MAX = 1024

# --- opaque handles -------------------------------------------------------


class lethe_engine(Structure):
    """Opaque: only pointers to it are used."""


class lethe_store(Structure):
    """Opaque: only pointers to it are used."""


class lethe_ingest(Structure):
    """Opaque: only pointers to it are used."""


# --- structures ------------------------------------------------------------


class lethe_image(Structure):
    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("rgb", POINTER(c_uint8)),
        ("orig_width", c_int),
        ("orig_height", c_int),
    ]


class lethe_image_options(Structure):
    _fields_ = [
        ("max_pixels", c_uint64),
        ("max_dimension", c_int),
        ("min_decode_side", c_int),
        ("apply_orientation", c_int),
    ]


class lethe_engine_options(Structure):
    _fields_ = [
        ("model_dir", c_char_p),
        ("detector", c_int),
        ("precision", c_int),
        ("align", c_int),
        ("threads", c_int),
        ("min_score", c_float),
        ("min_face_size", c_int),
        ("tiny_input_size", c_int),
        ("max_faces", c_int),
        ("single_pass", c_int),
        ("mirror_average", c_int),
    ]


class lethe_face(Structure):
    _fields_ = [
        ("box", c_float * 4),
        ("score", c_float),
        ("landmarks", (c_float * 2) * LANDMARKS),
        ("descriptor", c_float * DESCRIPTOR_DIM),
        ("has_landmarks", c_int),
        ("has_descriptor", c_int),
        ("crop_w", c_int),
        ("crop_h", c_int),
    ]


class lethe_analysis(Structure):
    _fields_ = [
        ("width", c_int),
        ("height", c_int),
        ("faces", POINTER(lethe_face)),
        ("count", c_int),
    ]


lethe_wait_fn = CFUNCTYPE(None, c_void_p, c_char_p, c_double)


class lethe_store_options(Structure):
    _fields_ = [
        ("flags", c_uint),
        ("actor", c_char_p),
        ("wait_seconds", c_double),
        ("on_wait", lethe_wait_fn),
        ("ctx", c_void_p),
        ("keyring_mirror", c_char_p),
    ]


class lethe_provenance(Structure):
    _fields_ = [
        ("path", c_char_p),
        ("photo_id", c_char_p),
        ("url", c_char_p),
        ("uploader", c_char_p),
        ("source", c_char_p),
        ("license", c_char_p),
        ("jurisdiction", c_char_p),
        ("consent", c_char_p),
        ("collected_at", c_char_p),
    ]


class lethe_ingest_stats(Structure):
    _fields_ = [(name, c_uint64) for name in (
        "seen", "added", "duplicates", "provenance", "faces", "templates", "refused",
        "withdrawn", "no_face", "errors", "bytes", "opted_out", "opted_out_faces",
        "uncommitted")]


lethe_ingest_error_fn = CFUNCTYPE(None, c_void_p, c_char_p, c_size_t, c_char_p)


class lethe_ingest_options(Structure):
    _fields_ = [
        ("engine", POINTER(lethe_engine)),
        ("actor", c_char_p),
        ("threads", c_int),
        ("batch_photos", c_int),
        ("batch_seconds", c_double),
        ("on_error", lethe_ingest_error_fn),
        ("ctx", c_void_p),
        ("model", c_void_p),  # const lethe_model_id *: NULL, the shipped model
    ]


class lethe_match(Structure):
    _fields_ = [
        ("distance", c_float),
        ("query", c_int),
        ("face", c_int64),
        ("photo", c_char * 65),
        ("box", c_float * 4),
        ("provenance_count", c_int),
        ("prov", lethe_provenance),
        ("fmr", c_double),
        ("strangers", c_double),
        ("gallery", c_uint64),
        ("tier", c_int),
    ]


class lethe_verify_result(Structure):
    _fields_ = [
        ("distance", c_float),
        ("match", c_int),
        ("threshold", c_float),
        ("face", c_int64),
        ("photo", c_char * 65),
        ("templates", c_int),
        ("photos", c_int),
    ]


class lethe_search_options(Structure):
    _fields_ = [
        ("purpose", c_char_p),
        ("actor", c_char_p),
        ("top_k", c_int),
        ("threshold", c_float),
        ("threads", c_int),
        ("fpir", c_double),
        ("model", c_void_p),  # const lethe_model_id *: NULL, the shipped model
    ]


class lethe_selector(Structure):
    _fields_ = [
        ("photo_id", c_char_p),
        ("url", c_char_p),
        ("uploader", c_char_p),
        ("source", c_char_p),
        ("jurisdiction", c_char_p),
        ("collected_before", c_char_p),
        ("include_undated", c_int),
        ("image", c_char_p),
        ("image_bytes", c_void_p),
        ("image_len", c_size_t),
        ("faces", POINTER(c_float)),
        ("n_faces", c_int),
        ("face_threshold", c_float),
    ]


class lethe_forget_result(Structure):
    _fields_ = [
        ("photos", c_uint64),
        ("provenance", c_uint64),
        ("faces", c_uint64),
        ("templates", c_uint64),
        ("undated_kept", c_uint64),
        ("digest_before", c_char * 65),
        ("digest_after", c_char * 65),
        ("receipt_hash", c_char * 65),
        ("wide", c_char_p),
    ]


class lethe_model_id(Structure):
    _fields_ = [
        ("name", c_char * 64),
        ("version", c_char * 32),
        ("weights", c_char * 65),
        ("precision", c_char * 16),
    ]


class lethe_model_info(Structure):
    _fields_ = [
        ("id", c_int64),
        ("model", lethe_model_id),
        ("first_used", c_char * 32),
        ("retired_at", c_char * 32),
        ("templates", c_uint64),
        ("faces", c_uint64),
        ("shipped", c_int),
    ]


class lethe_restore_options(Structure):
    _fields_ = [
        ("actor", c_char_p),
        ("keyring_mirror", c_char_p),
        ("discard_newer", c_int),
        ("wait_seconds", c_double),
        ("on_wait", lethe_wait_fn),
        ("ctx", c_void_p),
    ]


class lethe_restore_result(Structure):
    _fields_ = [
        ("photos", c_uint64),
        ("dropped_erased", c_uint64),
        ("dropped_newer", c_uint64),
        ("templates_dropped", c_uint64),
        ("receipts_carried", c_uint64),
        ("digest", c_char * 65),
    ]


class lethe_purpose_count(Structure):
    _fields_ = [
        ("purpose", c_char_p),
        ("searches", c_uint64),
        ("last", c_char * 32),
    ]


class lethe_subject_photo(Structure):
    _fields_ = [
        ("photo", c_char * 65),
        ("kind", c_char * 16),
        ("status", c_char * 16),
        ("added_at", c_char * 32),
        ("faces", c_int),
        ("templates", c_int),
        ("nprov", c_int),
        ("prov", POINTER(lethe_provenance)),
        ("npurposes", c_int),
        ("purposes", POINTER(lethe_purpose_count)),
    ]


class lethe_request_spec(Structure):
    _fields_ = [
        ("action", c_int),
        ("by", c_int),
        ("value", c_char_p),
        ("bytes", c_void_p),
        ("len", c_size_t),
        ("face", POINTER(c_float)),
        ("engine", POINTER(lethe_engine)),
    ]


class lethe_request_info(Structure):
    _fields_ = [
        ("number", c_int64),
        ("action", c_int),
        ("by", c_int),
        ("status", c_char * 16),
        ("filed_at", c_char * 32),
        ("decided_at", c_char * 32),
        ("decided_by", c_char * 64),
        ("note", c_char * 256),
        ("photos", c_uint64),
        ("faces", c_uint64),
        ("templates", c_uint64),
        ("receipt_hash", c_char * 65),
        ("selector", c_char_p),
    ]


class lethe_key_info(Structure):
    _fields_ = [
        ("id", c_int64),
        ("name", c_char * (KEY_NAME_MAX + 1)),
        ("roles", c_uint),
        ("rate_per_minute", c_uint32),
        ("daily_quota", c_uint32),
        ("created_at", c_char * 32),
        ("revoked_at", c_char * 32),
    ]


class lethe_key_options(Structure):
    _fields_ = [
        ("name", c_char_p),
        ("roles", c_uint),
        ("rate_per_minute", c_uint32),
        ("daily_quota", c_uint32),
        ("actor", c_char_p),
    ]


# The structures above, by their C names (the layout test walks this).
STRUCTS = [lethe_image, lethe_image_options, lethe_engine_options, lethe_face,
           lethe_analysis, lethe_store_options, lethe_provenance, lethe_ingest_stats,
           lethe_ingest_options, lethe_match, lethe_search_options, lethe_selector,
           lethe_forget_result, lethe_verify_result, lethe_model_id, lethe_model_info,
           lethe_restore_options, lethe_restore_result, lethe_purpose_count,
           lethe_subject_photo, lethe_request_spec, lethe_request_info, lethe_key_info,
           lethe_key_options]

# --- functions ---------------------------------------------------------------

_P = POINTER
_engine_p = _P(lethe_engine)
_store_p = _P(lethe_store)
_ingest_p = _P(lethe_ingest)
_image_p = _P(lethe_image)
_floats = _P(c_float)
# char ** results the caller frees: kept as raw addresses (c_void_p), read
# with ctypes.string_at and given back to lethe_free_string.
_out_str = _P(c_void_p)

# name: (result type, [argument types])
PROTOTYPES = {
    "lethe_version": (c_char_p, []),
    "lethe_strerror": (c_char_p, [c_int]),
    # images
    "lethe_image_options_init": (None, [_P(lethe_image_options)]),
    "lethe_image_decode": (c_int, [c_void_p, c_size_t, _P(lethe_image_options),
                                   _P(_image_p), c_char_p, c_size_t]),
    "lethe_image_load": (c_int, [c_char_p, _P(lethe_image_options), _P(_image_p),
                                 c_char_p, c_size_t]),
    "lethe_image_from_rgb": (c_int, [c_void_p, c_int, c_int, _P(_image_p)]),
    "lethe_image_free": (None, [_image_p]),
    # the engine
    "lethe_engine_options_init": (None, [_P(lethe_engine_options)]),
    "lethe_engine_open": (c_int, [_P(_engine_p), _P(lethe_engine_options)]),
    "lethe_engine_close": (None, [_engine_p]),
    "lethe_engine_errmsg": (c_char_p, [_engine_p]),
    "lethe_engine_threads": (c_int, [_engine_p]),
    "lethe_engine_kernels": (c_char_p, [_engine_p]),
    "lethe_engine_precision": (c_char_p, [_engine_p]),
    "lethe_engine_analyze": (c_int, [_engine_p, _image_p, c_uint, _P(_P(lethe_face)),
                                     _P(c_int)]),
    "lethe_engine_analyze_bytes": (c_int, [_engine_p, c_void_p, c_size_t,
                                           _P(lethe_image_options), c_uint,
                                           _P(lethe_analysis), c_char_p, c_size_t]),
    "lethe_engine_analyze_file": (c_int, [_engine_p, c_char_p, _P(lethe_image_options),
                                          c_uint, _P(lethe_analysis), c_char_p, c_size_t]),
    "lethe_faces_free": (None, [_P(lethe_face)]),
    # descriptors
    "lethe_descriptor_distance": (c_float, [_floats, _floats]),
    "lethe_descriptor_threshold": (c_float, []),
    "lethe_descriptor_parse": (c_int, [c_char_p, c_size_t, _floats, c_char_p, c_size_t]),
    # the store
    "lethe_store_options_init": (None, [_P(lethe_store_options)]),
    "lethe_store_open_with": (c_int, [c_char_p, _P(lethe_store_options), _P(_store_p)]),
    "lethe_store_close": (None, [_store_p]),
    "lethe_store_errmsg": (c_char_p, [_store_p]),
    "lethe_store_path": (c_char_p, [_store_p]),
    "lethe_ingest_options_init": (None, [_P(lethe_ingest_options)]),
    "lethe_ingest_begin": (c_int, [_store_p, _P(lethe_ingest_options), _P(_ingest_p)]),
    "lethe_ingest_photo": (c_int, [_ingest_p, c_char_p, _P(lethe_provenance), c_size_t]),
    "lethe_ingest_photo_bytes": (c_int, [_ingest_p, c_void_p, c_size_t, c_char_p,
                                         _P(lethe_provenance), c_size_t]),
    "lethe_ingest_fail": (c_int, [_ingest_p, c_char_p, c_size_t, c_char_p]),
    "lethe_ingest_descriptor": (c_int, [_ingest_p, _floats, _P(lethe_provenance), c_size_t]),
    "lethe_ingest_progress": (None, [_ingest_p, _P(lethe_ingest_stats)]),
    "lethe_ingest_end": (c_int, [_ingest_p, _P(lethe_ingest_stats)]),
    "lethe_search_options_init": (None, [_P(lethe_search_options)]),
    "lethe_search": (c_int, [_store_p, _floats, c_int, _P(lethe_search_options),
                             _P(_P(lethe_match)), _P(c_size_t)]),
    "lethe_search_image": (c_int, [_store_p, _engine_p, _image_p, _P(lethe_search_options),
                                   _P(_P(lethe_match)), _P(c_size_t)]),
    "lethe_search_fused": (c_int, [_store_p, _floats, c_int, _P(lethe_search_options),
                                   _P(_P(lethe_match)), _P(c_size_t)]),
    "lethe_matches_free": (None, [_P(lethe_match), c_size_t]),
    "lethe_tier_name": (c_char_p, [c_int]),
    "lethe_verify": (c_int, [_store_p, _floats, c_int, c_char_p, _P(lethe_search_options),
                             _P(lethe_verify_result)]),
    "lethe_lookup": (c_int, [_store_p, c_int, c_char_p, c_char_p, c_char_p, _out_str]),
    "lethe_log_export": (c_int, [_store_p, c_char_p, _out_str]),
    "lethe_log_head": (c_int, [_store_p, _P(c_uint64), c_char_p]),
    "lethe_log_verify": (c_int, [_store_p, _P(c_uint64), _P(c_uint64)]),
    "lethe_policy_get": (c_int, [_store_p, _out_str]),
    "lethe_policy_set": (c_int, [_store_p, c_char_p, c_char_p, c_char_p, c_int,
                                 _P(c_uint64)]),
    "lethe_policy_check": (c_int, [_store_p, c_char_p, c_char_p, _P(c_char_p)]),
    "lethe_datasheet": (c_int, [_store_p, c_char_p, _out_str]),
    "lethe_store_digest": (c_int, [_store_p, c_char_p]),
    "lethe_store_digest_full": (c_int, [_store_p, c_char_p, _P(c_int)]),
    # forgetting
    "lethe_forget_face_threshold": (c_float, []),
    "lethe_forget": (c_int, [_store_p, _P(lethe_selector), c_uint, c_char_p,
                             _P(lethe_forget_result), _out_str, _out_str]),
    "lethe_receipt_verify": (c_int, [c_char_p, c_size_t, c_char_p, c_char_p, c_size_t]),
    "lethe_receipt_check": (c_int, [_store_p, c_char_p, c_size_t]),
    "lethe_store_public_key": (c_int, [_store_p, c_char_p]),
    "lethe_optout_list": (c_int, [_store_p, _out_str]),
    "lethe_optout_remove": (c_int, [_store_p, c_int64, c_char_p]),
    "lethe_backup": (c_int, [_store_p, c_char_p, c_char_p, _out_str]),
    "lethe_free_string": (None, [c_void_p]),
    "lethe_lookup_bytes": (c_int, [_store_p, c_void_p, c_size_t, c_char_p, c_char_p, _out_str]),
    "lethe_receipt_get": (c_int, [_store_p, c_char_p, _out_str]),
    # models
    "lethe_model_shipped": (None, [_P(lethe_model_id)]),
    "lethe_model_parse": (c_int, [c_char_p, _P(lethe_model_id), c_char_p, c_size_t]),
    "lethe_model_list": (c_int, [_store_p, _P(_P(lethe_model_info)), _P(c_size_t)]),
    "lethe_free_models": (None, [_P(lethe_model_info)]),
    "lethe_model_find": (c_int, [_store_p, c_char_p, _P(lethe_model_info)]),
    "lethe_model_retire": (c_int, [_store_p, c_char_p, c_uint, c_char_p,
                                   _P(lethe_forget_result), _out_str]),
    # the keyring, restore
    "lethe_keyring_mirror": (c_int, [_store_p, c_char_p, c_char_p]),
    "lethe_keyring_rotate": (c_int, [_store_p, c_char_p, c_char_p]),
    "lethe_keyring_check": (c_int, [_store_p, _out_str]),
    "lethe_restore_options_init": (None, [_P(lethe_restore_options)]),
    "lethe_restore": (c_int, [c_char_p, c_char_p, _P(lethe_restore_options),
                              _P(lethe_restore_result), c_char_p, c_size_t]),
    # data-subject requests
    "lethe_subject_lookup": (c_int, [_store_p, c_int, c_char_p, c_void_p, c_size_t, c_char_p,
                                     _P(_P(lethe_subject_photo)), _P(c_size_t)]),
    "lethe_subject_photos_free": (None, [_P(lethe_subject_photo), c_size_t]),
    "lethe_request_by_name": (c_char_p, [c_int]),
    "lethe_request_by_parse": (c_int, [c_char_p, _P(c_int), c_char_p, c_size_t]),
    "lethe_request_file": (c_int, [_store_p, _P(lethe_request_spec), c_char_p, c_char_p,
                                   _P(lethe_request_info)]),
    "lethe_request_status": (c_int, [_store_p, c_char_p, _P(lethe_request_info), _out_str]),
    "lethe_request_list": (c_int, [_store_p, c_int, _P(_P(lethe_request_info)),
                                   _P(c_size_t)]),
    "lethe_requests_free": (None, [_P(lethe_request_info), c_size_t]),
    "lethe_request_approve": (c_int, [_store_p, c_int64, c_uint, c_char_p,
                                      _P(lethe_request_info)]),
    "lethe_request_deny": (c_int, [_store_p, c_int64, c_char_p, c_char_p]),
    "lethe_request_auto_set": (c_int, [_store_p, c_int, c_int, c_char_p]),
    "lethe_request_auto_get": (c_int, [_store_p, _P(c_uint)]),
    # API keys
    "lethe_roles_parse": (c_int, [c_char_p, _P(c_uint), c_char_p, c_size_t]),
    "lethe_roles_format": (None, [c_uint, c_char_p]),
    "lethe_key_options_init": (None, [_P(lethe_key_options)]),
    "lethe_key_add": (c_int, [_store_p, _P(lethe_key_options), _P(lethe_key_info), c_char_p]),
    "lethe_key_add_with_purpose": (c_int, [_store_p, _P(lethe_key_options), c_char_p,
                                           _P(lethe_key_info), c_char_p]),
    "lethe_key_list": (c_int, [_store_p, _P(_P(lethe_key_info)), _P(c_size_t)]),
    "lethe_keys_free": (None, [_P(lethe_key_info)]),
    "lethe_key_revoke": (c_int, [_store_p, c_int64, c_char_p]),
    "lethe_key_authenticate": (c_int, [_store_p, c_char_p, c_size_t, _P(lethe_key_info)]),
    "lethe_key_purpose": (c_int, [_store_p, c_int64, c_char_p]),
    "lethe_key_usage_add": (c_int, [_store_p, c_int64, c_int64, c_uint32, _P(c_uint32)]),
}


def library_path():
    """Where the shared library is: $LETHE_LIBRARY, the source tree's build
    folder, or what ctypes.util.find_library("lethe") finds (None if none)."""
    env = os.environ.get("LETHE_LIBRARY")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    built = os.path.join(here, os.pardir, os.pardir, "build", "liblethe.so")
    if os.path.exists(built):
        return os.path.normpath(built)
    return ctypes.util.find_library("lethe")


def load(path=None):
    """Load the library at path (default: library_path()) and declare every
    function of PROTOTYPES on it. OSError when there is none."""
    path = path or library_path()
    if not path:
        raise OSError("liblethe.so not found: build it with `make python`, or set "
                      "LETHE_LIBRARY to its path")
    lib = ctypes.CDLL(path)
    for name, (restype, argtypes) in PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = load()
