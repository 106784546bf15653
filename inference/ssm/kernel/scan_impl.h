/* The selective scan for one floating-point type: included by scan.c once per type, with
 * REAL (float or double), SFX (f32 or f64), DECAY(x) = exp(x / DECAY_SCALE) (so that
 * DECAY(delta * A * DECAY_SCALE) = exp(delta * A)), SOFTPLUS(x) (torch's, threshold 20)
 * and SIGMOID(x) defined; every one of them inlines, so the loops below vectorise.
 * FULL_TILE_FORWARD / FULL_TILE_BACKWARD run a tile of exactly TILE states: tile_forward
 * and tile_backward below, or hand-vectorised versions (scan_vec16.h).
 *
 * A row is one (batch, channel) pair; rows are independent, so threads split them. A row
 * runs its N states in tiles of TILE: a tile's states stay in vector registers for the
 * whole sweep over L, and the loop over a tile carries no dependence (`omp simd`).
 */

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define FN(name) CAT(name, SFX)

typedef struct {
    const REAL *u, *delta, *A, *B, *C, *D, *z, *bias;  /* D, z, bias may be NULL */
    int softplus;
    const REAL *dout, *dlast;                          /* backward; dlast may be NULL */
    REAL *out, *last;                                  /* forward */
    REAL *du, *ddelta, *dz, *dA, *dB, *dC, *dD, *dbias; /* backward; dB, dC: a partial sum per worker */
} FN(Args);

static void FN(unpack)(void *const *p, const int64_t *sizes, int backward, FN(Args) *a) {
    memset(a, 0, sizeof *a);
    a->u = p[0]; a->delta = p[1]; a->A = p[2]; a->B = p[3]; a->C = p[4]; a->D = p[5]; a->z = p[6];
    a->bias = p[7];
    a->softplus = (int) sizes[14];
    if (!backward) {
        a->out = p[8]; a->last = p[9];
        return;
    }
    a->dout = p[8]; a->dlast = p[9]; a->du = p[10]; a->ddelta = p[11]; a->dz = p[12]; a->dA = p[13];
    a->dB = p[14]; a->dC = p[15]; a->dD = p[16]; a->dbias = p[17];
}

/* dt = softplus(delta + bias) (or without softplus) for one row. */
static void FN(row_dt)(const FN(Args) *a, int64_t row, int64_t d, int64_t L, REAL *restrict dt) {
    const REAL *restrict x = a->delta + row * L;
    const REAL bias = a->bias ? a->bias[d] : 0;
    if (a->softplus) {
#pragma omp simd
        for (int64_t l = 0; l < L; l++) dt[l] = SOFTPLUS(x[l] + bias);
    } else {
#pragma omp simd
        for (int64_t l = 0; l < L; l++) dt[l] = x[l] + bias;
    }
}

/* The sum of a tile's TILE values as a tree of halves in GCC/clang vector types, a few
 * vector adds; an `omp simd` reduction, or a plain loop, sums the lanes one by one (float
 * addition being ordered), and that chain would cost more than the rest of a step. */
typedef REAL FN(half) __attribute__((vector_size(TILE / 2 * sizeof(REAL))));
typedef REAL FN(quarter) __attribute__((vector_size(TILE / 4 * sizeof(REAL))));
typedef REAL FN(eighth) __attribute__((vector_size(TILE / 8 * sizeof(REAL))));

static inline REAL FN(tile_sum)(const REAL *restrict p) {
    FN(half) a, b;
    FN(quarter) c, d;
    FN(eighth) e, f;
    memcpy(&a, p, sizeof a);
    memcpy(&b, p + TILE / 2, sizeof b);
    a += b;
    memcpy(&c, &a, sizeof c);
    memcpy(&d, (const REAL *) &a + TILE / 4, sizeof d);
    c += d;
    memcpy(&e, &c, sizeof e);
    memcpy(&f, (const REAL *) &c + TILE / 8, sizeof f);
    e += f;
    return e[0] + e[1];
}

/* One tile of nt states (nt <= TILE) of a row over all L steps, from h = 0:
 * h_l = exp(dt_l A) h_{l-1} + dt_l u_l B_l, y_l += <h_l, C_l>. With H, state l goes to
 * H + l * ldh. The tile's final state goes to last. Always inlined, so that a constant
 * nt = TILE gives the compiler fixed-width vectors and no loop bookkeeping. */
