/*
 * bench_rng.h: the deterministic random numbers of the benchmark data
 * generators (bench_search, forget_gen): xoshiro256** seeded by
 * splitmix64, so the same seed gives the same data on any machine.
 */
#ifndef LETHE_BENCH_RNG_H
#define LETHE_BENCH_RNG_H

#include <math.h>
#include <stdint.h>

static uint64_t rs[4];

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static uint64_t next_u64(void)
{
    uint64_t r = rotl(rs[1] * 5, 7) * 9, t = rs[1] << 17;
    rs[2] ^= rs[0];
    rs[3] ^= rs[1];
    rs[1] ^= rs[2];
    rs[0] ^= rs[3];
    rs[2] ^= t;
    rs[3] = rotl(rs[3], 45);
    return r;
}

static void seed_rng(uint64_t s)
{
    for (int i = 0; i < 4; i++) {
        s += 0x9e3779b97f4a7c15ull;
        uint64_t z = s;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        rs[i] = z ^ (z >> 31);
    }
}

/* A standard normal deviate (Box-Muller). */
static double gauss(void)
{
    double u = ((double)(next_u64() >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double v = (double)(next_u64() >> 11) * (1.0 / 9007199254740992.0);
    return sqrt(-2.0 * log(u)) * cos(6.283185307179586 * v);
}

#endif
