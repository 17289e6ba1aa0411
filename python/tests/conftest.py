"""Shared fixtures of the Python tests: the repository, the shared test
photos, the model weights, an engine, a fresh store, and descriptors of
made-up people.

Inputs that may be absent (the photos in ../shared/data, the model weights
in models/, a C compiler, nm) make the tests that need them skip with a
reason (pytest -rs lists them); nothing is skipped silently.
"""

import os
import random
import shutil
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, os.pardir, os.pardir))
sys.path.insert(0, os.path.join(REPO, "python"))

import lethe  # noqa: E402  (after the path is set)


@pytest.fixture(scope="session")
def repo():
    """The repository's root folder."""
    return REPO


def find_data_dir():
    """The shared test data as tests/test.h finds it: $LETHE_TEST_DATA,
    ../shared/data, ../../shared/data (relative to the repository)."""
    for d in (os.environ.get("LETHE_TEST_DATA"), os.path.join(REPO, "..", "shared", "data"),
              os.path.join(REPO, "..", "..", "shared", "data")):
        if d and os.path.isdir(d):
            return os.path.normpath(d)
    return None


@pytest.fixture(scope="session")
def data_dir():
    d = find_data_dir()
    if not d:
        pytest.skip("no shared test data ($LETHE_TEST_DATA, ../shared/data or "
                    "../../shared/data): the tests with real photos cannot run")
    return d


@pytest.fixture
def photo(data_dir):
    """photo(relative path): the path of a shared test photo (skips, saying
    which, if that file is absent)."""
    def get(rel):
        p = os.path.join(data_dir, rel)
        if not os.path.isfile(p):
            pytest.skip(f"test photo {p} is absent")
        return p
    return get


@pytest.fixture(scope="session")
def models_dir():
    """The model weights: $LETHE_MODELS, else the repository's models/
    (scripts/fetch-models.sh fills it)."""
    d = os.environ.get("LETHE_MODELS") or os.path.join(REPO, "models")
    if not os.path.isfile(os.path.join(d, "ssd_mobilenetv1_model-weights_manifest.json")):
        pytest.skip(f"no model weights in {d} (run scripts/fetch-models.sh or set "
                    "LETHE_MODELS): the engine tests cannot run")
    return d


@pytest.fixture(scope="session")
def engine(models_dir):
    """One engine for the session, on at most two threads (the machine is
    shared with other jobs)."""
    with lethe.Engine(models_dir, threads=2) as e:
        yield e


@pytest.fixture
def store(tmp_path):
    """A new store in tmp_path/store."""
    with lethe.Store(tmp_path / "store", create=True, actor="pytest") as s:
        yield s


@pytest.fixture(scope="session")
def people():
    """people[p][j]: descriptor j (of 10) of made-up person p (of 8): each
    person's descriptors lie close together (as test_forget.c makes them),
    the people far apart."""
    rng = random.Random(777)
    out = []
    for _ in range(8):
        centre = [rng.uniform(-0.2, 0.2) for _ in range(128)]
        out.append([[c + rng.uniform(-0.02, 0.02) for c in centre] for _ in range(10)])
    return out


def prov(p, j):
    """The provenance of person p's descriptor j."""
    return lethe.Provenance(uploader=f"person{p}", url=f"https://photos.example/{p}/{j}",
                            photo_id=f"photo-{p}-{j}", source="site-a" if p < 4 else "site-b",
                            jurisdiction="US", consent="explicit",
                            collected_at=f"{2000 + j}-06-01")


@pytest.fixture
def filled(store, people):
    """The store holding every person's 10 descriptors (80 rows)."""
    with store.ingest(actor="pytest") as ing:
        for p, faces in enumerate(people):
            for j, d in enumerate(faces):
                ing.add_descriptor(d, prov(p, j), line=p * 10 + j + 1)
    assert ing.stats.added == 80 and ing.stats.templates == 80, ing.issues
    return store


def need(tool):
    """The path of a program the test needs, or a visible skip."""
    path = shutil.which(tool)
    if not path:
        pytest.skip(f"{tool} is not installed")
    return path
