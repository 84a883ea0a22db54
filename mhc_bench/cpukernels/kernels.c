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
#include "kernels.h"

/* The two shapes of work in the stream ops, over rows of C contiguous values in L1:
 *   lincomb: out = sum_k a[k] r[k], k = 0 .. K-1;
 *   dots:    out[k] = <g, r[k]>.
 * Both take their rows four at a time in one pass over c: a row-at-a-time loop stores and
 * reloads out once per row, and a dot product's single accumulator chain waits on each add,
 * where four independent chains sharing each load of g keep the FMA units busy. Each keeps the
 * arithmetic of the row-at-a-time loops these replaced (GCC 12, `omp simd`), bit for bit, so
 * results computed before stay reproducible: lincomb's first product is rounded on its own and
 * each later row is one FMA onto the running sum, in row order; dots keeps VL lane sums of
 * products (multiply, then add), fuses the tail into lane 0 and adds the lanes in order. */
INLINE void lincomb(REAL *restrict out, int K, const REAL *a, const REAL *const *r, i64 C) {
    const REAL a0 = a[0], *r0 = r[0];
#pragma omp simd
    for (i64 c = 0; c < C; c++) out[c] = a0 * r0[c];  /* its own pass: no FMA may absorb it */
    for (int k = 1; k < K; k += 4) {
        const int m = K - k < 4 ? K - k : 4;
        const REAL b0 = a[k], b1 = m > 1 ? a[k + 1] : 0, b2 = m > 2 ? a[k + 2] : 0, b3 = m > 3 ? a[k + 3] : 0;
        const REAL *q0 = r[k], *q1 = r[k + (m > 1)], *q2 = r[k + (m > 2 ? 2 : 0)], *q3 = r[k + (m > 3 ? 3 : 0)];
#pragma omp simd
        for (i64 c = 0; c < C; c++) {
            REAL s = out[c];
            s += b0 * q0[c];
            if (m > 1) s += b1 * q1[c];
            if (m > 2) s += b2 * q2[c];
            if (m > 3) s += b3 * q3[c];
            out[c] = s;
        }
    }
}

__attribute__((optimize("fp-contract=off"))) static void dots(REAL *out, const REAL *g, int K,
                                                              const REAL *const *r, i64 C) {
    for (int k = 0; k < K; k += 4) {
        const int m = K - k < 4 ? K - k : 4;  /* a short last group repeats a row, unused */
        const REAL *q[4] = {r[k], r[k + (m > 1)], r[k + (m > 2 ? 2 : 0)], r[k + (m > 3 ? 3 : 0)]};
        vec acc[4] = {{0}, {0}, {0}, {0}};
        i64 c = 0;
        for (; c + VL <= C; c += VL) {
            const vec gv = *(const uvec *)(g + c);
            for (int j = 0; j < 4; j++) acc[j] += gv * *(const uvec *)(q[j] + c);
        }
        for (int j = 0; j < m; j++) {
            REAL lane0 = acc[j][0], s = 0;
            for (i64 t = c; t < C; t++) lane0 = FMA(g[t], q[j][t], lane0);
            s += lane0;
            for (int l = 1; l < VL; l++) s += acc[j][l];
            out[k + j] = s;
        }
    }
}

/* out[t] = sum_j h[t, j] x[t, j] */
void FN(pre_fwd)(i64 T, int n, i64 C, const REAL *h, const REAL *x, REAL *out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *rows[n];
        for (int j = 0; j < n; j++) rows[j] = x + (t * n + j) * C;
        lincomb(out + t * C, n, h + t * n, rows, C);
    }
}

/* dh[t, j] = <x[t, j], g[t]>,  dx[t, j] = h[t, j] g[t]. Row by row on purpose: each dot product's
 * add chain overlaps the stores of the dx row beside it, which `dots` measured slower. */
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

/* dx[t, j] += coef[t, j] x[t, j] + h[t, j] g[t], then dx[t, j] += e[t, j] when e is given: the
 * RMSNorm term of the maps' gradient, H_pre x's share of dL/dx and post_res's (e), added in one
 * pass instead of three passes and autograd's sums. e is added last, on its own, so the result
 * has the bits of autograd's (maps' dx) + (post_res' dx). */
void FN(maps_dx_epilogue)(i64 T, int n, i64 C, REAL *dx, const REAL *x, const REAL *coef, const REAL *h,
                          const REAL *g, const REAL *e, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *gt = g + t * C;
        for (int j = 0; j < n; j++) {
            const i64 row = t * n + j;
            const REAL a = coef[row], hj = h[row];
            const REAL *xr = x + row * C;
            REAL *d = dx + row * C;
            if (e) {
                const REAL *er = e + row * C;
#pragma omp simd
                for (i64 c = 0; c < C; c++) {
                    const REAL own = d[c] + (a * xr[c] + hj * gt[c]);
                    d[c] = own + er[c];
                }
            } else {
#pragma omp simd
                for (i64 c = 0; c < C; c++) d[c] += a * xr[c] + hj * gt[c];
            }
        }
    }
}

/* out[t, i] = h_post[t, i] y[t] + sum_j h_res[t, i, j] x[t, j] */
void FN(post_res_fwd)(i64 T, int n, i64 C, const REAL *hr, const REAL *x, const REAL *hp, const REAL *y,
                      REAL *out, int nt) {
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < T; t++) {
        const REAL *rows[n + 1];
        REAL coefs[n + 1];
        rows[0] = y + t * C;
        for (int j = 0; j < n; j++) rows[j + 1] = x + (t * n + j) * C;
        for (int i = 0; i < n; i++) {
            coefs[0] = hp[t * n + i];
            for (int j = 0; j < n; j++) coefs[j + 1] = hr[(t * n + i) * n + j];
            lincomb(out + (t * n + i) * C, n + 1, coefs, rows, C);
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
        const REAL *grows[n], *xrows[n];
        REAL coefs[n];
        for (int i = 0; i < n; i++) grows[i] = g + (t * n + i) * C;
        for (int j = 0; dx && j < n; j++) {
            for (int i = 0; i < n; i++) coefs[i] = hr[(t * n + i) * n + j];
            lincomb(dx + (t * n + j) * C, n, coefs, grows, C);
        }
        if (dy) lincomb(dy + t * C, n, hp + t * n, grows, C);
        if (dhp) dots(dhp + t * n, y + t * C, n, grows, C);  /* <y, g_0> .. <y, g_{n-1}> */
        if (!dhr) continue;
        for (int j = 0; j < n; j++) xrows[j] = x + (t * n + j) * C;
        for (int i = 0; i < n; i++) dots(dhr + (t * n + i) * n, grows[i], n, xrows, C);
    }
}

/* Sinkhorn-Knopp. Tokens go across SIMD lanes: a block of VL tokens (8 floats or 4 doubles per
 * 32-byte vector) holds entry a = i*n + j of all its tokens in one vector m[a], so every step is
 * plain vector arithmetic. For n = 2, 4, 8 the whole n x n block lives in registers (n is a
 * literal and the loops unroll); other n take the generic loops. The kernels start from
 * M0 = exp(z - max over each column), computed by the caller with torch's vectorised exp (the
 * column step removes any per-column factor, so the shift changes no iterate). */
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
