/* Fused CPU kernels of the mHC n-stream ops (see mhc_bench/cpukernels/__init__.py).
 *
 * Built twice at first use: -DREAL=float -DSFX=f32 and -DREAL=double -DSFX=f64.
 * Layouts are token-major and contiguous, as torch hands them over:
 *   x, g_x:   [T, n, C]   h_res:  [T, n, n] (rows = output streams)
 *   y, g_y:   [T, C]      h_pre, h_post: [T, n]
 * Every kernel is one pass over its token's rows, parallel over tokens; the
 * per-token working set (n*C values) stays in L1/L2, so the [T, n, C] tensors
 * are read or written once each. Accumulation is in REAL (fp32 or fp64).
 * Output pointers may be NULL when that gradient is not needed. ``nt`` is the OpenMP team
 * size; the caller passes 1 for work too small to share.
 */
#include <tgmath.h>
#include <stdlib.h>

#ifndef REAL
#define REAL float
#define SFX f32
#endif
#define CAT2(a, b) a##_##b
#define CAT(a, b) CAT2(a, b)
#define FN(name) CAT(name, SFX)

typedef long long i64;

/* out[t] = sum_j h[t, j] x[t, j] */
void FN(pre_fwd)(i64 T, int n, i64 C, const REAL *h, const REAL *x, REAL *out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *ht = h + t * n, *xt = x + t * n * C;
        REAL *o = out + t * C;
        const REAL h0 = ht[0];
#pragma omp simd
        for (i64 c = 0; c < C; c++) o[c] = h0 * xt[c];
        for (int j = 1; j < n; j++) {
            const REAL hj = ht[j];
            const REAL *xj = xt + j * C;
#pragma omp simd
            for (i64 c = 0; c < C; c++) o[c] += hj * xj[c];
        }
    }
}

/* dh[t, j] = <x[t, j], g[t]>,  dx[t, j] = h[t, j] g[t] */
void FN(pre_bwd)(i64 T, int n, i64 C, const REAL *h, const REAL *x, const REAL *g, REAL *dh, REAL *dx,
                 int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *gt = g + t * C;
        for (int j = 0; j < n; j++) {
            if (dh) {
                const REAL *xj = x + (t * n + j) * C;
                REAL acc = 0;
#pragma omp simd reduction(+ : acc)
                for (i64 c = 0; c < C; c++) acc += xj[c] * gt[c];
                dh[t * n + j] = acc;
            }
            if (dx) {
                const REAL hj = h[t * n + j];
                REAL *d = dx + (t * n + j) * C;
#pragma omp simd
                for (i64 c = 0; c < C; c++) d[c] = hj * gt[c];
            }
        }
    }
}

/* out[t, i] = sum_j h_res[t, i, j] x[t, j] + h_post[t, i] y[t] */
void FN(post_res_fwd)(i64 T, int n, i64 C, const REAL *hr, const REAL *x, const REAL *hp, const REAL *y,
                      REAL *out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *xt = x + t * n * C, *yt = y + t * C, *hrt = hr + t * n * n;
        for (int i = 0; i < n; i++) {
            REAL *o = out + (t * n + i) * C;
            const REAL p = hp[t * n + i];
#pragma omp simd
            for (i64 c = 0; c < C; c++) o[c] = p * yt[c];
            for (int j = 0; j < n; j++) {
                const REAL hij = hrt[i * n + j];
                const REAL *xj = xt + j * C;
#pragma omp simd
                for (i64 c = 0; c < C; c++) o[c] += hij * xj[c];
            }
        }
    }
}

/* Given g = dL/dout[t, i]:
 *   dx[t, j] = sum_i h_res[t, i, j] g[t, i]     dy[t] = sum_i h_post[t, i] g[t, i]
 *   dh_res[t, i, j] = <g[t, i], x[t, j]>        dh_post[t, i] = <g[t, i], y[t]> */
