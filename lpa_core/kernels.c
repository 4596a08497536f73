/* The residual MLP's step for every run in one call each: forward keeping the tape, hand-written backward, masked
 * Adam(W). Built on first use by lpa_core/kernels.py (cc -O3 -march=native), called through ctypes; the PyTorch
 * fast path (lpa_core.models.ResMLP.tape/backward, lpa_core.optim.RunAdam) is the fallback and the reference.
 *
 * Layout: activations feature-major per run, [R, width, B] (the batch contiguous). A parameter is a pointer to run
 * 0's [out, in] matrix (row-major) and a run stride, so RunAdam's flat buffer [R, P] and plain [R, out, in] tensors
 * both work; order: stem.w, stem.b, per block fc1.w, fc1.b, fc2.w, fc2.b, then head.w, head.b. Each run is computed
 * alone, in an order that does not depend on the number of runs, so a run gets the same numbers bit for bit in any
 * group as alone (float32 and float64). Sums over the batch are 16-lane partial sums added in a fixed tree:
 * deterministic on a machine, not MKL's order (tests/test_kernels.py states the tolerances against autograd).
 * Block keep modes (mode[j]): 0 kept, 1 dropped (not computed), 2 gated per run and example by gate[j, r, q]. */
#ifndef T
#include <math.h>
#include <stdint.h>
#include <string.h>
#define VL 16
enum { PLAIN, RELU, ADD, MASK };  /* what lin does to a result as it stores it (post) */
#define NOFMA __attribute__((optimize("fp-contract=off")))
#if defined(__SSE__)  /* flush denormals to zero (FTZ, DAZ) inside adam: see there */
#include <xmmintrin.h>
#define FTZ_ON unsigned csr_ = _mm_getcsr(); _mm_setcsr(csr_ | 0x8040)
#define FTZ_OFF _mm_setcsr(csr_)
#else
#define FTZ_ON
#define FTZ_OFF
#endif
#define T float
#define IT int32_t
#define SQRT sqrtf
#define FMA fmaf
#define S(name) name##_f32
#include "kernels.c"
#undef T
#undef IT
#undef S
#undef V
#undef IV
#undef NL
#undef NC
#undef NT
#undef NP
#undef LD
#undef NB
#undef SQRT
#undef FMA
#define T double
#define IT int64_t
#define SQRT sqrt
#define FMA fma
#define S(name) name##_f64
#include "kernels.c"
#else

/* The arithmetic is in VL = 16 lanes (the batch padded to a multiple of 16; sums over it as 16 lane sums), done
 * in vectors of the machine's width, NL lanes each (AVX-512: 64 bytes, AVX: 32, else 16): a 16-lane block is
 * NC = VL / NL of them. Every lane gets the same operations in the same order on any width, so the numbers do not
 * depend on it (a 16-lane vector type on AVX2 compiled to stack spills: the width is the only thing chosen). */
#ifdef LPA_NB
#define NB LPA_NB  /* a width chosen at build time (tests/test_kernels.py builds them all) */
#elif defined(__AVX512F__)
#define NB 64
#elif defined(__AVX__)
#define NB 32
#else
#define NB 16
#endif
typedef T S(nv) __attribute__((vector_size(NB), aligned(sizeof(T))));  /* NL lanes, unaligned */
typedef IT S(niv) __attribute__((vector_size(NB), aligned(sizeof(T))));  /* its lanes' masks */
#define V S(nv)
#define IV S(niv)
#define NL ((int)(NB / sizeof(T)))
#define NC (VL / NL)
#define LD(p) (*(const V *)(p))

/* a result y as stored under `post`: y; relu(y) (0 where y <= 0 or NaN, as y > 0 ? y : 0); aux + y (the residual
 * add); y where aux > 0, else 0 (the ReLU's backward): the separate passes' arithmetic, without the passes */
static inline V S(store)(V y, int post, const T *aux) {
    switch (post) {
    case RELU: return (V)((IV)y & (IV)(y > 0));
    case ADD: return LD(aux) + y;
    case MASK: return (V)((IV)y & (IV)(LD(aux) > 0));
    default: return y;
    }
}