static inline __attribute__((always_inline)) void FN(tile_forward)(
    int64_t nt, int64_t L, const REAL *restrict A2, const REAL *restrict Bp, int64_t b_sl,
    const REAL *restrict Cp, int64_t c_sl, const REAL *restrict dt, const REAL *restrict u,
    REAL *restrict y, REAL *restrict H, int64_t ldh, REAL *restrict last) {
    REAL h[TILE] = {0}, hc[TILE] = {0};
    for (int64_t l = 0; l < L; l++) {
        const REAL dtl = dt[l], dbu = dtl * u[l];
        const REAL *restrict Bl = Bp + l * b_sl, *restrict Cl = Cp + l * c_sl;
#pragma omp simd
        for (int64_t n = 0; n < nt; n++) {
            h[n] = DECAY(dtl * A2[n]) * h[n] + dbu * Bl[n];
            hc[n] = h[n] * Cl[n];
        }
        y[l] += FN(tile_sum)(hc);
        if (H)
            for (int64_t n = 0; n < nt; n++) H[l * ldh + n] = h[n];
    }
    for (int64_t n = 0; n < nt; n++) last[n] = h[n];
}

/* The adjoint of one tile, backwards over L: g_l = C_l dy_l + exp(dt_{l+1} A) g_{l+1}
 * (from g = dlast past the end); its products with the stored states give the gradients
 * of A, B, C in place and the per-step sums <g_l, B_l> (gB) and <q_l, A> (gdt, where
 * q_l = g_l exp(dt_l A) h_{l-1}). */
static inline __attribute__((always_inline)) void FN(tile_backward)(
    int64_t nt, int64_t L, const REAL *restrict A, const REAL *restrict A2, const REAL *restrict Bp,
    int64_t b_sl, const REAL *restrict Cp, int64_t c_sl, REAL *restrict dBp, REAL *restrict dCp,
    const REAL *restrict dt, const REAL *restrict u, const REAL *restrict dy, const REAL *restrict H,
    int64_t ldh, const REAL *restrict dlast, REAL *restrict gB, REAL *restrict gdt, REAL *restrict dA) {
    REAL g[TILE] = {0}, gA[TILE] = {0}, gb[TILE] = {0}, qa[TILE] = {0};
    for (int64_t n = 0; n < nt; n++) g[n] = dlast ? dlast[n] : 0;
    for (int64_t l = L - 1; l >= 0; l--) {
        const REAL dtl = dt[l], dbu = dtl * u[l], dyl = dy[l];
        const REAL *restrict Bl = Bp + l * b_sl, *restrict Cl = Cp + l * c_sl;
        REAL *restrict dBl = dBp + l * b_sl, *restrict dCl = dCp + l * c_sl;
        const REAL *restrict Hl = H + l * ldh, *restrict Hp = H + (l - 1) * ldh;  /* Hp: row -1 is zeros */
#pragma omp simd
        for (int64_t n = 0; n < nt; n++) {
            const REAL gn = g[n] + dyl * Cl[n];
            const REAL carry = gn * DECAY(dtl * A2[n]);  /* exp(dt A) g: g of step l - 1, before its C dy */
            const REAL q = carry * Hp[n];
            dCl[n] += dyl * Hl[n];
            dBl[n] += gn * dbu;
            gb[n] = gn * Bl[n];
            gA[n] += q * dtl;
            qa[n] = q * A[n];
            g[n] = carry;
        }
        gB[l] += FN(tile_sum)(gb);
        gdt[l] += FN(tile_sum)(qa);
    }
    for (int64_t n = 0; n < nt; n++) dA[n] = gA[n];
}

