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
#include <math.h>
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

/* dx[t, j] += coef[t, j] x[t, j] + h[t, j] g[t]: the RMSNorm term of the maps' gradient and
 * H_pre x's share of dL/dx, added in one pass (instead of two passes and autograd's sum). */
void FN(maps_dx_epilogue)(i64 T, int n, i64 C, REAL *dx, const REAL *x, const REAL *coef, const REAL *h,
                          const REAL *g, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *gt = g + t * C;
        for (int j = 0; j < n; j++) {
            const i64 row = t * n + j;
            const REAL a = coef[row], hj = h[row];
            const REAL *xr = x + row * C;
            REAL *d = dx + row * C;
#pragma omp simd
            for (i64 c = 0; c < C; c++) d[c] += a * xr[c] + hj * gt[c];
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

/* Sinkhorn-Knopp. Tokens go across SIMD lanes: a block of VL tokens (8 floats or 4 doubles per
 * 32-byte vector) holds entry a = i*n + j of all its tokens in one vector m[a], so every step is
 * plain vector arithmetic. For n = 2, 4, 8 the whole n x n block lives in registers (n is a
 * literal and the loops unroll); other n take the generic loops. The kernels start from
 * M0 = exp(z - max over each column), computed by the caller with torch's vectorised exp (the
 * column step removes any per-column factor, so the shift changes no iterate). */
typedef REAL vec __attribute__((vector_size(32)));
#define VL ((int)(32 / sizeof(REAL)))
#define INLINE static inline __attribute__((always_inline))

static vec *vec_alloc(size_t count) { return aligned_alloc(sizeof(vec), sizeof(vec) * count); }

INLINE void load_vecs(const REAL *src, i64 t0, int tb, int nn, vec *m) {
    for (int a = 0; a < nn; a++)
        for (int k = 0; k < VL; k++) m[a][k] = k < tb ? src[(t0 + k) * nn + a] : 0;
}

INLINE void store_vecs(const vec *m, i64 t0, int tb, int nn, REAL *dst) {
    for (int k = 0; k < tb; k++)
        for (int a = 0; a < nn; a++) dst[(t0 + k) * nn + a] = m[a][k];
}

/* One half step in place: divide each column (axis 0) or row (axis 1) by its sum; r gets 1/sum. */
INLINE void normalise(const int n, const int axis, vec *m, vec *r) {
    for (int v = 0; v < n; v++) {
        vec s = m[axis ? v * n : v];
        for (int u = 1; u < n; u++) s += m[axis ? v * n + u : u * n + v];
        const vec rv = 1 / s;
        r[v] = rv;
        for (int u = 0; u < n; u++) m[axis ? v * n + u : u * n + v] *= rv;
    }
}

INLINE void fwd_block(const int n, int iters, vec *m, vec *r) {
    for (int it = 0; it < iters; it++) {
        normalise(n, 0, m, r);
        normalise(n, 1, m, r);
    }
}

/* Replays the iterations keeping every half step's output and 1/sums, then runs them backwards:
 * B = A / s (s = sums along the axis): dA = (dB - sum_axis(dB * B)) / s. On return g holds
 * dL/dz = dL/dM0 * M0. */
INLINE void bwd_block(const int n, int iters, const vec *m0, vec *g, vec *outs, vec *recips) {
    const int nn = n * n, steps = 2 * iters;
    for (int a = 0; a < nn; a++) outs[a] = m0[a];
    for (int st = 0; st < steps; st++) {
        vec *cur = outs + (size_t)(st + 1) * nn;
        for (int a = 0; a < nn; a++) cur[a] = cur[a - nn];
        if (st & 1)
            normalise(n, 1, cur, recips + (size_t)st * n);
        else
            normalise(n, 0, cur, recips + (size_t)st * n);
    }
    for (int st = steps - 1; st >= 0; st--) {
        const int axis = st & 1;
        const vec *b = outs + (size_t)(st + 1) * nn, *r = recips + (size_t)st * n;
        for (int v = 0; v < n; v++) {
            vec d = g[axis ? v * n : v] * b[axis ? v * n : v];
            for (int u = 1; u < n; u++) {
                const int a = axis ? v * n + u : u * n + v;
                d += g[a] * b[a];
            }
            for (int u = 0; u < n; u++) {
                const int a = axis ? v * n + u : u * n + v;
                g[a] = (g[a] - d) * r[v];
            }
        }
    }
    for (int a = 0; a < nn; a++) g[a] *= m0[a];
}

#define DISPATCH(n, call_with_n)        \
    switch (n) {                        \
    case 2: call_with_n(2); break;      \
    case 4: call_with_n(4); break;      \
    case 8: call_with_n(8); break;      \
    default: call_with_n(n); break;     \
    }

void FN(sinkhorn_fwd)(i64 T, int n, int iters, const REAL *m0, REAL *out, int nt) {
    const int nn = n * n;
#pragma omp parallel num_threads(nt)
    {
        vec *m = vec_alloc(nn), *r = vec_alloc(n);
#pragma omp for schedule(static)
        for (i64 t0 = 0; t0 < T; t0 += VL) {
            const int tb = T - t0 < VL ? (int)(T - t0) : VL;
            load_vecs(m0, t0, tb, nn, m);
#define FWD(N) fwd_block(N, iters, m, r)
            DISPATCH(n, FWD)
            store_vecs(m, t0, tb, nn, out);
        }
        free(m);
        free(r);
    }
}

void FN(sinkhorn_bwd)(i64 T, int n, int iters, const REAL *m0, const REAL *g, REAL *dz, int nt) {
    const int nn = n * n, steps = 2 * iters;
#pragma omp parallel num_threads(nt)
    {
        vec *mb = vec_alloc(nn), *gb = vec_alloc(nn);
        vec *outs = vec_alloc((size_t)(steps + 1) * nn);
        vec *recips = vec_alloc((size_t)steps * n);
#pragma omp for schedule(static)
        for (i64 t0 = 0; t0 < T; t0 += VL) {
            const int tb = T - t0 < VL ? (int)(T - t0) : VL;
            load_vecs(m0, t0, tb, nn, mb);
            load_vecs(g, t0, tb, nn, gb);
#define BWD(N) bwd_block(N, iters, mb, gb, outs, recips)
            DISPATCH(n, BWD)
            store_vecs(gb, t0, tb, nn, dz);
        }
        free(mb);
        free(gb);
        free(outs);
        free(recips);
    }
}

/* Log-domain Sinkhorn-Knopp, the reference's iterations (mhc_bench.ops.sinkhorn_knopp), for
 * tokens whose logits span too much for the exp domain (an entry would underflow): u <- u -
 * logsumexp(u) over each column, then each row, iters times; out = exp(u). One token at a time,
 * scalar: exp and log have no vector form here. */
#define EXP(x) _Generic((x), float: expf, default: exp)(x)
#define LOG(x) _Generic((x), float: logf, default: log)(x)

/* One half step in place on u; p gets exp of the result (softmax of the input along the axis). */
static void log_half_step(const int n, const int axis, REAL *u, REAL *p) {
    for (int v = 0; v < n; v++) {
        REAL mx = -INFINITY, s = 0;
        for (int w = 0; w < n; w++) {
            const REAL e = u[axis ? v * n + w : w * n + v];
            mx = e > mx ? e : mx;
        }
        for (int w = 0; w < n; w++) {
            const int a = axis ? v * n + w : w * n + v;
            p[a] = EXP(u[a] - mx);
            s += p[a];
        }
        const REAL l = mx + LOG(s), r = 1 / s;
        for (int w = 0; w < n; w++) {
            const int a = axis ? v * n + w : w * n + v;
            u[a] -= l;
            p[a] *= r;
        }
    }
}

void FN(sinkhorn_log_fwd)(i64 T, int n, int iters, const REAL *z, REAL *out, int nt) {
    const int nn = n * n;
#pragma omp parallel num_threads(nt)
    {
        REAL *u = malloc(sizeof(REAL) * nn);
#pragma omp for schedule(static)
        for (i64 t = 0; t < T; t++) {
            for (int a = 0; a < nn; a++) u[a] = z[t * nn + a];
            for (int st = 0; st < 2 * iters; st++) log_half_step(n, st & 1, u, out + t * nn);
        }
        free(u);
    }
}

/* Replays the half steps keeping each one's p = exp(u_out), then runs them backwards: u_out =
 * u_in - logsumexp(u_in) gives du_in = du_out - p * sum_axis(du_out); du_last = g * out. */
void FN(sinkhorn_log_bwd)(i64 T, int n, int iters, const REAL *z, const REAL *g, REAL *dz, int nt) {
    const int nn = n * n, steps = 2 * iters;
#pragma omp parallel num_threads(nt)
    {
        REAL *u = malloc(sizeof(REAL) * nn), *ps = malloc(sizeof(REAL) * (size_t)steps * nn);
#pragma omp for schedule(static)
        for (i64 t = 0; t < T; t++) {
            REAL *d = dz + t * nn;
            for (int a = 0; a < nn; a++) u[a] = z[t * nn + a];
            for (int st = 0; st < steps; st++) log_half_step(n, st & 1, u, ps + (size_t)st * nn);
            for (int a = 0; a < nn; a++) d[a] = g[t * nn + a] * ps[(size_t)(steps - 1) * nn + a];
            for (int st = steps - 1; st >= 0; st--) {
                const int axis = st & 1;
                const REAL *p = ps + (size_t)st * nn;
                for (int v = 0; v < n; v++) {
                    REAL s = 0;
                    for (int w = 0; w < n; w++) s += d[axis ? v * n + w : w * n + v];
                    for (int w = 0; w < n; w++) {
                        const int a = axis ? v * n + w : w * n + v;
                        d[a] -= p[a] * s;
                    }
                }
            }
        }
        free(u);
        free(ps);
    }
}