/* of the `most` vectors from column q0 on, those that hold one of the B columns (the rest are padding only) */
static inline int S(nvec)(int q0, int B, int most) {
    int n = (B - q0 + NL - 1) / NL;
    return n < most ? n : most;
}

/* 16-lane blocks a sum pass takes at once: two where a block is one vector (AVX-512, float32), where five or six
 * running sums alone would leave each multiply-add waiting on the latency of the last; lin's tiles are NT vectors
 * wide, wgrad takes NP output rows per pass. Each output's sum is the same whatever the tile. */
#define NP (NC > 1 ? 1 : 2)
#define NT (NP * NC)

/* out[o, Bp] = post(W x + b), or (acc) out += W x, on rows of Bp = B rounded up to a multiple of VL columns;
 * W[p, k] = w[p * ws + k * wc] (ws = i, wc = 1: W; ws = 1, wc = o: its transpose); aux: post's other operand, laid
 * out as out. Tiles of five output rows (the width 10 in two blocks) by NT vectors stay in registers over k; each
 * output is its bias (or its old value) plus the k terms in order. Vectors of padding only (nvec) are neither read
 * nor written. */
static void S(lin)(int o, int i, int B, const T *w, long ws, long wc, const T *b, const T *x, T *out, int acc, int post,
                   const T *aux) {
    int Bp = (B + VL - 1) / VL * VL;
    for (int q0 = 0; q0 < Bp; q0 += NT * NL) {
        int p = 0, nc = S(nvec)(q0, B, NT);
        for (; p + 5 <= o; p += 5) {
            T *y = out + (long)p * Bp + q0;
            V a[5][NT];
#pragma GCC unroll 16
            for (int r = 0; r < 5; r++)
#pragma GCC unroll 16
                for (int c = 0; c < NT; c++)
                    if (c < nc) a[r][c] = acc ? LD(y + r * Bp + c * NL) : (V){0} + (b ? b[p + r] : 0);
            for (int k = 0; k < i; k++) {
                const T *wk = w + p * ws + k * wc;
#pragma GCC unroll 16
                for (int c = 0; c < NT; c++) {
                    if (c >= nc) break;
                    V xk = LD(x + (long)k * Bp + q0 + c * NL);
#pragma GCC unroll 16
                    for (int r = 0; r < 5; r++) a[r][c] += wk[r * ws] * xk;
                }
            }
#pragma GCC unroll 16
            for (int r = 0; r < 5; r++)
#pragma GCC unroll 16
                for (int c = 0; c < NT; c++) {
                    long e = (long)(p + r) * Bp + q0 + c * NL;
                    if (c < nc) *(V *)(out + e) = S(store)(a[r][c], post, aux + e);
                }
        }
        for (; p < o; p++)
#pragma GCC unroll 16
            for (int c = 0; c < nc; c++) {
                long e = (long)p * Bp + q0 + c * NL;
                V a = acc ? LD(out + e) : (V){0} + (b ? b[p] : 0);
                for (int k = 0; k < i; k++) a += w[p * ws + k * wc] * LD(x + (long)k * Bp + q0 + c * NL);
                *(V *)(out + e) = S(store)(a, post, aux + e);
            }
    }
}

/* zero columns B..Bp-1 of `rows` rows: padding stays exactly 0, so it adds nothing to a sum over the batch */
static void S(zpad)(T *y, int rows, int B, int Bp) {
    for (int p = 0; p < rows; p++)
        for (int q = B; q < Bp; q++) y[(long)p * Bp + q] = 0;
}

/* rows of B columns (row stride B) into rows of Bp (padding 0) */
static void S(pad)(const T *x, int rows, int B, int Bp, T *y) {
    for (int p = 0; p < rows; p++) {
        memcpy(y + (long)p * Bp, x + (long)p * B, sizeof(T) * B);
        for (int q = B; q < Bp; q++) y[(long)p * Bp + q] = 0;
    }
}