static int FN(forward_rows)(const Shape *s, const FN(Args) *a, int64_t r0, int64_t r1, int worker) {
    (void) worker;
    const int64_t N = s->dstate, L = s->length;
    REAL *mem = malloc(sizeof(REAL) * (size_t) (N + 2 * L));
    if (!mem) return 1;
    REAL *A2 = mem, *dt = mem + N, *y = dt + L;
    for (int64_t row = r0; row < r1; row++) {
        const int64_t d = row % s->dim, b = row / s->dim;
        const REAL *Bp = a->B + b * s->b_sb + (d / (s->dim / s->b_groups)) * s->b_sg;
        const REAL *Cp = a->C + b * s->c_sb + (d / (s->dim / s->c_groups)) * s->c_sg;
        const REAL *restrict ur = a->u + row * L;
        for (int64_t n = 0; n < N; n++) A2[n] = a->A[d * N + n] * (REAL) DECAY_SCALE;
        FN(row_dt)(a, row, d, L, dt);
        for (int64_t l = 0; l < L; l++) y[l] = 0;
        int64_t t0 = 0;
        for (; t0 + TILE <= N; t0 += TILE)
            FULL_TILE_FORWARD(L, A2 + t0, Bp + t0, s->b_sl, Cp + t0, s->c_sl, dt, ur, y, NULL, 0,
                             a->last + row * N + t0);
        if (t0 < N)
            FN(tile_forward)(N - t0, L, A2 + t0, Bp + t0, s->b_sl, Cp + t0, s->c_sl, dt, ur, y, NULL, 0,
                             a->last + row * N + t0);
        const REAL Dd = a->D ? a->D[d] : 0;
        REAL *restrict outr = a->out + row * L;
#pragma omp simd
        for (int64_t l = 0; l < L; l++) outr[l] = y[l] + Dd * ur[l];
        if (a->z) {
            const REAL *restrict zr = a->z + row * L;
#pragma omp simd
            for (int64_t l = 0; l < L; l++) outr[l] *= zr[l] * SIGMOID(zr[l]);
        }
    }
    free(mem);
    return 0;
}

static int FN(backward_rows)(const Shape *s, const FN(Args) *a, int64_t r0, int64_t r1, int worker) {
    const int64_t N = s->dstate, L = s->length;
    /* A2, h_L (unused), dt, y, dy, gB, gdt, then a zero row and the L states */
    REAL *mem = malloc(sizeof(REAL) * (size_t) (2 * N + 5 * L + N + L * N));
    if (!mem) return 1;
    REAL *A2 = mem, *hL = mem + N, *dt = hL + N, *y = dt + L, *dy = y + L, *gB = dy + L, *gdt = gB + L;
    REAL *H = gdt + L + N;
    for (int64_t n = 0; n < N; n++) H[n - N] = 0;
    REAL *dBw = a->dB + worker * s->db_worker, *dCw = a->dC + worker * s->dc_worker;
    for (int64_t row = r0; row < r1; row++) {
        const int64_t d = row % s->dim, b = row / s->dim;
        const int64_t b_off = b * s->b_sb + (d / (s->dim / s->b_groups)) * s->b_sg;
        const int64_t c_off = b * s->c_sb + (d / (s->dim / s->c_groups)) * s->c_sg;
        const REAL *restrict ur = a->u + row * L, *restrict dout = a->dout + row * L;
        const REAL *Ad = a->A + d * N, *dlast = a->dlast ? a->dlast + row * N : NULL;
        for (int64_t n = 0; n < N; n++) A2[n] = Ad[n] * (REAL) DECAY_SCALE;
        FN(row_dt)(a, row, d, L, dt);
        for (int64_t l = 0; l < L; l++) y[l] = gB[l] = gdt[l] = 0;
        int64_t t0 = 0;  /* the forward again, keeping the states */
        for (; t0 + TILE <= N; t0 += TILE)
            FULL_TILE_FORWARD(L, A2 + t0, a->B + b_off + t0, s->b_sl, a->C + c_off + t0, s->c_sl, dt, ur,
                             y, H + t0, N, hL + t0);
        if (t0 < N)
            FN(tile_forward)(N - t0, L, A2 + t0, a->B + b_off + t0, s->b_sl, a->C + c_off + t0, s->c_sl, dt, ur,
                             y, H + t0, N, hL + t0);
        const REAL Dd = a->D ? a->D[d] : 0;
        REAL dD = 0;
        if (a->z) {  /* out = pre * silu(z), pre = y + D u; silu'(z) = s (1 + z (1 - s)) */
            const REAL *restrict zr = a->z + row * L;
            REAL *restrict dzr = a->dz ? a->dz + row * L : NULL;
#pragma omp simd reduction(+ : dD)
            for (int64_t l = 0; l < L; l++) {
                const REAL sl = SIGMOID(zr[l]), pre = y[l] + Dd * ur[l];
                if (dzr) dzr[l] = dout[l] * pre * sl * (1 + zr[l] * (1 - sl));
                dy[l] = dout[l] * zr[l] * sl;
                dD += dy[l] * ur[l];
            }
        } else {
#pragma omp simd reduction(+ : dD)
            for (int64_t l = 0; l < L; l++) {
                dy[l] = dout[l];
                dD += dy[l] * ur[l];
            }
        }
        for (t0 = 0; t0 + TILE <= N; t0 += TILE)
            FULL_TILE_BACKWARD(L, Ad + t0, A2 + t0, a->B + b_off + t0, s->b_sl, a->C + c_off + t0, s->c_sl,
                              dBw + b_off + t0, dCw + c_off + t0, dt, ur, dy, H + t0, N, dlast ? dlast + t0 : NULL,
                              gB, gdt, a->dA + row * N + t0);
        if (t0 < N)
            FN(tile_backward)(N - t0, L, Ad + t0, A2 + t0, a->B + b_off + t0, s->b_sl, a->C + c_off + t0, s->c_sl,
                              dBw + b_off + t0, dCw + c_off + t0, dt, ur, dy, H + t0, N, dlast ? dlast + t0 : NULL,
                              gB, gdt, a->dA + row * N + t0);
        const REAL *restrict x = a->delta + row * L;
        const REAL bias = a->bias ? a->bias[d] : 0;
        REAL *restrict dur = a->du + row * L, *restrict ddr = a->ddelta + row * L;
        REAL dbias = 0;
#pragma omp simd reduction(+ : dbias)
        for (int64_t l = 0; l < L; l++) {
            dur[l] = dt[l] * gB[l] + dy[l] * Dd;
            REAL g = gdt[l] + ur[l] * gB[l];
            if (a->softplus) {  /* torch's softplus_backward: 1 above the threshold, else sigmoid */
                const REAL xl = x[l] + bias;
                g = xl > 20 ? g : g * SIGMOID(xl);
            }
            ddr[l] = g;
            dbias += g;
        }
        if (a->dD) a->dD[row] = dD;
        if (a->dbias) a->dbias[row] = dbias;
    }
    free(mem);
    return 0;
}

