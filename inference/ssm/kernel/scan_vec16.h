/* Full 16-state tiles of the float32 scan in GCC/clang vector types (included by scan.c).
 *
 * Why by hand: written as `omp simd` loops over a tile, the compiler keeps the tile in a
 * stack array and sums the 16 products of <h, C> through a store and a narrower reload,
 * which the CPU cannot forward; every step then waits on memory (~25 cycles). Here the
 * state is one vector variable, the sum is a tree of register shuffles, and a step is a
 * couple of dozen vector instructions. The compiler maps a 16-float vector to one AVX-512
 * register, two AVX ones, or four SSE ones.
 */

typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));
typedef uint32_t v16u __attribute__((vector_size(64)));
typedef float v8f __attribute__((vector_size(32)));
typedef float v4f __attribute__((vector_size(16)));

#define VEC_INLINE static inline __attribute__((always_inline))

VEC_INLINE v16f load16(const float *p) {
    v16f v;
    memcpy(&v, p, sizeof v);
    return v;
}

VEC_INLINE void store16(float *p, v16f v) { memcpy(p, &v, sizeof v); }

VEC_INLINE v16f splat16(float x) { return (v16f){0} + x; }

VEC_INLINE v16f select16(v16i mask, v16f a, v16f b) {
    return (v16f) (((v16i) a & mask) | ((v16i) b & ~mask));
}

/* exp2_f32 of scan.c, lane by lane (NaN fails both clamps' comparisons, as there). */
VEC_INLINE v16f exp2_v16(v16f x0) {
    const v16i tiny = x0 < splat16(-125.0f), nan = x0 != x0;
    v16f x = select16(x0 > splat16(-125.0f), x0, splat16(-125.0f));
    x = select16(x < splat16(126.0f), x, splat16(126.0f));
    const v16f k = (x + 12582912.0f) - 12582912.0f;
    const v16f f = x - k;
    const v16f p = EXP2_POLY(f);
    const v16u bits = (v16u) p + ((v16u) __builtin_convertvector(k, v16i) << 23);
    return select16(nan, x0, (v16f) (bits & (v16u) ~tiny));
}

/* The sum of the lanes as a tree of halves (memcpy of a vector's halves compiles to
 * register extracts; GCC before 12 has no __builtin_shufflevector). */
VEC_INLINE float sum16(v16f v) {
    v8f a, b;
    memcpy(&a, &v, sizeof a);
    memcpy(&b, (const char *) &v + sizeof a, sizeof b);
    a += b;
    v4f c, d;
    memcpy(&c, &a, sizeof c);
    memcpy(&d, (const char *) &a + sizeof c, sizeof d);
    c += d;
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* tile_forward of scan_impl.h for nt = 16 (same arguments but nt). */
static void tile16_forward(int64_t L, const float *A2, const float *Bp, int64_t b_sl, const float *Cp,
                           int64_t c_sl, const float *dt, const float *u, float *y, float *H, int64_t ldh,
                           float *last) {
    const v16f a2 = load16(A2);
    v16f h = splat16(0.0f);
    for (int64_t l = 0; l < L; l++) {
        const float dtl = dt[l];
        h = exp2_v16(a2 * dtl) * h + load16(Bp + l * b_sl) * (dtl * u[l]);
        y[l] += sum16(h * load16(Cp + l * c_sl));
        if (H) store16(H + l * ldh, h);
    }
    store16(last, h);
}

/* tile_backward of scan_impl.h for nt = 16. A time-invariant B or C (step stride 0) has
 * its gradient summed in a register rather than through memory at every step. */
static void tile16_backward(int64_t L, const float *A, const float *A2, const float *Bp, int64_t b_sl,
                            const float *Cp, int64_t c_sl, float *dBp, float *dCp, const float *dt,
                            const float *u, const float *dy, const float *H, int64_t ldh, const float *dlast,
                            float *gB, float *gdt, float *dA) {
    const v16f a = load16(A), a2 = load16(A2);
    v16f g = dlast ? load16(dlast) : splat16(0.0f), gA = splat16(0.0f);
    v16f dB_sum = splat16(0.0f), dC_sum = splat16(0.0f);
    for (int64_t l = L - 1; l >= 0; l--) {
        const float dtl = dt[l], dbu = dtl * u[l], dyl = dy[l];
        const v16f Bl = load16(Bp + l * b_sl), Hl = load16(H + l * ldh), Hp = load16(H + (l - 1) * ldh);
        const v16f gn = g + load16(Cp + l * c_sl) * dyl;
        const v16f carry = gn * exp2_v16(a2 * dtl);
        const v16f q = carry * Hp;
        if (c_sl)
            store16(dCp + l * c_sl, load16(dCp + l * c_sl) + Hl * dyl);
        else
            dC_sum += Hl * dyl;
        if (b_sl)
            store16(dBp + l * b_sl, load16(dBp + l * b_sl) + gn * dbu);
        else
            dB_sum += gn * dbu;
        gB[l] += sum16(gn * Bl);
        gdt[l] += sum16(q * a);
        gA += q * dtl;
        g = carry;
    }
    if (!c_sl) store16(dCp, load16(dCp) + dC_sum);
    if (!b_sl) store16(dBp, load16(dBp) + dB_sum);
    store16(dA, gA);
}