/* the sum of the VL = 16 lanes in a (NC vectors), halving in a fixed order: lanes l and l + 8, then l and l + 4,
 * then (0 + 2) + (1 + 3); the first two halvings as vector adds of half-width vectors (the same additions) */
typedef T S(h8) __attribute__((vector_size(8 * sizeof(T)), aligned(sizeof(T))));
typedef T S(h4) __attribute__((vector_size(4 * sizeof(T)), aligned(sizeof(T))));
static inline T S(hsum)(const V *a) {
    T t[VL];
    memcpy(t, a, sizeof t);
    S(h8) h8 = *(const S(h8) *)t + *(const S(h8) *)(t + 8);
    S(h4) h = *(const S(h4) *)&h8 + *(const S(h4) *)((const T *)&h8 + 4);
    return (h[0] + h[2]) + (h[1] + h[3]);
}

/* dw[h * dws + j] = sum_q gp[h * Bp + q] u[j, q] for the m (at most 2) rows h of gp and j < n (rows of u Bp apart)
 * and, with db, db[h] = sum_q gp[h * Bp + q]: VL lane sums over the chunks, then halved (hsum). m and n are
 * constants where it is inlined, so the m (n + 1) sums stay in registers and share the loads of u and gp. */
static inline __attribute__((always_inline)) void S(wsums)(int m, int n, int B, const T *gp, const T *u, T *dw, long dws,
                                                           T *db) {
    int Bp = (B + VL - 1) / VL * VL;
    V a[NP][6][NC];
#pragma GCC unroll 16
    for (int h = 0; h < m; h++)
#pragma GCC unroll 16
        for (int j = 0; j <= n; j++)
#pragma GCC unroll 16
            for (int c = 0; c < NC; c++) a[h][j][c] = (V){0};
    for (int q0 = 0; q0 < Bp; q0 += VL)
#pragma GCC unroll 16
        for (int c = 0; c < NC; c++) {
            if (c >= S(nvec)(q0, B, NC)) break;  /* padding only: its products are 0 */
            V gv[NP];
#pragma GCC unroll 16
            for (int h = 0; h < m; h++) gv[h] = LD(gp + (long)h * Bp + q0 + c * NL);
#pragma GCC unroll 16
            for (int j = 0; j < n; j++) {
                V uj = LD(u + (long)j * Bp + q0 + c * NL);
#pragma GCC unroll 16
                for (int h = 0; h < m; h++) a[h][j][c] += gv[h] * uj;
            }
#pragma GCC unroll 16
            for (int h = 0; db && h < m; h++) a[h][n][c] += gv[h];
        }
#pragma GCC unroll 16
    for (int h = 0; h < m; h++) {
#pragma GCC unroll 16
        for (int j = 0; j < n; j++) dw[h * dws + j] = S(hsum)(a[h][j]);
        if (db) db[h] = S(hsum)(a[h][n]);
    }
}

/* wsums over the i rows of inp for the m rows of gp: five k at a time, the first five with db, the rest one by one */
static inline __attribute__((always_inline)) void S(wrows)(int m, int i, int B, const T *gp, const T *inp, T *dw, T *db) {
    long Bp = (B + VL - 1) / VL * VL;
    int k = i >= 5 ? 5 : 0;
    if (k) S(wsums)(m, 5, B, gp, inp, dw, i, db);
    else S(wsums)(m, 0, B, gp, inp, 0, i, db);
    for (; k + 5 <= i; k += 5) S(wsums)(m, 5, B, gp, inp + k * Bp, dw + k, i, 0);
    for (; k < i; k++) S(wsums)(m, 1, B, gp, inp + k * Bp, dw + k, i, 0);
}

/* gradients of W and b in out = W inp + b for the output gradient g [o, Bp]: dw[p, k] = sum_q g[p, q] inp[k, q],
 * db[p] = sum_q g[p, q], each its VL lane sums over the chunks in order, then halved (hsum): one fixed order,
 * whichever sums are computed together. NP rows p at a time; five k at a time share the loads of g, the first five
 * with db; the rest one k at a time. Padding columns are 0 in g. */