typedef struct {
    const Shape *s;
    const FN(Args) *a;
    int64_t r0, r1;
    int worker, backward, status;
} FN(Job);

static void *FN(run_job)(void *p) {
    FN(Job) *j = p;
    j->status = (j->backward ? FN(backward_rows) : FN(forward_rows))(j->s, j->a, j->r0, j->r1, j->worker);
    return NULL;
}

/* Split the rows over `workers` threads (the caller's among them); 0 on success. With
 * OpenMP the threads are the process' OpenMP team, which PyTorch's CPU ops use too (the
 * loader maps this library's libgomp.so.1 onto the one torch loaded): threads of our own
 * would compete for the cores with torch's, which spin for a while after each op. */
static int FN(run)(const int64_t *sizes, void *const *ptrs, int workers, int backward) {
    Shape s;
    FN(Args) a;
    unpack_shape(sizes, &s);
    FN(unpack)(ptrs, sizes, backward, &a);
    const int64_t rows = s.batch * s.dim;
    if (rows <= 0) return 0;
    if (workers < 1) workers = 1;
    if (workers > MAX_WORKERS) workers = MAX_WORKERS;
    if (workers > rows) workers = (int) rows;
    FN(Job) jobs[MAX_WORKERS];
    for (int w = 0; w < workers; w++)
        jobs[w] = (FN(Job)){&s, &a, rows * w / workers, rows * (w + 1) / workers, w, backward, 0};
    int status = 0;
#ifdef _OPENMP
#pragma omp parallel for num_threads(workers) schedule(static, 1) reduction(| : status)
    for (int w = 0; w < workers; w++) {
        FN(run_job)(&jobs[w]);
        status |= jobs[w].status;
    }
#else
    pthread_t threads[MAX_WORKERS];
    int started[MAX_WORKERS] = {0};
    for (int w = 1; w < workers; w++)
        started[w] = pthread_create(&threads[w], NULL, FN(run_job), &jobs[w]) == 0;
    FN(run_job)(&jobs[0]);
    status = jobs[0].status;
    for (int w = 1; w < workers; w++) {
        if (started[w])
            pthread_join(threads[w], NULL);
        else
            FN(run_job)(&jobs[w]);  /* no thread to be had: do its rows here */
        status |= jobs[w].status;
    }
#endif
    return status;
}

int FN(scan_forward)(const int64_t *sizes, void *const *ptrs, int workers) {
    return FN(run)(sizes, ptrs, workers, 0);
}

int FN(scan_backward)(const int64_t *sizes, void *const *ptrs, int workers) {
    return FN(run)(sizes, ptrs, workers, 1);
}

/* This type's parameters are used up: the next inclusion defines its own. */
#undef CAT_
#undef CAT
#undef FN
#undef REAL
#undef SFX
#undef DECAY
#undef DECAY_SCALE
#undef SOFTPLUS
#undef SIGMOID
#undef FULL_TILE_FORWARD
#undef FULL_TILE_BACKWARD