void FN(post_res_bwd)(i64 T, int n, i64 C, const REAL *hr, const REAL *x, const REAL *hp, const REAL *y,
                      const REAL *g, REAL *dhr, REAL *dx, REAL *dhp, REAL *dy, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *xt = x + t * n * C, *yt = y + t * C, *gt = g + t * n * C, *hrt = hr + t * n * n;
        if (dx) {
            for (int j = 0; j < n; j++) {
                REAL *d = dx + (t * n + j) * C;
                const REAL h0 = hrt[j];
#pragma omp simd
                for (i64 c = 0; c < C; c++) d[c] = h0 * gt[c];
                for (int i = 1; i < n; i++) {
                    const REAL hij = hrt[i * n + j];
                    const REAL *gi = gt + i * C;
#pragma omp simd
                    for (i64 c = 0; c < C; c++) d[c] += hij * gi[c];
                }
            }
        }
        if (dy) {
            REAL *d = dy + t * C;
            const REAL p0 = hp[t * n];
#pragma omp simd
            for (i64 c = 0; c < C; c++) d[c] = p0 * gt[c];
            for (int i = 1; i < n; i++) {
                const REAL pi = hp[t * n + i];
                const REAL *gi = gt + i * C;
#pragma omp simd
                for (i64 c = 0; c < C; c++) d[c] += pi * gi[c];
            }
        }
        for (int i = 0; (dhr || dhp) && i < n; i++) {
            const REAL *gi = gt + i * C;
            for (int j = 0; dhr && j < n; j++) {
                const REAL *xj = xt + j * C;
                REAL acc = 0;
#pragma omp simd reduction(+ : acc)
                for (i64 c = 0; c < C; c++) acc += gi[c] * xj[c];
                dhr[(t * n + i) * n + j] = acc;
            }
            if (dhp) {
                REAL acc = 0;
#pragma omp simd reduction(+ : acc)
                for (i64 c = 0; c < C; c++) acc += gi[c] * yt[c];
                dhp[t * n + i] = acc;
            }
        }
    }
}

/* Sinkhorn-Knopp on blocks of TB tokens, token index innermost so that every
 * step is a SIMD loop over tokens. m[a][k]: entry a = i*n + j of token k.
 * The block functions are inlined with a literal n (2, 4, 8) so that the
 * loops over entries unroll. */
#define TB 64
#define INLINE static inline __attribute__((always_inline))

static void load_block(const REAL *src, i64 t0, int tb, int nn, REAL *m) {
    for (int a = 0; a < nn; a++)
        for (int k = 0; k < TB; k++) m[a * TB + k] = k < tb ? src[(t0 + k) * nn + a] : 0;
}

static void store_block(const REAL *m, i64 t0, int tb, int nn, REAL *dst) {
    for (int k = 0; k < tb; k++)
        for (int a = 0; a < nn; a++) dst[(t0 + k) * nn + a] = m[a * TB + k];
}

/* M0 = exp(z - max over each column): the column step removes any per-column factor. */
INLINE void start(const int n, REAL *m) {
    for (int j = 0; j < n; j++) {
        REAL mx[TB];
        for (int k = 0; k < TB; k++) mx[k] = m[j * TB + k];
        for (int i = 1; i < n; i++)
#pragma omp simd
            for (int k = 0; k < TB; k++) mx[k] = fmax(mx[k], m[(i * n + j) * TB + k]);
        for (int i = 0; i < n; i++)
#pragma omp simd
            for (int k = 0; k < TB; k++) m[(i * n + j) * TB + k] = exp(m[(i * n + j) * TB + k] - mx[k]);
    }
}

/* One half step from src to dst (may be the same array): divide each column (axis 0: sum over i)
 * or row (axis 1: sum over j) by its sum, saving the sums in s[n][TB]. */
INLINE void normalise(const int n, const int axis, const REAL *src, REAL *dst, REAL *restrict s) {
    for (int v = 0; v < n; v++) {
        REAL *restrict sv = s + v * TB;
        REAL r[TB];
#pragma omp simd
        for (int k = 0; k < TB; k++) sv[k] = src[(axis ? v * n : v) * TB + k];
        for (int u = 1; u < n; u++) {
            const REAL *e = src + (axis ? v * n + u : u * n + v) * TB;
#pragma omp simd
            for (int k = 0; k < TB; k++) sv[k] += e[k];
        }
#pragma omp simd
        for (int k = 0; k < TB; k++) r[k] = 1 / sv[k];
        for (int u = 0; u < n; u++) {
            const int a = (axis ? v * n + u : u * n + v) * TB;
#pragma omp simd
            for (int k = 0; k < TB; k++) dst[a + k] = src[a + k] * r[k];
        }
    }
}