static void S(wgrad)(int o, int i, int B, const T *g, const T *inp, T *dw, T *db) {
    long Bp = (B + VL - 1) / VL * VL;
    int p = 0;
    for (; NP > 1 && p + NP <= o; p += NP) S(wrows)(NP, i, B, g + p * Bp, inp, dw + p * i, db + p);
    for (; p < o; p++) S(wrows)(1, i, B, g + p * Bp, inp, dw + p * i, db + p);
}

/* block j's state for run r: 0 kept by every example, 1 by none, 2 by some */
static int S(kept)(const int *mode, const uint8_t *gate, int j, int r, int R, int B) {
    if (mode[j] != 2) return mode[j];
    const uint8_t *k = gate + ((long)j * R + r) * B;
    int any = 0, all = 1;
    for (int q = 0; q < B; q++) any |= k[q] != 0, all &= k[q] != 0;
    return all ? 0 : any ? 2 : 1;
}

/* y = a + b on the B columns, b only where gate[q] (gate NULL: everywhere); padding 0 */
static void S(add)(int W, int B, int Bp, const T *a, const T *b, const uint8_t *gate, T *y) {
    for (int p = 0; p < W; p++) {
        long o = (long)p * Bp;
        if (gate)
            for (int q = 0; q < B; q++) y[o + q] = a[o + q] + (gate[q] ? b[o + q] : 0);
        else
            for (int q = 0; q < B; q++) y[o + q] = a[o + q] + b[o + q];
        for (int q = B; q < Bp; q++) y[o + q] = 0;
    }
}

/* Forward of `depth` of the L blocks for runs 0..R-1 on x [R, din, B]: pred [n_ex, R, dout, B] gets the head's
 * prediction at each exit depth ex[0] < ex[1] < ... <= depth. With `tape`, H [depth + 1, R, W, Bp] gets x_0..x_depth
 * and A [depth, R, W, Bp] the hidden activations (a dropped block's unwritten), for `backward`; without, H and A are
 * [W, Bp] each, rewritten in place (evaluation). Bp: B rounded up to a multiple of VL (padding columns 0);
 * scratch: (din + dout + W) x Bp. */
void S(forward)(int R, int din, int W, int dout, int L, int depth, int B, const T *x, T *const *ptr, const long *rs,
                const int *mode, const uint8_t *gate, int n_ex, const int *ex, int tape, T *H, T *A, T *pred, T *scratch) {
    int Bp = (B + VL - 1) / VL * VL;
    long wb = (long)W * Bp, hs = tape ? R * wb : 0, rb = tape ? wb : 0;
    T *xs = scratch, *ps = xs + (long)din * Bp, *f = ps + (long)dout * Bp;
    for (int r = 0; r < R; r++) {
        const T *P[4 * L + 4];
        for (int t = 0; t < 4 * L + 4; t++) P[t] = ptr[t] + r * rs[t];
        T *h = H + r * rb;
        S(pad)(x + (long)r * din * B, din, B, Bp, xs);
        S(lin)(W, din, B, P[0], din, 1, P[1], xs, h, 0, PLAIN, 0);
        S(zpad)(h, W, B, Bp);
        for (int j = 0, e = 0; j <= depth; j++) {
            for (; e < n_ex && ex[e] == j; e++) {  /* the exits at depth j */
                S(lin)(dout, W, B, P[2 + 4 * L], W, 1, P[3 + 4 * L], h, ps, 0, PLAIN, 0);
                for (int p = 0; p < dout; p++) memcpy(pred + (((long)e * R + r) * dout + p) * B, ps + (long)p * Bp, sizeof(T) * B);
            }
            if (j == depth) break;
            T *hn = h + hs, *a = A + j * hs + r * rb;
            const T **Q = P + 2 + 4 * j;
            int k = S(kept)(mode, gate, j, r, R, B);
            if (k == 1) {
                if (hn != h) memcpy(hn, h, sizeof(T) * wb);
            } else {
                S(lin)(W, W, B, Q[0], W, 1, Q[1], h, a, 0, RELU, 0);
                S(zpad)(a, W, B, Bp);
                if (k == 2) {
                    S(lin)(W, W, B, Q[2], W, 1, Q[3], a, f, 0, PLAIN, 0);
                    S(add)(W, B, Bp, h, f, gate + ((long)j * R + r) * B, hn);
                } else {
                    S(lin)(W, W, B, Q[2], W, 1, Q[3], a, hn, 0, ADD, h);
                    S(zpad)(hn, W, B, Bp);
                }
            }
            h = hn;
        }
    }
}

