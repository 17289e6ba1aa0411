"""The face engine (lethe_engine): finds faces, places their landmarks and
computes their 128-D descriptors."""

import ctypes
import os
import weakref

from . import _native as N
from ._native import lib
from .errors import make_error
from .image import Image, image_options as _image_options
from .results import Analysis, Face, path_arg, text

_MSG_LEN = 1024

_DETECTORS = {"ssd": N.DETECTOR_SSD, "tiny": N.DETECTOR_TINY}
_PRECISIONS = {"default": N.PRECISION_DEFAULT, "fp32": N.PRECISION_FP32,
               "int8": N.PRECISION_INT8}
_ALIGNS = {"similarity": N.ALIGN_SIMILARITY, "box": N.ALIGN_BOX}


def _choice(name, value, names):
    if value in names.values():
        return value
    try:
        return names[value]
    except KeyError:
        raise ValueError(f"{name} must be one of {', '.join(names)}, not {value!r}") from None


def flags_for(landmarks=True, descriptor=True, largest_face=False, chip=False,
              single_thread=False):
    """The LETHE_WANT_* / LETHE_LARGEST_FACE / LETHE_CHIP / LETHE_SINGLE_THREAD
    bits these arguments name."""
    flags = 0
    flags |= N.WANT_LANDMARKS if landmarks else 0
    flags |= N.WANT_DESCRIPTOR if descriptor else 0
    flags |= N.LARGEST_FACE if largest_face else 0
    flags |= N.CHIP if chip else 0
    flags |= N.SINGLE_THREAD if single_thread else 0
    return flags


class Engine:
    """The models loaded and the worker threads started (lethe_engine_open).

    Every argument left None keeps the library's default
    (lethe_engine_options_init): model_dir (None: $LETHE_MODELS, then the
    build's models/ folder), detector ("ssd" or "tiny"), precision
    ("default", "fp32", "int8"), align ("similarity", "box"), threads (0:
    one per core), min_score, min_face_size, tiny_input_size, max_faces,
    single_pass, mirror_average. One engine may be used from several
    threads at once. Close it with close() or a with block.
    """

    def __init__(self, model_dir=None, *, detector=None, precision=None, align=None,
                 threads=None, min_score=None, min_face_size=None, tiny_input_size=None,
                 max_faces=None, single_pass=None, mirror_average=None):
        opt = N.lethe_engine_options()
        lib.lethe_engine_options_init(ctypes.byref(opt))
        self._model_dir = path_arg(model_dir)  # kept: opt points into it
        if model_dir is not None:
            opt.model_dir = self._model_dir
        if detector is not None:
            opt.detector = _choice("detector", detector, _DETECTORS)
        if precision is not None:
            opt.precision = _choice("precision", precision, _PRECISIONS)
        if align is not None:
            opt.align = _choice("align", align, _ALIGNS)
        for name, value in (("threads", threads), ("min_score", min_score),
                            ("min_face_size", min_face_size),
                            ("tiny_input_size", tiny_input_size), ("max_faces", max_faces)):
            if value is not None:
                setattr(opt, name, value)
        for name, value in (("single_pass", single_pass), ("mirror_average", mirror_average)):
            if value is not None:
                setattr(opt, name, 1 if value else 0)
        ptr = ctypes.POINTER(N.lethe_engine)()
        rc = lib.lethe_engine_open(ctypes.byref(ptr), ctypes.byref(opt))
        if rc:
            message = lib.lethe_engine_errmsg(ptr)
            lib.lethe_engine_close(ptr)
            raise make_error(rc, message)
        self._ptr = ptr
        self._users = weakref.WeakSet()  # ingests using it: ended before it closes
        self._finalizer = weakref.finalize(self, lib.lethe_engine_close, ptr)

    def _c(self):
        if not self._ptr:
            raise ValueError("the engine is closed")
        return self._ptr

    @property
    def threads(self):
        """The number of worker threads (the caller included)."""
        return lib.lethe_engine_threads(self._c())

    @property
    def kernels(self):
        """The SIMD kernel set in use: "avx512", "avx2" or "scalar"."""
        return text(lib.lethe_engine_kernels(self._c()))

    @property
    def precision(self):
        """The precision computed at: "default", "fp32" or "int8"."""
        return text(lib.lethe_engine_precision(self._c()))

    def analyze(self, photo, *, landmarks=True, descriptor=True, largest_face=False,
                chip=False, single_thread=False, image_options=None):
        """Find every face in photo and compute what is asked for.

        photo is a path (str or os.PathLike: lethe_engine_analyze_file), the
        photo's bytes (bytes, bytearray, memoryview:
        lethe_engine_analyze_bytes), or an Image (lethe_engine_analyze).
        descriptor implies landmarks; largest_face keeps only the largest
        face, with its descriptor (NoFaceError when there is none, for paths
        and bytes); chip describes the whole photo as a face chip.
        image_options is a dict of Image.load's options. Returns an Analysis.
        """
        flags = flags_for(landmarks, descriptor, largest_face, chip, single_thread)
        if isinstance(photo, Image):
            return self._analyze_image(photo, flags)
        opt = _image_options(**(image_options or {}))
        out = N.lethe_analysis()
        msg = ctypes.create_string_buffer(_MSG_LEN)
        if isinstance(photo, (bytes, bytearray, memoryview)):
            data = bytes(photo)
            rc = lib.lethe_engine_analyze_bytes(self._c(), data, len(data), ctypes.byref(opt),
                                                flags, ctypes.byref(out), msg, _MSG_LEN)
        elif isinstance(photo, (str, os.PathLike)):
            rc = lib.lethe_engine_analyze_file(self._c(), path_arg(photo), ctypes.byref(opt),
                                               flags, ctypes.byref(out), msg, _MSG_LEN)
        else:
            raise TypeError(f"a photo is a path, bytes or a lethe.Image, not {type(photo)}")
        try:
            if rc:
                raise make_error(rc, msg.value)
            faces = [Face._from_c(out.faces[i]) for i in range(out.count)]
        finally:
            lib.lethe_faces_free(out.faces)
        return Analysis(width=out.width, height=out.height, faces=faces)

    def _analyze_image(self, image, flags):
        faces = ctypes.POINTER(N.lethe_face)()
        count = ctypes.c_int(0)
        rc = lib.lethe_engine_analyze(self._c(), image._c(), flags, ctypes.byref(faces),
                                      ctypes.byref(count))
        try:
            if rc:
                raise make_error(rc, lib.lethe_engine_errmsg(self._ptr))
            found = [Face._from_c(faces[i]) for i in range(count.value)]
        finally:
            lib.lethe_faces_free(faces)
        return Analysis(width=image.orig_width, height=image.orig_height, faces=found)

    def close(self):
        """Stop the workers and free the engine (lethe_engine_close); an
        ingest still using it is ended first. Closing twice is fine."""
        for user in list(self._users):
            user.end()
        self._finalizer()
        self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if not self._ptr:
            return "<lethe.Engine closed>"
        return f"<lethe.Engine {self.threads} threads, {self.kernels}, {self.precision}>"
