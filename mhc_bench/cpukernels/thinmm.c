/* The maps' projection RMSNorm(x) @ W forward and its weight gradient
 * (mhc_bench.fastops.rms_norm_matmul).
 *
 * x: [R, K] row-major (rows = tokens and K = n*C for mHC; rows = token streams and K = C for HC);
 * W: [K, J] with J = n^2 + 2n or n + 2 columns. BLAS blocks for wide outputs: on two threads
 * MKL ran x @ W at 17 GFLOP/s for J = 6 (these tiles: 65) and 91-111 for J = 24 (tiles: 156, the
 * square-matmul rate being ~184), and the tiles take RMSNorm's sums of squares in the same pass:
 *   forward: 4 rows x up to 3 vectors of columns (12 accumulators) over W packed [K][J padded to VL];
 *   dw:      2 vectors along K x up to 6 columns, summed over blocks of rows that stay in L2.
 * dx = g @ W^T stays with BLAS and the epilogue kernel (a fused tile measured 6-20 % faster at
 * mHC's shapes: not yet worth a third kernel).
 * Every thread owns whole rows (forward) or whole columns of x (dw): no reductions across threads,
 * so the same numbers come out for any team size.
 */
#include <omp.h>

#include "kernels.h"

#define TILE 4        /* rows per forward tile */
#define MAX_NV 3      /* column vectors per tile */
#define DW_COLS 6     /* W columns per dw tile */
#define DW_ROWS 64    /* rows per dw block: 64 rows of a thread's half of x stay in L2 */

/* Pin a loaded vector in a register: without it GCC folds the load into every FMA that uses it
 * (a memory operand per row), and the tiles run out of load slots (1.4x slower, measured). */
#if defined(__AVX__)
#define KEEP_IN_REGISTER(v) __asm__("" : "+x"(v))
#else
#define KEEP_IN_REGISTER(v) ((void)0)
#endif

static REAL *real_alloc(i64 count) {
    const size_t bytes = ((sizeof(REAL) * (size_t)count + sizeof(vec) - 1) / sizeof(vec)) * sizeof(vec);
    return aligned_alloc(sizeof(vec), bytes ? bytes : sizeof(vec));
}

static inline int imin(i64 a, i64 b) { return (int)(a < b ? a : b); }

INLINE REAL lane_sum(vec v) {
    REAL s = 0;
    for (int l = 0; l < VL; l++) s += v[l];
    return s;
}

/* acc[r][v] = sum_k x[r, k] wp[k, v*VL ..]; ss[r] = sum_k x[r, k]^2 when `squares`. */
INLINE void fwd_tile(const int RT, const int NV, const int squares, i64 K, const REAL *x,
                     const REAL *wp, int ldw, vec acc[TILE][MAX_NV], REAL ss[TILE]) {
    vec sq[TILE];
    for (int r = 0; r < RT; r++) {
        sq[r] = (vec){0};
        for (int v = 0; v < NV; v++) acc[r][v] = (vec){0};
    }
    i64 k = 0;
    for (; k + VL <= K; k += VL) {
        if (squares)
            for (int r = 0; r < RT; r++) {
                const vec xv = *(const uvec *)(x + r * K + k);
                sq[r] += xv * xv;
            }
#pragma GCC unroll 8
        for (int kk = 0; kk < VL; kk++) {
            const REAL *wk = wp + (k + kk) * ldw;
            vec w[MAX_NV];
            for (int v = 0; v < NV; v++) {
                w[v] = *(const vec *)(wk + v * VL);
                KEEP_IN_REGISTER(w[v]);
            }
            for (int r = 0; r < RT; r++) {
                const REAL s = x[r * K + k + kk];
                for (int v = 0; v < NV; v++) acc[r][v] += s * w[v];
            }
        }
    }
    for (; k < K; k++)
        for (int r = 0; r < RT; r++) {
            const REAL s = x[r * K + k];
            if (squares) sq[r][0] += s * s;
            for (int v = 0; v < NV; v++) acc[r][v] += s * *(const vec *)(wp + k * ldw + v * VL);
        }
    if (squares)
        for (int r = 0; r < RT; r++) ss[r] = lane_sum(sq[r]);
}

#define FWD_TILE(RT, NV)                                                                        \
    do {                                                                                        \
        if (squares) fwd_tile(RT, NV, 1, K, x, wp, ldw, acc, ss);                               \
        else fwd_tile(RT, NV, 0, K, x, wp, ldw, acc, ss);                                       \
    } while (0)

static void fwd_rows(int rt, int nv, int squares, i64 K, const REAL *x, const REAL *wp, int ldw,
                     vec acc[TILE][MAX_NV], REAL ss[TILE]) {
    if (rt == TILE) {
        if (nv == 3) FWD_TILE(TILE, 3); else if (nv == 2) FWD_TILE(TILE, 2); else FWD_TILE(TILE, 1);
    } else {  /* the last rows, one at a time */
        for (int r = 0; r < rt; r++) {
            vec one[TILE][MAX_NV];
            REAL s1[TILE] = {0};
            const REAL *xr = x + r * K;
            if (nv == 3) fwd_tile(1, 3, squares, K, xr, wp, ldw, one, s1);
            else if (nv == 2) fwd_tile(1, 2, squares, K, xr, wp, ldw, one, s1);
            else fwd_tile(1, 1, squares, K, xr, wp, ldw, one, s1);
            for (int v = 0; v < nv; v++) acc[r][v] = one[0][v];
            ss[r] = s1[0];
        }
    }
}