/* Backward of sum(g * pred) (g [n_ex, R, dout, B], the exits of `forward`) through the forward in H, A: writes
 * the gradients of the layers with want[layer] (0 stem, 1..L blocks, L + 1 head; the head's summed over the exits,
 * deepest first) through gptr/grs (as ptr/rs); the others get none, though the gradient flows through them to
 * the stem. scratch: (din + dout + 3 W + dout (W + 1)) x Bp. */
void S(backward)(int R, int din, int W, int dout, int L, int depth, int B, const T *x, T *const *ptr, const long *rs,
                 T *const *gptr, const long *grs, const uint8_t *want, const int *mode, const uint8_t *gate, int n_ex,
                 const int *ex, const T *H, const T *A, const T *g, T *scratch) {
    int Bp = (B + VL - 1) / VL * VL;
    long hs = (long)R * W * Bp, wb = (long)W * Bp;
    T *xs = scratch, *ps = xs + (long)din * Bp, *gs = ps + (long)dout * Bp, *gf = gs + wb, *gz = gf + wb, *hw = gz + wb;
    for (int r = 0; r < R; r++) {
        const T *P[4 * L + 4];
        T *G[4 * L + 4];
        for (int t = 0; t < 4 * L + 4; t++) P[t] = ptr[t] + r * rs[t], G[t] = gptr[t] + r * grs[t];
        memset(gs, 0, sizeof(T) * wb);
        for (int j = depth, e = n_ex - 1; j >= 0; j--) {
            for (; e >= 0 && ex[e] == j; e--) {  /* the exits at depth j: the head's gradient, and the state's */
                S(pad)(g + ((long)e * R + r) * dout * B, dout, B, Bp, ps);
                if (want[L + 1]) {
                    int first = e == n_ex - 1;
                    S(wgrad)(dout, W, B, ps, H + j * hs + r * wb, first ? G[2 + 4 * L] : hw, first ? G[3 + 4 * L] : hw + dout * W);
                    for (int t = 0; !first && t < dout * W; t++) G[2 + 4 * L][t] += hw[t];
                    for (int t = 0; !first && t < dout; t++) G[3 + 4 * L][t] += hw[dout * W + t];
                }
                S(lin)(W, dout, B, P[2 + 4 * L], 1, W, 0, ps, gs, 1, PLAIN, 0);
            }
            if (j == 0) break;
            int k = S(kept)(mode, gate, j - 1, r, R, B);
            if (k == 1) {  /* dropped: by every run, no gradient; by this run only, a zero one (as autograd) */
                if (want[j] && mode[j - 1] == 2)
                    for (int t = 4 * j - 2; t < 4 * j + 2; t++) memset(G[t], 0, sizeof(T) * (t % 2 ? W : W * W));
                continue;
            }
            const uint8_t *kg = k == 2 ? gate + ((long)(j - 1) * R + r) * B : 0;
            const T *a = A + (j - 1) * hs + r * wb, **Q = P + 4 * j - 2;
            const T *go = gs;
            if (kg) {
                for (int p = 0; p < W; p++)
                    for (int q = 0; q < Bp; q++) gf[(long)p * Bp + q] = q < B && kg[q] ? gs[(long)p * Bp + q] : 0;
                go = gf;
            }
            if (want[j]) S(wgrad)(W, W, B, go, a, G[4 * j], G[4 * j + 1]);
            S(lin)(W, W, B, Q[2], 1, W, 0, go, gz, 0, MASK, a);
            if (want[j]) S(wgrad)(W, W, B, gz, H + (j - 1) * hs + r * wb, G[4 * j - 2], G[4 * j - 1]);
            if (!kg) {
                S(lin)(W, W, B, Q[0], 1, W, 0, gz, gs, 1, PLAIN, 0);
            } else {
                S(lin)(W, W, B, Q[0], 1, W, 0, gz, gf, 0, PLAIN, 0);
                S(add)(W, B, Bp, gs, gf, kg, gs);
            }
        }
        if (want[0]) {
            S(pad)(x + (long)r * din * B, din, B, Bp, xs);
            S(wgrad)(W, din, B, gs, xs, G[0], G[1]);
        }
    }
}