INLINE void fwd_block(const int n, int iters, REAL *m, REAL *s) {
    start(n, m);
    for (int it = 0; it < iters; it++) {
        normalise(n, 0, m, m, s);
        normalise(n, 1, m, m, s);
    }
}

/* Replays the iterations keeping every half step's output and sums, then runs them backwards:
 * B = A / s (s = sums along the axis): dA = (dB - sum_axis(dB * B)) / s. On return gb holds dz. */
INLINE void bwd_block(const int n, int iters, REAL *restrict m0, REAL *restrict gb, REAL *restrict outs,
                      REAL *restrict sums) {
    const int nn = n * n, steps = 2 * iters;
    start(n, m0);
    const REAL *prev = m0;
    for (int st = 0; st < steps; st++) {
        REAL *cur = outs + (size_t)st * nn * TB;
        if (st & 1)
            normalise(n, 1, prev, cur, sums + (size_t)st * n * TB);
        else
            normalise(n, 0, prev, cur, sums + (size_t)st * n * TB);
        prev = cur;
    }
    for (int st = steps - 1; st >= 0; st--) {
        const int axis = st & 1;
        const REAL *b = outs + (size_t)st * nn * TB, *s = sums + (size_t)st * n * TB;
        for (int v = 0; v < n; v++) {
            REAL d[TB], r[TB];
            for (int k = 0; k < TB; k++) d[k] = 0;
            for (int u = 0; u < n; u++) {
                const int a = axis ? v * n + u : u * n + v;
#pragma omp simd
                for (int k = 0; k < TB; k++) d[k] += gb[a * TB + k] * b[a * TB + k];
            }
#pragma omp simd
            for (int k = 0; k < TB; k++) r[k] = 1 / s[v * TB + k];
            for (int u = 0; u < n; u++) {
                const int a = axis ? v * n + u : u * n + v;
#pragma omp simd
                for (int k = 0; k < TB; k++) gb[a * TB + k] = (gb[a * TB + k] - d[k]) * r[k];
            }
        }
    }
#pragma omp simd
    for (int a = 0; a < nn * TB; a++) gb[a] *= m0[a];
}

#define DISPATCH(n, call_with_n)        \
    switch (n) {                        \
    case 2: call_with_n(2); break;      \
    case 4: call_with_n(4); break;      \
    case 8: call_with_n(8); break;      \
    default: call_with_n(n); break;     \
    }

void FN(sinkhorn_fwd)(i64 T, int n, int iters, const REAL *z, REAL *out, int nt) {
    const int nn = n * n;
#pragma omp parallel num_threads(nt)
    {
        REAL *m = malloc(sizeof(REAL) * nn * TB), *s = malloc(sizeof(REAL) * n * TB);
#pragma omp for schedule(static)
        for (i64 t0 = 0; t0 < T; t0 += TB) {
            const int tb = T - t0 < TB ? (int)(T - t0) : TB;
            load_block(z, t0, tb, nn, m);
#define FWD(N) fwd_block(N, iters, m, s)
            DISPATCH(n, FWD)
            store_block(m, t0, tb, nn, out);
        }
        free(m);
        free(s);
    }
}

void FN(sinkhorn_bwd)(i64 T, int n, int iters, const REAL *z, const REAL *g, REAL *dz, int nt) {
    const int nn = n * n, steps = 2 * iters;
#pragma omp parallel num_threads(nt)
    {
        REAL *m0 = malloc(sizeof(REAL) * nn * TB), *gb = malloc(sizeof(REAL) * nn * TB);
        REAL *outs = malloc(sizeof(REAL) * (size_t)steps * nn * TB);
        REAL *sums = malloc(sizeof(REAL) * (size_t)steps * n * TB);
#pragma omp for schedule(static)
        for (i64 t0 = 0; t0 < T; t0 += TB) {
            const int tb = T - t0 < TB ? (int)(T - t0) : TB;
            load_block(z, t0, tb, nn, m0);
            load_block(g, t0, tb, nn, gb);
#define BWD(N) bwd_block(N, iters, m0, gb, outs, sums)
            DISPATCH(n, BWD)
            store_block(gb, t0, tb, nn, dz);
        }
        free(m0);
        free(gb);
        free(outs);
        free(sums);
    }
}
