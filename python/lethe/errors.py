"""Exceptions: one class per LETHE_ERR_* status, all under LetheError.

Every failing call raises the class of the status it returned, carrying
the status (``.status``), its name as in lethe.h (``.code``, for example
"ERR_BUSY"), the library's fixed text for it (``.reason``, from
lethe_strerror) and the library's own message about this failure (the
exception's text, from lethe_store_errmsg, lethe_engine_errmsg or the
message buffer the call filled).
"""

from ._native import lib


class LetheError(Exception):
    """A call into liblethe failed. Subclasses name the status."""

    status = None  #: the LETHE_ERR_* value (set on each subclass)
    code = None    #: its name in lethe.h without the prefix ("ERR_IO")

    def __init__(self, message, status=None):
        if status is not None:
            self.status = status
        self.reason = lib.lethe_strerror(self.status if self.status is not None else -1) \
            .decode("utf-8", "replace")
        self.message = message or self.reason
        super().__init__(self.message)


# The list of lethe.h's LETHE_STATUS_LIST, status by status (the tests check
# it against the header, compiled).
class OutOfMemoryError(LetheError):
    """LETHE_ERR_NOMEM: out of memory."""
    status, code = 1, "ERR_NOMEM"


class InputOutputError(LetheError):
    """LETHE_ERR_IO: a file could not be read or written."""
    status, code = 2, "ERR_IO"


class FormatError(LetheError):
    """LETHE_ERR_FORMAT: corrupt or unrecognised data (also: a receipt or log
    that does not check)."""
    status, code = 3, "ERR_FORMAT"


class TooLargeError(LetheError):
    """LETHE_ERR_TOO_LARGE: an input exceeds a size limit."""
    status, code = 4, "ERR_TOO_LARGE"


class UnsupportedError(LetheError):
    """LETHE_ERR_UNSUPPORTED: unsupported feature or format."""
    status, code = 5, "ERR_UNSUPPORTED"


class ModelError(LetheError):
    """LETHE_ERR_MODEL: a model file is missing, truncated or tampered with."""
    status, code = 6, "ERR_MODEL"


class ArgumentError(LetheError):
    """LETHE_ERR_ARG: an invalid argument (a search without a purpose, ...)."""
    status, code = 7, "ERR_ARG"


class NotFoundError(LetheError):
    """LETHE_ERR_NOT_FOUND: not found."""
    status, code = 8, "ERR_NOT_FOUND"


class InternalError(LetheError):
    """LETHE_ERR_INTERNAL: internal error."""
    status, code = 9, "ERR_INTERNAL"


class NoFaceError(LetheError):
    """LETHE_ERR_NO_FACE: no face found where one was needed."""
    status, code = 10, "ERR_NO_FACE"


class StoreError(LetheError):
    """LETHE_ERR_STORE: the store is missing, damaged or of another version."""
    status, code = 11, "ERR_STORE"


class PolicyError(LetheError):
    """LETHE_ERR_POLICY: refused by the consent policy."""
    status, code = 12, "ERR_POLICY"


class BusyError(LetheError):
    """LETHE_ERR_BUSY: the store is locked by another writer (the message
    names it)."""
    status, code = 13, "ERR_BUSY"


class ConfirmError(LetheError):
    """LETHE_ERR_CONFIRM: refused without confirmation (a wide erasure)."""
    status, code = 14, "ERR_CONFIRM"


class DeniedError(LetheError):
    """LETHE_ERR_DENIED: access denied (an API key that is malformed, unknown,
    wrong or revoked)."""
    status, code = 15, "ERR_DENIED"


ERRORS = {cls.status: cls for cls in (
    OutOfMemoryError, InputOutputError, FormatError, TooLargeError, UnsupportedError,
    ModelError, ArgumentError, NotFoundError, InternalError, NoFaceError, StoreError,
    PolicyError, BusyError, ConfirmError, DeniedError)}


def error_class(status):
    """The exception class for a status (LetheError for one this module does
    not know, from a newer library)."""
    return ERRORS.get(status, LetheError)


def make_error(status, message):
    """The exception for a failed call: its class by status, with the
    library's message."""
    if isinstance(message, bytes):
        message = message.decode("utf-8", "replace")
    cls = error_class(status)
    return cls(message, status) if cls is LetheError else cls(message)
