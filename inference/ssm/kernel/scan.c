/* Fused selective scan for CPUs, float32 and float64, forward and backward.
 *
 * Built at first use by inference/ssm/native.py (any C11 compiler; OpenMP if it has it, else
 * pthreads; no Python or torch headers) and called through ctypes, which releases the GIL. Why a kernel: in
 * PyTorch every step of the recurrence is a few tensor ops of batch*dim*N values, and at
 * L ~ 100 the fixed cost of those ops, not arithmetic, is what a training step pays for.
 * Here a step of one (batch, channel) row is one pass over its N states in registers.
 *
 * Layouts (element strides; N is always the innermost, contiguous axis):
 *   u, delta, z, out and their gradients: (batch, dim, L) contiguous
 *   A: (dim, N); D, delta_bias: (dim,); per-row gradients of D and delta_bias: (batch, dim)
 *   B, C: channel d of batch b at step l reads X + b*sb + (d / (dim / groups))*sg + l*sl,
 *         so (dim, N) time-invariant is groups = dim, sb = sl = 0, sg = N, and
 *         (batch, G, L, N) variable is sb = G*L*N, sg = L*N, sl = N.
 * Gradients of B and C are written per worker (plus db_worker / dc_worker elements for
 * worker w), in B's and C's layout, and summed by the caller: rows of different workers
 * may share a group.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKERS 256
#define TILE 16 /* (scan_vec16.h is written for 16) states of a row kept in registers at once: one AVX-512 or two AVX2 vectors of floats */
#define LOG2E 1.4426950408889634
#define LN2 0.6931471805599453

typedef struct {
    int64_t batch, dim, dstate, length;
    int64_t b_groups, b_sb, b_sg, b_sl;
    int64_t c_groups, c_sb, c_sg, c_sl;
    int64_t db_worker, dc_worker;
} Shape;

static void unpack_shape(const int64_t *v, Shape *s) {
    s->batch = v[0]; s->dim = v[1]; s->dstate = v[2]; s->length = v[3];
    s->b_groups = v[4]; s->b_sb = v[5]; s->b_sg = v[6]; s->b_sl = v[7];
    s->c_groups = v[8]; s->c_sb = v[9]; s->c_sg = v[10]; s->c_sl = v[11];
    s->db_worker = v[12]; s->dc_worker = v[13];
}

/* 2^f for |f| <= 1/2 by the degree-7 Taylor polynomial in Horner form; f a float or a
 * vector of floats (scan_vec16.h uses it too). */
#define EXP2_POLY(f)                                                                            \
    (((((((1.5252734e-05f * (f) + 1.5403530e-04f) * (f) + 1.3333558e-03f) * (f) + 9.6181291e-03f) \
         * (f) + 5.5504109e-02f) * (f) + 2.4022651e-01f) * (f) + 6.9314718e-01f) * (f) + 1.0f)

/* 2^x in float32, written so that the compiler vectorises it (no libm call): x = k + f
 * with k an integer and |f| <= 1/2, 2^f by its degree-7 Taylor polynomial (truncation
 * error < 5e-9, below float32's rounding), 2^k added to the exponent bits. Results below
 * 2^-125 are 0 (no subnormals: for a decay or a softplus that small, zero is exact enough,
 * and it keeps the exponent arithmetic exact); x is capped at 126; NaN stays NaN. The
 * clamps are written so that NaN fails both comparisons and becomes a number before the
 * conversion to an integer (undefined for NaN), and comes back at the end. */
static inline float exp2_f32(float x0) {
    float x = x0 > -125.0f ? x0 : -125.0f;
    x = x < 126.0f ? x : 126.0f;
    const float k = (x + 12582912.0f) - 12582912.0f; /* round to nearest: 1.5 * 2^23 */
    const float f = x - k;
    float p = EXP2_POLY(f);
    uint32_t bits;
    memcpy(&bits, &p, sizeof bits);
    bits += (uint32_t) (int32_t) k << 23;
    memcpy(&p, &bits, sizeof p);
    return x0 != x0 ? x0 : x0 < -125.0f ? 0.0f : p;
}

/* log(w) for w >= 1 in float32, vectorisable: w = m 2^e with m in [sqrt(1/2), sqrt(2)),
 * log m = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.172, by its odd series to s^9
 * (error < 3e-9). */
static inline float log_f32(float w) {
    int32_t bits;
    memcpy(&bits, &w, sizeof bits);
    int32_t e = (bits >> 23) - 127;
    bits = (bits & 0x007fffff) | 0x3f800000; /* m in [1, 2) */
    float m;
    memcpy(&m, &bits, sizeof m);
    const int big = m > 1.41421356f;
    m = big ? 0.5f * m : m;
    e = big ? e + 1 : e;
    const float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    const float series = 1.0f + s2 * (1.0f / 3 + s2 * (1.0f / 5 + s2 * (1.0f / 7 + s2 * (1.0f / 9))));
    return (float) e * (float) LN2 + 2.0f * s * series;
}

/* torch's softplus (beta 1, threshold 20): x above 20, else log(1 + e^x), with log1p's
 * accuracy for tiny e^x by Goldberg's log(w) * t / (w - 1). */
static inline float softplus_f32(float x) {
    const float t = exp2_f32(x * (float) LOG2E), w = 1.0f + t;
    const float r = w == 1.0f ? t : log_f32(w) * (t / (w - 1.0f));
    return x > 20.0f || x != x ? x : r;
}

/* 1 / (1 + e^-x), from t = e^-|x| <= 1, so that it neither overflows nor loses tiny values. */
static inline float sigmoid_f32(float x) {
    const float t = exp2_f32(-(x < 0.0f ? -x : x) * (float) LOG2E), r = 1.0f / (1.0f + t);
    return x < 0.0f ? t * r : x != x ? x : r;
}

static inline double softplus_f64(double x) { return x > 20.0 ? x : log1p(exp(x)); }
static inline double sigmoid_f64(double x) { return 1.0 / (1.0 + exp(-x)); }

#include "scan_vec16.h"

#define REAL float
#define SFX f32
#define FULL_TILE_FORWARD tile16_forward
#define FULL_TILE_BACKWARD tile16_backward
#define DECAY(x) exp2_f32(x)
#define DECAY_SCALE LOG2E
#define SOFTPLUS(x) softplus_f32(x)
#define SIGMOID(x) sigmoid_f32(x)
#include "scan_impl.h"

#define REAL double
#define SFX f64
#define FULL_TILE_FORWARD(...) tile_forward_f64(TILE, __VA_ARGS__)
#define FULL_TILE_BACKWARD(...) tile_backward_f64(TILE, __VA_ARGS__)
#define DECAY(x) exp(x)
#define DECAY_SCALE 1.0
#define SOFTPLUS(x) softplus_f64(x)
#define SIGMOID(x) sigmoid_f64(x)
#include "scan_impl.h"

/* Lets the loader check that it has the kernel it was built from. */
int scan_abi_version(void) { return 3; }

/* The most workers a call uses (the caller sizes its per-worker buffers by it). */
int scan_max_workers(void) { return MAX_WORKERS; }

/* 1 when built with OpenMP (its threads), 0 with threads of its own (pthreads). */
int scan_uses_openmp(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}