/* proj[r, :] = rstd[r] * (x[r, :] @ w), rstd[r] = 1 / sqrt(mean(x[r, :]^2) + eps). */
void FN(normmm_fwd)(i64 R, i64 K, int J, double eps, const REAL *x, const REAL *w, REAL *proj,
                    REAL *rstd, int nt) {
    const int ldw = (J + VL - 1) / VL * VL, groups = (ldw / VL + MAX_NV - 1) / MAX_NV;
    REAL *wp = real_alloc(K * ldw);
    for (i64 k = 0; k < K; k++)
        for (int j = 0; j < ldw; j++) wp[k * ldw + j] = j < J ? w[k * J + j] : 0;
    const i64 tiles = (R + TILE - 1) / TILE;
#pragma omp parallel for num_threads(nt) schedule(static)
    for (i64 t = 0; t < tiles; t++) {
        const i64 r0 = t * TILE;
        const int rt = imin(R - r0, TILE);
        for (int g = 0; g < groups; g++) {
            const int c0 = g * MAX_NV * VL, nv = imin((ldw - c0) / VL, MAX_NV), c1 = imin(J, c0 + nv * VL);
            vec acc[TILE][MAX_NV];
            REAL ss[TILE];
            fwd_rows(rt, nv, g == 0, K, x + r0 * K, wp + c0, ldw, acc, ss);
            for (int r = 0; r < rt; r++) {
                if (g == 0) rstd[r0 + r] = (REAL)(1 / sqrt((double)ss[r] / (double)K + eps));
                const REAL a = rstd[r0 + r];
                for (int c = c0; c < c1; c++) proj[(r0 + r) * J + c] = a * acc[r][(c - c0) / VL][(c - c0) % VL];
            }
        }
    }
    free(wp);
}

/* acc[j][v] += sum over `rows` rows of g[r, j] x[r, v*VL ..], for JT columns and KV vectors. */
INLINE void dw_tile(const int KV, const int JT, i64 rows, i64 K, int J, const REAL *x, const REAL *g,
                    vec *buf) {
    vec acc[DW_COLS][2];
    for (int j = 0; j < JT; j++)
        for (int v = 0; v < KV; v++) acc[j][v] = buf[v * J + j];
    for (i64 r = 0; r < rows; r++) {
        vec xv[2];
        for (int v = 0; v < KV; v++) xv[v] = *(const uvec *)(x + r * K + v * VL);
        for (int j = 0; j < JT; j++) {
            const REAL s = g[r * J + j];
            for (int v = 0; v < KV; v++) acc[j][v] += s * xv[v];
        }
    }
    for (int j = 0; j < JT; j++)
        for (int v = 0; v < KV; v++) buf[v * J + j] = acc[j][v];
}

#define DW_CASE(KV, JT) case JT: dw_tile(KV, JT, rows, K, J, x, g, buf); break
#define DW_SWITCH(KV)                                                                          \
    switch (jt) {                                                                              \
        DW_CASE(KV, 1); DW_CASE(KV, 2); DW_CASE(KV, 3); DW_CASE(KV, 4); DW_CASE(KV, 5);        \
        default: dw_tile(KV, DW_COLS, rows, K, J, x, g, buf);                                  \
    }

static void dw_block(int kv, int jt, i64 rows, i64 K, int J, const REAL *x, const REAL *g, vec *buf) {
    if (kv == 2) { DW_SWITCH(2) } else { DW_SWITCH(1) }
}

/* dw[k, j] = sum_r x[r, k] g[r, j]. Each thread sums its own vectors of columns of x over all rows,
 * DW_ROWS rows at a time, into vector accumulators buf[vector][j]; the last K mod VL columns are
 * summed after, on one thread. */
void FN(normmm_dw)(i64 R, i64 K, int J, const REAL *x, const REAL *g, REAL *dw, int nt) {
    const i64 nvec = K / VL, pairs = nvec / 2;
#pragma omp parallel num_threads(nt)
    {
        const int team = omp_get_num_threads(), id = omp_get_thread_num();
        const i64 v0 = 2 * (pairs * id / team), v1 = id == team - 1 ? nvec : 2 * (pairs * (id + 1) / team);
        vec *buf = (vec *)real_alloc((v1 - v0) * J * VL);
        for (i64 i = 0; i < (v1 - v0) * J; i++) buf[i] = (vec){0};
        for (i64 r0 = 0; r0 < R; r0 += DW_ROWS) {
            const i64 rows = R - r0 < DW_ROWS ? R - r0 : DW_ROWS;
            for (i64 v = v0; v < v1; v += 2)
                for (int j0 = 0; j0 < J; j0 += DW_COLS)
                    dw_block(imin(v1 - v, 2), imin(J - j0, DW_COLS), rows, K, J, x + r0 * K + v * VL,
                             g + r0 * J + j0, buf + (v - v0) * J + j0);
        }
        for (i64 v = v0; v < v1; v++)
            for (int j = 0; j < J; j++)
                for (int l = 0; l < VL; l++) dw[(v * VL + l) * J + j] = buf[(v - v0) * J + j][l];
        free(buf);
    }
    for (i64 k = nvec * VL; k < K; k++)
        for (int j = 0; j < J; j++) {
            REAL acc = 0;
            for (i64 r = 0; r < R; r++) acc += x[r * K + k] * g[r * J + j];
            dw[k * J + j] = acc;
        }
}
