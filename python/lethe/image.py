"""Decoded images (lethe_image): JPEG, PNG or WebP decoded with lethe's
limits and EXIF orientation, or RGB pixels given by the caller."""

import ctypes
import weakref

from . import _native as N
from ._native import lib
from .errors import make_error
from .results import path_arg

_MSG_LEN = 1024


def image_options(max_pixels=None, max_dimension=None, min_decode_side=None,
                  apply_orientation=None):
    """A lethe_image_options with the library's defaults
    (lethe_image_options_init) and the arguments that are not None."""
    opt = N.lethe_image_options()
    lib.lethe_image_options_init(ctypes.byref(opt))
    for name, value in (("max_pixels", max_pixels), ("max_dimension", max_dimension),
                        ("min_decode_side", min_decode_side)):
        if value is not None:
            setattr(opt, name, value)
    if apply_orientation is not None:
        opt.apply_orientation = 1 if apply_orientation else 0
    return opt


class Image:
    """A decoded image: 8-bit RGB, rows packed. Make one with Image.load,
    Image.decode or Image.from_rgb; close() (or a with block, or garbage
    collection) frees it with lethe_image_free."""

    def __init__(self, ptr):
        """Wrap a lethe_image * the caller owns (use the class methods)."""
        self._ptr = ptr
        self._finalizer = weakref.finalize(self, lib.lethe_image_free, ptr)

    @classmethod
    def load(cls, path, **options):
        """Read and decode the file at path (lethe_image_load). options are
        those of lethe_image_options: max_pixels, max_dimension,
        min_decode_side, apply_orientation."""
        out = ctypes.POINTER(N.lethe_image)()
        msg = ctypes.create_string_buffer(_MSG_LEN)
        opt = image_options(**options)
        rc = lib.lethe_image_load(path_arg(path), ctypes.byref(opt), ctypes.byref(out), msg,
                                  _MSG_LEN)
        if rc:
            raise make_error(rc, msg.value)
        return cls(out)

    @classmethod
    def decode(cls, data, **options):
        """Decode a JPEG, PNG or WebP held in memory (lethe_image_decode)."""
        data = bytes(data)
        out = ctypes.POINTER(N.lethe_image)()
        msg = ctypes.create_string_buffer(_MSG_LEN)
        opt = image_options(**options)
        rc = lib.lethe_image_decode(data, len(data), ctypes.byref(opt), ctypes.byref(out), msg,
                                    _MSG_LEN)
        if rc:
            raise make_error(rc, msg.value)
        return cls(out)

    @classmethod
    def from_rgb(cls, rgb, width, height):
        """Copy width*height*3 bytes of interleaved RGB into a new image
        (lethe_image_from_rgb)."""
        rgb = bytes(rgb)
        out = ctypes.POINTER(N.lethe_image)()
        rc = lib.lethe_image_from_rgb(rgb, width, height, ctypes.byref(out))
        if rc:
            raise make_error(rc, "")
        return cls(out)

    def _c(self):
        if not self._ptr:
            raise ValueError("the image is closed")
        return self._ptr

    @property
    def width(self):
        """Pixels, after EXIF orientation."""
        return self._c().contents.width

    @property
    def height(self):
        return self._c().contents.height

    @property
    def orig_width(self):
        """The stored picture's size before reduced-scale decoding (boxes are
        reported in these pixels)."""
        return self._c().contents.orig_width

    @property
    def orig_height(self):
        return self._c().contents.orig_height

    @property
    def rgb(self):
        """A copy of the pixels: width*height*3 bytes."""
        img = self._c().contents
        return ctypes.string_at(img.rgb, img.width * img.height * 3)

    def close(self):
        """Free the image (lethe_image_free); closing twice is fine."""
        self._finalizer()
        self._ptr = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        if not self._ptr:
            return "<lethe.Image closed>"
        return f"<lethe.Image {self.width}x{self.height}>"


__all__ = ["Image", "image_options"]