/* Adam(W) on columns a..b-1 of one run's rows */
NOFMA static inline void S(adam_span)(long a, long b, T *restrict p, const T *restrict g, T *restrict m, T *restrict v,
                                      T *restrict b1t, T *restrict b2t, T lr, T decay, T b1, T b2, T c1, T c2, T eps,
                                      T wd, int coupled) {
    for (long c = a; c < b; c++) {
        T gc = coupled ? g[c] + wd * p[c] : g[c];
        T b1n = b1t[c] * b1, b2n = b2t[c] * b2, mn = FMA(c1, gc - m[c], m[c]), vn = v[c] * b2 + c2 * gc * gc;
        p[c] = p[c] * decay - lr * ((mn / (1 - b1n)) / (SQRT(vn / (1 - b2n)) + eps));
        b1t[c] = b1n, b2t[c] = b2n, m[c] = mn, v[c] = vn;
    }
}

/* the end of the piece of [c, b) that starts at c: b, or (group given) where the group changes */
static inline long S(piece_end)(long c, long b, const long *group) {
    long e = c + 1;
    if (!group) return b;
    while (e < b && group[e] == group[c]) e++;
    return e;
}

/* One Adam(W) step on columns [lo[s], hi[s]) of the flat buffers [R, P] (row stride P), for the runs with run[r]
 * (NULL: all) and, where keep [R, G] is given, the columns whose group keep[r, group[c]] holds; every other element
 * keeps its value, moments and step count (it is not touched). lr, decay: per run; c1 = 1 - b1, c2 = 1 - b2. The
 * arithmetic of lpa_core.optim.RunAdam, op for op (no fused multiply-adds), with denormals flushed to zero:
 * beta1^t gets stuck at the least denormal (0.9 x it rounds back to it) and dead units' moments decay into
 * denormals, which made every later step 9x slower; 1 - beta1^t and a step below the parameter's last bit are the
 * same either way. The spans are cut where the group changes (keep given) once for all runs, so each piece runs the
 * plain loop, which vectorises. */
