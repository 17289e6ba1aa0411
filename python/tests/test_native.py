"""The binding against the C header, checked by the C compiler: the
structures ctypes mirrors have lethe.h's sizes and offsets, the constants
and status codes are lethe.h's, every function the binding declares is
declared in lethe.h with as many parameters, and liblethe.so exports
exactly the functions lethe.h declares."""

import ctypes
import os
import re
import subprocess

import pytest

import lethe
from lethe import _native as N
from conftest import need

def run_c(repo, tmp_path, body, includes=""):
    """Compile and run a C program (main's body given) against lethe.h;
    its output's lines."""
    cc = need(os.environ.get("CC", "cc"))
    src = tmp_path / "probe.c"
    exe = tmp_path / "probe"
    src.write_text("#include <stddef.h>\n#include <stdio.h>\n#include \"lethe.h\"\n" + includes +
                   "\nint main(void)\n{\n" + body + "\n    return 0;\n}\n")
    built = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-I",
                            os.path.join(repo, "include"), "-o", str(exe), str(src)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    return out.splitlines()


def test_struct_layouts(repo, tmp_path):
    lines = []
    for st in N.STRUCTS:
        name = st.__name__
        lines.append(f'    printf("{name} %zu\\n", sizeof({name}));')
        for fname, _ in st._fields_:
            lines.append(f'    printf("{name}.{fname} %zu %zu\\n", offsetof({name}, {fname}), '
                         f'sizeof((({name} *)0)->{fname}));')
    got = {}
    for line in run_c(repo, tmp_path, "\n".join(lines)):
        key, *vals = line.split()
        got[key] = [int(v) for v in vals]
    checked = 0
    for st in N.STRUCTS:
        name = st.__name__
        assert got[name] == [ctypes.sizeof(st)], f"sizeof({name})"
        for fname, _ in st._fields_:
            desc = getattr(st, fname)
            assert got[f"{name}.{fname}"] == [desc.offset, desc.size], f"{name}.{fname}"
            checked += 1
    assert checked > 150  # every field of the 24 structures


CONSTANTS = {
    "LANDMARKS": "LETHE_LANDMARKS", "DESCRIPTOR_DIM": "LETHE_DESCRIPTOR_DIM",
    "DETECTOR_SSD": "LETHE_DETECTOR_SSD", "DETECTOR_TINY": "LETHE_DETECTOR_TINY",
    "PRECISION_DEFAULT": "LETHE_PRECISION_DEFAULT", "PRECISION_FP32": "LETHE_PRECISION_FP32",
    "PRECISION_INT8": "LETHE_PRECISION_INT8", "ALIGN_SIMILARITY": "LETHE_ALIGN_SIMILARITY",
    "ALIGN_BOX": "LETHE_ALIGN_BOX", "WANT_LANDMARKS": "LETHE_WANT_LANDMARKS",
    "WANT_DESCRIPTOR": "LETHE_WANT_DESCRIPTOR", "LARGEST_FACE": "LETHE_LARGEST_FACE",
    "CHIP": "LETHE_CHIP", "SINGLE_THREAD": "LETHE_SINGLE_THREAD",
    "STORE_CREATE": "LETHE_STORE_CREATE", "STORE_READONLY": "LETHE_STORE_READONLY",
    "LOOKUP_UPLOADER": "LETHE_LOOKUP_UPLOADER", "LOOKUP_URL": "LETHE_LOOKUP_URL",
    "LOOKUP_PHOTO_ID": "LETHE_LOOKUP_PHOTO_ID", "LOOKUP_FILE": "LETHE_LOOKUP_FILE",
    "FORGET_DRY_RUN": "LETHE_FORGET_DRY_RUN", "FORGET_OPTOUT": "LETHE_FORGET_OPTOUT",
    "FORGET_CONFIRMED": "LETHE_FORGET_CONFIRMED",
    "REQUEST_BY_UPLOADER": "LETHE_REQUEST_BY_UPLOADER", "REQUEST_BY_URL": "LETHE_REQUEST_BY_URL",
    "REQUEST_BY_PHOTO_ID": "LETHE_REQUEST_BY_PHOTO_ID",
    "REQUEST_BY_FILE": "LETHE_REQUEST_BY_FILE", "REQUEST_BY_FACE": "LETHE_REQUEST_BY_FACE",
    "REQUEST_KINDS": "LETHE_REQUEST_KINDS", "REQUEST_ERASE": "LETHE_REQUEST_ERASE",
    "REQUEST_OPTOUT": "LETHE_REQUEST_OPTOUT", "REQUEST_ID_SIZE": "LETHE_REQUEST_ID_SIZE",
    "ROLE_ADMIN": "LETHE_ROLE_ADMIN", "ROLE_INGEST": "LETHE_ROLE_INGEST",
    "ROLE_SEARCH": "LETHE_ROLE_SEARCH", "ROLE_AUDIT": "LETHE_ROLE_AUDIT",
    "ROLE_ERASURE": "LETHE_ROLE_ERASURE", "ROLES_ALL": "LETHE_ROLES_ALL",
    "KEY_SIZE": "LETHE_KEY_SIZE", "KEY_NAME_MAX": "LETHE_KEY_NAME_MAX",
    "ROLES_TEXT": "LETHE_ROLES_TEXT", "KEY_PURPOSE_MAX": "LETHE_KEY_PURPOSE_MAX",
}


