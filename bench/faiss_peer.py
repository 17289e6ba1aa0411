#!/usr/bin/python3
"""faiss_peer.py: the FAISS side of bench/search.sh.

Reads DIR/base.f32 and DIR/queries.f32 (written by bench_search gen), builds
a faiss.IndexFlatL2 (exact, brute force), and measures
  * single-query throughput: a loop of search(one query, k), every query;
  * batch throughput: one search(all queries, k), with FAISS using 1 OpenMP
    thread and with one per core (best of --repeat each); the better of the
    two is reported as batch_qps, so the peer gets its best setting.
Writes the top-k labels as int64 (nq x k) to DIR/faiss_single.i64 and
DIR/faiss_batch.i64 and prints one JSON object.

Runs with Debian's python3-faiss:
    apt-get install -y python3-faiss libopenblas0-pthread python3-numpy
"""
import argparse
import json
import os
import resource
import sys
import time

try:
    import faiss
    import numpy as np
except ImportError as e:  # the caller (search.sh) checks first; say it anyway
    sys.stderr.write("faiss_peer: %s; install with: apt-get install -y python3-faiss "
                     "libopenblas0-pthread python3-numpy\n" % e)
    sys.exit(2)

DIM = 128


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=1,
                    help="batch timings per thread setting (best is kept)")
    ap.add_argument("--single", type=int, default=0,
                    help="time only the first N single queries (0: all)")
    a = ap.parse_args()

    base = np.fromfile(os.path.join(a.dir, "base.f32"), dtype=np.float32).reshape(-1, DIM)
    queries = np.fromfile(os.path.join(a.dir, "queries.f32"), dtype=np.float32).reshape(-1, DIM)
    n, nq = base.shape[0], queries.shape[0]
    cores = os.cpu_count() or 1

    t0 = time.perf_counter()
    index = faiss.IndexFlatL2(DIM)
    index.add(base)
    build_s = time.perf_counter() - t0
    del base

    # Warm-up (page in, start the OpenMP threads).
    index.search(queries[:8], a.k)

    ns = nq if a.single <= 0 else min(a.single, nq)
    single_ids = np.full((nq, a.k), -1, dtype=np.int64)
    t0 = time.perf_counter()
    for i in range(ns):
        _, lab = index.search(queries[i:i + 1], a.k)
        single_ids[i] = lab[0]
    single_s = time.perf_counter() - t0

    batch_qps = {}
    batch_ids = None
    for threads in sorted({1, cores}):
        faiss.omp_set_num_threads(threads)
        best = float("inf")
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            _, lab = index.search(queries, a.k)
            best = min(best, time.perf_counter() - t0)
        batch_qps[str(threads)] = nq / best
        batch_ids = lab
    faiss.omp_set_num_threads(cores)

    single_ids.tofile(os.path.join(a.dir, "faiss_single.i64"))
    batch_ids.astype(np.int64).tofile(os.path.join(a.dir, "faiss_batch.i64"))
    print(json.dumps({
        "faiss_version": faiss.__version__,
        "n": n, "nq": nq, "k": a.k,
        "build_s": round(build_s, 3),
        "single_queries_timed": ns,
        "single_qps": round(ns / single_s, 2),
        "batch_qps": round(max(batch_qps.values()), 2),
        "batch_qps_by_threads": {t: round(v, 2) for t, v in batch_qps.items()},
        "rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
    }))


if __name__ == "__main__":
    main()
