/*
 * calibration.c: match evidence from the calibration table (see
 * calibration.h): the false-match rate at a distance, the threshold that
 * holds a store's false-positive identification rate, the plain-words tier.
 *
 * Between knots, log10 of the false-match rate is linear in the distance
 * (the knots are an eighth of a decade apart, so this is close to the
 * measured curve). Below the last knot (rates too rare to measure on LFW)
 * it goes on along a straight line fitted to the last measured decade:
 * the impostor tail falls faster than that (its log is concave), so the
 * rate extrapolated there is an over-estimate, and a threshold chosen from
 * it errs on the side of returning nothing.
 */
#include <math.h>
#include <string.h>

#include "lethe.h"
#include "model/calibration.h"

double calib_log10_fmr(const calib_table *t, float d, double *fnmr)
{
    const calib_knot *k = t->knots, *last = &k[t->n - 1];
    double f = 0, lf = 0;
    if (d >= k[0].distance) {
        f = k[0].fnmr;
        lf = k[0].log10_fmr;
    } else if (d <= last->distance) {
        lf = last->log10_fmr + t->tail_slope * ((double)d - last->distance);
        /* genuine pairs: towards all of them farther at distance 0 */
        f = last->distance > 0 ? 1 - (1 - last->fnmr) * d / last->distance : 1;
    } else {
        int i = 0;
        while (k[i + 1].distance > d)
            i++;
        double w = ((double)d - k[i + 1].distance) / ((double)k[i].distance - k[i + 1].distance);
        lf = k[i + 1].log10_fmr + w * ((double)k[i].log10_fmr - k[i + 1].log10_fmr);
        f = k[i + 1].fnmr + w * ((double)k[i].fnmr - k[i + 1].fnmr);
    }
    if (fnmr)
        *fnmr = f;
    return lf;
}

float calib_distance_at(const calib_table *t, double lf)
{
    const calib_knot *k = t->knots, *last = &k[t->n - 1];
    if (lf >= k[0].log10_fmr)
        return k[0].distance;
    if (lf <= last->log10_fmr) {
        double d = last->distance + (lf - last->log10_fmr) / t->tail_slope;
        return d > 0 ? (float)d : 0.0f;
    }
    int i = 0;
    while (k[i + 1].log10_fmr > lf)
        i++;
    double w = (lf - k[i + 1].log10_fmr) / ((double)k[i].log10_fmr - k[i + 1].log10_fmr);
    return (float)(k[i + 1].distance + w * ((double)k[i].distance - k[i + 1].distance));
}

int lethe_calibration_info(lethe_calibration *info)
{
    const calib_table *t = &calib_lfw;
    if (!info)
        return LETHE_ERR_ARG;
    memset(info, 0, sizeof(*info));
    info->name = t->name;
    info->model = t->model;
    info->source = t->source;
    info->photos = t->photos;
    info->no_face = t->no_face;
    info->people = t->people;
    info->impostor_pairs = t->impostor_pairs;
    info->genuine_pairs = t->genuine_pairs;
    info->min_measured_fmr = pow(10, t->knots[t->n - 1].log10_fmr);
    info->min_measured_distance = t->knots[t->n - 1].distance;
    return LETHE_OK;
}

int lethe_calibration_rates(float distance, double *fmr, double *fnmr)
{
    if (!isfinite(distance) || distance < 0)
        return LETHE_ERR_ARG;
    double lf = calib_log10_fmr(&calib_lfw, distance, fnmr);
    if (fmr)
        *fmr = pow(10, lf);
    return LETHE_OK;
}

int lethe_calibration_threshold(double fpir, uint64_t gallery, float *threshold)
{
    if (!threshold || !(fpir > 0 && fpir < 1))
        return LETHE_ERR_ARG;
    if (gallery == 0) {
        *threshold = INFINITY;
        return LETHE_OK;
    }
    /* 1 - (1 - f)^gallery = fpir, without cancellation */
    double f = -expm1(log1p(-fpir) / (double)gallery);
    float t = calib_distance_at(&calib_lfw, log10(f));
    /* rounding to float must not lift the rate above f */
    while (t > 0 && calib_log10_fmr(&calib_lfw, t, NULL) > log10(f))
        t = nextafterf(t, 0);
    *threshold = t;
    return LETHE_OK;
}

int lethe_calibration_tier(double strangers, int *tier)
{
    if (!tier || !(strangers >= 0))
        return LETHE_ERR_ARG;
    *tier = strangers < 0.01  ? LETHE_TIER_STRONG
            : strangers < 0.1 ? LETHE_TIER_MODERATE
            : strangers < 1   ? LETHE_TIER_WEAK
                              : LETHE_TIER_NONE;
    return LETHE_OK;
}

const char *lethe_tier_name(int tier)
{
    static const char *const names[] = {"strong", "moderate", "weak", "none", "uncalibrated"};
    return tier >= 0 && tier <= LETHE_TIER_UNCALIBRATED ? names[tier] : "?";
}