def test_constants(repo, tmp_path):
    body = "\n".join(f'    printf("{py} %lld\\n", (long long)({c}));'
                     for py, c in CONSTANTS.items())
    for line in run_c(repo, tmp_path, body):
        py, value = line.split()
        assert getattr(N, py) == int(value), py


def test_status_codes_and_exception_classes(repo, tmp_path):
    body = ("#define P(name, value, text) printf(\"%s %d %s\\n\", #name, value, text);\n"
            "    LETHE_STATUS_LIST(P)\n#undef P")
    lines = run_c(repo, tmp_path, body)
    assert len(lines) == 16
    seen = set()
    for line in lines:
        name, value, text = line.split(" ", 2)
        value = int(value)
        if value == 0:
            assert name == "OK"
            continue
        cls = lethe.error_class(value)
        assert cls is lethe.ERRORS[value] and issubclass(cls, lethe.LetheError)
        assert cls.code == name and cls.status == value
        err = cls("a message")
        assert err.reason == text and str(err) == "a message" and err.status == value
        assert lethe.strerror(value) == text
        seen.add(value)
    # every class is one of lethe.h's codes, and each code has its own class
    assert seen == set(lethe.ERRORS)
    assert len(set(lethe.ERRORS.values())) == len(seen)
    # an unknown (newer) code still raises a LetheError with its number
    err = lethe.make_error(999, b"from the future")
    assert type(err) is lethe.LetheError and err.status == 999 and str(err) == "from the future"


def header_functions(repo, tmp_path):
    """Every function lethe.h declares, as the C compiler reads it
    (gcc -aux-info): name -> (returns void, number of parameters)."""
    gcc = need("gcc")
    src = tmp_path / "decls.c"
    src.write_text('#include "lethe.h"\n')
    aux = tmp_path / "decls.aux"
    subprocess.run([gcc, "-std=c11", "-I", os.path.join(repo, "include"), "-c", str(src),
                    "-o", str(tmp_path / "decls.o"), "-aux-info", str(aux)], check=True,
                   capture_output=True, text=True)
    decls = {}
    for line in aux.read_text().splitlines():
        if "include/lethe.h:" not in line:
            continue
        m = re.search(r"\*/ extern (.*?)\b(lethe_\w+) \((.*)\);$", line)
        assert m, line
        ret, name, params = m.groups()
        # parameters are separated by top-level commas (function pointer
        # parameters have none in lethe.h; checked by the count below)
        n = 0 if params.strip() == "void" else params.count(",") + 1
        decls[name] = (ret.strip() == "void", n)
    assert len(decls) > 70
    return decls


def test_prototypes_match_header(repo, tmp_path):
    decls = header_functions(repo, tmp_path)
    for name, (restype, argtypes) in N.PROTOTYPES.items():
        assert name in decls, f"{name} is not declared in lethe.h"
        void, nparams = decls[name]
        assert (restype is None) == void, f"{name}: result type"
        assert len(argtypes) == nparams, f"{name}: {len(argtypes)} arguments, lethe.h has {nparams}"
        assert getattr(N.lib, name).argtypes is not None


def test_shared_library_exports_exactly_the_public_api(repo, tmp_path):
    nm = need("nm")
    path = lethe.library_path()
    out = subprocess.run([nm, "-D", "--defined-only", path], check=True, capture_output=True,
                         text=True).stdout
    exported = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 3:
            exported[parts[2]] = parts[1]
    declared = set(header_functions(repo, tmp_path))
    assert set(exported) - declared == set(), "exported but not in lethe.h"
    assert declared - set(exported) == set(), "in lethe.h but not exported"
    assert set(exported.values()) == {"T"}, "only functions (text symbols) are exported"


def test_library_version_is_the_headers(repo, tmp_path):
    (line,) = run_c(repo, tmp_path, '    printf("%s\\n", LETHE_VERSION_STRING);')
    assert lethe.version() == line


def test_library_lookup_order(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("LETHE_LIBRARY", "/some/where/liblethe.so")
    assert N.library_path() == "/some/where/liblethe.so"
    monkeypatch.delenv("LETHE_LIBRARY")
    built = os.path.join(repo, "build", "liblethe.so")
    if os.path.exists(built):
        assert N.library_path() == built
    with pytest.raises(OSError):
        N.load(str(tmp_path / "absent.so"))