NOFMA void S(adam)(int R, long P, int n_spans, const long *lo, const long *hi, T *p, const T *g, T *m, T *v, T *b1t, T *b2t,
             const uint8_t *run, const uint8_t *keep, int G, const long *group, const T *lr, const T *decay, T b1, T b2,
             T c1, T c2, T eps, T wd, int coupled) {
    const long *by = keep ? group : 0;
    long n = 0;
    for (int s = 0; s < n_spans; s++)
        for (long c = lo[s]; c < hi[s]; c = S(piece_end)(c, hi[s], by)) n++;
    long cut[2 * n + 1];  /* a piece per layer's weight or bias: a few dozen */
    n = 0;
    for (int s = 0; s < n_spans; s++)
        for (long c = lo[s]; c < hi[s]; c = cut[2 * n + 1], n++) cut[2 * n] = c, cut[2 * n + 1] = S(piece_end)(c, hi[s], by);
    FTZ_ON;
    for (int r = 0; r < R; r++) {
        if (run && !run[r]) continue;
        long o = r * P;
        for (long i = 0; i < n; i++) {
            long a = cut[2 * i], b = cut[2 * i + 1];
            if (keep && !keep[(long)r * G + group[a]]) continue;
            if (coupled)
                S(adam_span)(a, b, p + o, g + o, m + o, v + o, b1t + o, b2t + o, lr[r], decay[r], b1, b2, c1, c2, eps, wd, 1);
            else
                S(adam_span)(a, b, p + o, g + o, m + o, v + o, b1t + o, b2t + o, lr[r], decay[r], b1, b2, c1, c2, eps, wd, 0);
        }
    }
    FTZ_OFF;
}
/* One training step of every run alone, start to end: for each run r with active[r], the forward of blocks
 * 1..depth (all kept) keeping its tape in scratch, the prediction at `depth`, the MSE loss[r] against y and, where
 * it is finite, the backward of the MSE (d loss / d pred = (pred - y) * (2 / (dout B)), rounded to T, as
 * lpa_core.surfaces computes it) into the layers with want[] and the Adam(W) step of `adam` on the columns
 * [lo[s], hi[s]) of run r; a run whose loss is not finite gets bad[r] = 1 and no update. The same functions as
 * the separate calls, one run at a time: the same numbers bit for bit, with the tape (one run's) in the core's
 * cache. loss[r]: the MSE summed in index order (a divergence check and a progress figure: not torch's order).
 * scratch: ((2 depth + 1) W + 2 dout + din + dout + W + din + dout + 3 W + dout (W + 1)) x Bp. */
void S(train)(int R, int din, int W, int dout, int L, int depth, int B, const T *x, const T *y, T *const *ptr,
              const long *rs, T *const *gptr, const long *grs, const uint8_t *want, const int *mode, long P, int n_spans,
              const long *lo, const long *hi, T *flat, T *grad, T *m, T *v, T *b1t, T *b2t, const long *group, const T *lr,
              const T *decay, T b1, T b2, T c1, T c2, T eps, T wd, int coupled, const uint8_t *active, T *loss,
              uint8_t *bad, T *scratch) {
    long Bp = (B + VL - 1) / VL * VL, n = (long)dout * B;
    T *H = scratch, *A = H + (long)(depth + 1) * W * Bp, *pred = A + (long)(depth > 0 ? depth : 1) * W * Bp,
      *g = pred + n, *fs = g + n, *bs = fs + (long)(din + dout + W) * Bp;
    const T c = (T)(2.0 / (double)n);
    const uint8_t one = 1;
    int ex = depth;
    for (int r = 0; r < R; r++) {
        if (!active[r]) continue;
        T *Pr[4 * L + 4], *Gr[4 * L + 4];
        for (int t = 0; t < 4 * L + 4; t++) Pr[t] = ptr[t] + r * rs[t], Gr[t] = gptr[t] + r * grs[t];
        const T *xr = x + (long)r * din * B, *yr = y + (long)r * n;
        S(forward)(1, din, W, dout, L, depth, B, xr, (T *const *)Pr, rs, mode, &one, 1, &ex, 1, H, A, pred, fs);
        T sum = 0;
        for (long q = 0; q < n; q++) {
            T e = pred[q] - yr[q];
            sum += e * e;
            g[q] = e * c;
        }
        loss[r] = sum / (T)n;
        if (!isfinite(loss[r])) {
            bad[r] = 1;
            continue;
        }
        S(backward)(1, din, W, dout, L, depth, B, xr, (T *const *)Pr, rs, (T *const *)Gr, grs, want, mode, &one, 1, &ex,
                    H, A, g, bs);
        long o = (long)r * P;
        S(adam)(1, P, n_spans, lo, hi, flat + o, grad + o, m + o, v + o, b1t + o, b2t + o, 0, 0, 0, group, lr + r, decay + r,
                b1, b2, c1, c2, eps, wd, coupled);
    }
}
#endif
