/*
 * people.h: synthetic face descriptors for the store tests. A "person" is a
 * centre drawn uniformly in [-0.2, 0.2) per component; each of their faces
 * is the centre plus uniform noise in [-noise/2, noise/2). With 128
 * components, faces of one person lie about noise * 4.6 apart and faces of
 * different people about 1.9 apart: far on either side of the match
 * threshold. The generator is a fixed LCG so every run draws the same
 * descriptors from the same seed.
 */
#ifndef LETHE_TEST_PEOPLE_H
#define LETHE_TEST_PEOPLE_H

/* Uniform in [-0.5, 0.5), from *rng (advanced). */
static inline float people_rand(unsigned *rng)
{
    *rng = *rng * 1103515245u + 12345u;
    return (float)((*rng >> 8) & 0xFFFF) / 65536.0f - 0.5f;
}

/* people x per descriptors into v, person p's faces at v[p * per ...]. */
static inline void people_make(float (*v)[128], int people, int per, float noise, unsigned *rng)
{
    for (int p = 0; p < people; p++) {
        float c[128];
        for (int k = 0; k < 128; k++)
            c[k] = people_rand(rng) * 0.4f;
        for (int j = 0; j < per; j++)
            for (int k = 0; k < 128; k++)
                v[p * per + j][k] = c[k] + people_rand(rng) * noise;
    }
}

#endif
