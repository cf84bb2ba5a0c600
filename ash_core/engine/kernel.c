/* ASH score-cube kernel: scores of every grid point for ASH-P/S/B/RAND in one pass.
 *
 * For each row: a stable descending sort of its units (LSD radix sort on float keys,
 * so ties keep the lower unit index first, exactly like torch.sort(stable=True));
 * survivors of every grid point are a prefix of that order. The head is applied as
 * running sums over that order, tile by tile of TILE classes held in registers:
 *   A += v * W[:, d]   (ASH-P; ASH-S = f * A),   G += W[:, d]   (ASH-B = s1/k * G),
 *   R += u * W[:, d]   (ASH-RAND, u = the survivor's uniform draw).
 * At each checkpoint the tile's logits are folded into an online logsumexp / max /
 * argmax per (row, grid point, variant), so no [N, C] logits are ever stored.
 *
 * Built at run time by ash_core/engine/kernel.py (gcc -O3 -march=native); loaded
 * with ctypes; one call handles a row range, Python threads run ranges in parallel.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef TILE
#define TILE 64
#endif
#ifndef RB
#define RB 64
#endif
#ifndef SKIP
#define SKIP 40.0f
#endif
#ifndef PF
#define PF 8
#endif

enum { V_P = 0, V_S = 1, V_B = 2, V_R = 3, NV = 4 };

typedef float vf __attribute__((vector_size(64)));
typedef int32_t vi __attribute__((vector_size(64)));
#define VW 16
#define NVEC (TILE / VW)

static inline vf vsplat(float x) { return (vf){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }

static inline vf vload(const float* p) {
    vf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline vf vmaxv(vf a, vf b) {
    const vi m = a > b;
    return (vf)((m & (vi)a) | (~m & (vi)b));
}

#if defined(__AVX512F__)
#include <immintrin.h>
/* exp for x <= 0 with AVX-512: 2^n * 2^f, f in [-1/2, 1/2] (degree-6 Taylor, ~1e-7 rel),
 * 2^n applied with vscalefps (no integer tricks, graceful underflow). */
static inline vf vexp(vf xv) {
    const __m512 x = _mm512_max_ps((__m512)xv, _mm512_set1_ps(-100.0f));
    const __m512 l2e = _mm512_set1_ps(1.44269504088896341f);
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, l2e),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_fmsub_ps(x, l2e, n);
    __m512 p = _mm512_set1_ps(1.5403530393381609954e-4f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.3333558146428443423e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284771620e-3f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821579953e-2f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071233e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994530942e-1f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
    return (vf)_mm512_scalef_ps(p, n);
}
#else
static inline vf vexp(vf x) {
    /* exp for x <= 0 (cephes expf polynomial, ~1 ulp), all lanes at once. */
    const vf lo = vsplat(-87.0f), magic = vsplat(12582912.0f);
    x = vmaxv(x, lo);
    vf t = (x * vsplat(1.44269504088896341f) + magic) - magic; /* round to nearest */
    vf f = x - t * vsplat(0.693359375f) + t * vsplat(2.12194440e-4f);
    vf p = vsplat(1.9875691500E-4f);
    p = p * f + vsplat(1.3981999507E-3f);
    p = p * f + vsplat(8.3334519073E-3f);
    p = p * f + vsplat(4.1665795894E-2f);
    p = p * f + vsplat(1.6666665459E-1f);
    p = p * f + vsplat(5.0000001201E-1f);
    p = p * f * f + f + vsplat(1.0f);
    vi e = (__builtin_convertvector(t, vi) + 127) << 23;
    return p * (vf)e;
}

#endif

#if defined(__AVX512F__)
#include <immintrin.h>
static inline float vmax_lanes(vf v) { return _mm512_reduce_max_ps((__m512)v); }
/* first lane of v equal to x, or -1 */
static inline int vfind(vf v, float x) {
    const __mmask16 k = _mm512_cmp_ps_mask((__m512)v, _mm512_set1_ps(x), _CMP_EQ_OQ);
    return k ? __builtin_ctz((unsigned)k) : -1;
}
#else
static inline float vmax_lanes(vf v) {
    float m = v[0];
    for (int i = 1; i < VW; i++) m = v[i] > m ? v[i] : m;
    return m;
}
static inline int vfind(vf v, float x) {
    for (int i = 0; i < VW; i++)
        if (v[i] == x) return i;
    return -1;
}
#endif

typedef float vf8 __attribute__((vector_size(32)));
typedef double vd __attribute__((vector_size(64)));

/* exp terms summed in fp64: next to the max term (1.0) fp32 would drop the others,
 * and the MSP (1 / s) is compared in fp64. */
static inline vd vsum_pd(vf v) {
    vf8 lo, hi;
    memcpy(&lo, &v, sizeof lo);
    memcpy(&hi, (const char*)&v + sizeof lo, sizeof hi);
    return __builtin_convertvector(lo, vd) + __builtin_convertvector(hi, vd);
}

#if defined(__AVX512F__)
static inline double hsum_pd(vd v) { return _mm512_reduce_add_pd((__m512d)v); }
#else
static inline double hsum_pd(vd v) {
    double s = 0.0;
    for (int i = 0; i < 8; i++) s += v[i];
    return s;
}
#endif

#if defined(__AVX512F__)
/* any lane of v greater than x */
static inline int vany_gt(vf v, float x) {
    return _mm512_cmp_ps_mask((__m512)v, _mm512_set1_ps(x), _CMP_GT_OQ) != 0;
}
#else
static inline int vany_gt(vf v, float x) {
    for (int i = 0; i < VW; i++)
        if (v[i] > x) return 1;
    return 0;
}
#endif

typedef struct {
    double s;  /* running sum of exp(logit - m), fp64 (tiny terms kept next to 1) */
    float m;   /* running max logit */
    int32_t a; /* argmax (first occurrence) */
} State;

static inline void state_init(State* st) {
    st->s = 0.0;
    st->m = -INFINITY;
    st->a = 0;
}

/* Fold one tile of logits lg[NVEC] (classes off..off+TILE) into a running state.
 * Fast path (no lane above the running max): exps against the running max, summed
 * lane-wise, no horizontal reduction. Slow path (a new max, ~log(tiles) times): find
 * it, rescale the sum. Tiles entirely below max - SKIP are under fp64 resolution. */
static inline void fold(State* st, const vf* lg, int32_t off) {
    vf mv = lg[0];
    for (int q = 1; q < NVEC; q++) mv = vmaxv(lg[q], mv);
    if (!vany_gt(mv, st->m)) {
        if (!vany_gt(mv, st->m - SKIP)) return;
        const vf m = vsplat(st->m);
        vf acc = vexp(lg[0] - m);
        for (int q = 1; q < NVEC; q++) acc += vexp(lg[q] - m);
        st->s += hsum_pd(vsum_pd(acc));
        return;
    }
    const float mx = vmax_lanes(mv);
    int32_t am = 0;
    for (int q = 0; q < NVEC; q++) {
        const int i = vfind(lg[q], mx);
        if (i >= 0) { am = q * VW + i; break; }
    }
    const vf m = vsplat(mx);
    vd acc = vsum_pd(vexp(lg[0] - m));
    for (int q = 1; q < NVEC; q++) acc += vsum_pd(vexp(lg[q] - m));
    if (st->m == -INFINITY) {
        st->s = hsum_pd(acc);
    } else {
        st->s = st->s * exp((double)st->m - (double)mx) + hsum_pd(acc);
    }
    st->m = mx;
    st->a = off + am;
}

static inline double state_sum(const State* st) { return st->s; }

/* Stable descending sort of one row: idx gets unit indices, val the values. */
static void sort_row(const float* x, int64_t D, uint32_t* key, uint32_t* key2,
                     int32_t* idx, int32_t* idx2) {
    for (int64_t d = 0; d < D; d++) {
        float v = x[d] + 0.0f; /* -0 -> +0, as torch compares them equal */
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending order key */
        key[d] = ~u;                                     /* descending */
        idx[d] = (int32_t)d;
    }
    uint32_t *ks = key, *kd = key2;
    int32_t *is = idx, *id = idx2;
    for (int shift = 0; shift < 32; shift += 8) {
        int64_t cnt[256];
        memset(cnt, 0, sizeof cnt);
        for (int64_t d = 0; d < D; d++) cnt[(ks[d] >> shift) & 255u]++;
        if (cnt[(ks[0] >> shift) & 255u] == D) continue; /* digit constant: skip pass */
        int64_t sum = 0;
        for (int b = 0; b < 256; b++) { int64_t c = cnt[b]; cnt[b] = sum; sum += c; }
        for (int64_t d = 0; d < D; d++) {
            int64_t pos = cnt[(ks[d] >> shift) & 255u]++;
            kd[pos] = ks[d];
            id[pos] = is[d];
        }
        uint32_t* tk = ks; ks = kd; kd = tk;
        int32_t* ti = is; is = id; id = ti;
    }
    if (is != idx) memcpy(idx, is, (size_t)D * sizeof(int32_t));
}

/* Accumulate ranks [r0, r1) of one row into the tile accumulators (in registers).
 * Two interleaved partial sums per accumulator hide the add latency; W rows a few
 * ranks ahead are prefetched (their order is data dependent). */
static inline void accumulate(const float* restrict Wt, const int32_t* restrict idx,
                              const float* restrict val, const float* restrict drw,
                              int64_t r0, int64_t r1, vf* A, vf* G, vf* R, int doG, int doR) {
    vf a[NVEC], g[NVEC], rr[NVEC], a2[NVEC], g2[NVEC], rr2[NVEC];
    const vf z = vsplat(0.0f);
    for (int q = 0; q < NVEC; q++) {
        a[q] = A[q]; g[q] = G[q]; rr[q] = R[q];
        a2[q] = z; g2[q] = z; rr2[q] = z;
    }
    int64_t r = r0;
    for (; r + 1 < r1; r += 2) {
        if (r + PF + 1 < r1) {
            const float* p0 = Wt + (int64_t)idx[r + PF] * TILE;
            const float* p1 = Wt + (int64_t)idx[r + PF + 1] * TILE;
            for (int q = 0; q < TILE; q += VW) {
                __builtin_prefetch(p0 + q);
                __builtin_prefetch(p1 + q);
            }
        }
        const float* w0 = Wt + (int64_t)idx[r] * TILE;
        const float* w1 = Wt + (int64_t)idx[r + 1] * TILE;
        const vf v0 = vsplat(val[r]), v1 = vsplat(val[r + 1]);
        const vf u0 = vsplat(doR ? drw[r] : 0.0f), u1 = vsplat(doR ? drw[r + 1] : 0.0f);
        for (int q = 0; q < NVEC; q++) {
            const vf x0 = vload(w0 + q * VW), x1 = vload(w1 + q * VW);
            a[q] += v0 * x0;
            a2[q] += v1 * x1;
            if (doG) { g[q] += x0; g2[q] += x1; }
            if (doR) { rr[q] += u0 * x0; rr2[q] += u1 * x1; }
        }
    }
    for (; r < r1; r++) {
        const float* w = Wt + (int64_t)idx[r] * TILE;
        const vf v = vsplat(val[r]);
        const vf u = vsplat(doR ? drw[r] : 0.0f);
        for (int q = 0; q < NVEC; q++) {
            const vf wq = vload(w + q * VW);
            a[q] += v * wq;
            if (doG) g[q] += wq;
            if (doR) rr[q] += u * wq;
        }
    }
    for (int q = 0; q < NVEC; q++) {
        A[q] = a[q] + a2[q]; G[q] = g[q] + g2[q]; R[q] = rr[q] + rr2[q];
    }
}

/* Rows [n0, n1) of the cube.
 * X [N, D] features; draws [N, D] (ASH-RAND survivor values) or NULL;
 * Wt [Cp/TILE][D][TILE] tiled transposed head; bias [Cp] (-inf on padding);
 * mode 0: kloc [J] survivor counts (nondecreasing); mode 1: thr [J] thresholds
 * (nonincreasing), survivors are units > thr; slot[4]: output slot of P, S, B, RAND or -1;
 * outputs [nslot][J][N], checkpoint j written at row jmap[j]; X and draws are indexed
 * from row n0 (pass pointers to row n0 of a block), outputs by absolute row.
 * Outputs per (checkpoint, row): energy = logsumexp, gap = logsumexp - max (so that
 * MSP = exp(-gap) keeps fp64 resolution near 1), max logit, argmax.
 * full_out (4 pointers: energy, gap, maxlogit, pred [N]) or NULL: the unshaped head.
 * Returns 0, or -1 on allocation failure. */
int ash_cube_rows(int64_t n0, int64_t n1, int64_t N, int64_t D, int64_t Cp,
                  const float* X, const float* draws, const float* Wt, const float* bias,
                  int64_t J, int mode, const int32_t* kloc, const float* thr,
                  const int32_t* slot, const int32_t* jmap, float* out_energy,
                  float* out_gap, float* out_maxlogit, int32_t* out_pred,
                  void* const* full_out) {
    const int doP = slot[V_P] >= 0, doS = slot[V_S] >= 0, doB = slot[V_B] >= 0,
              doR = slot[V_R] >= 0 && draws != NULL;
    const int64_t T = Cp / TILE;
    uint32_t* key = malloc((size_t)D * 2 * sizeof(uint32_t));
    int32_t* tmpi = malloc((size_t)D * sizeof(int32_t));
    int32_t* idx = malloc((size_t)RB * D * sizeof(int32_t));
    float* val = malloc((size_t)RB * D * sizeof(float));
    float* drw = malloc((size_t)RB * D * sizeof(float));
    int32_t* kk = malloc((size_t)RB * J * sizeof(int32_t));
    float* fS = malloc((size_t)RB * J * sizeof(float));
    float* fB = malloc((size_t)RB * J * sizeof(float));
    State* st = malloc((size_t)RB * (J * NV + 1) * sizeof(State));
    if (!key || !tmpi || !idx || !val || !drw || !kk || !fS || !fB || !st) {
        free(key); free(tmpi); free(idx); free(val); free(drw); free(kk); free(fS); free(fB);
        free(st);
        return -1;
    }
    vf A[NVEC], G[NVEC], R[NVEC], lg[NVEC];

    for (int64_t b0 = n0; b0 < n1; b0 += RB) {
        const int64_t nb = (n1 - b0) < RB ? (n1 - b0) : RB;
        for (int64_t i = 0; i < nb; i++) {
            const int64_t n = b0 + i;
            const float* x = X + (n - n0) * D;
            int32_t* ix = idx + i * D;
            float* vl = val + i * D;
            sort_row(x, D, key, key + D, ix, tmpi);
            double s1 = 0.0;
            for (int64_t d = 0; d < D; d++) s1 += x[d];
            for (int64_t r = 0; r < D; r++) vl[r] = x[ix[r]];
            if (doR) {
                const float* u = draws + (n - n0) * D;
                for (int64_t r = 0; r < D; r++) drw[i * D + r] = u[ix[r]];
            }
            /* survivor counts, s2 prefix sums (fp64), ASH-S and ASH-B factors */
            double s2 = 0.0;
            int64_t r = 0;
            for (int64_t j = 0; j < J; j++) {
                int64_t k;
                if (mode == 0) {
                    k = kloc[j];
                } else {
                    int64_t lo = 0, hi = D; /* count of vl > thr (vl descending) */
                    const float t = thr[j];
                    while (lo < hi) {
                        int64_t mid = (lo + hi) >> 1;
                        if (vl[mid] > t) lo = mid + 1; else hi = mid;
                    }
                    k = lo;
                }
                if (k < r) k = r; /* guard: counts must be nondecreasing */
                for (; r < k; r++) s2 += vl[r];
                kk[i * J + j] = (int32_t)k;
                fS[i * J + j] = (float)exp(s2 != 0.0 ? s1 / s2 : 0.0);
                fB[i * J + j] = k > 0 ? (float)(s1 / (double)k) : 0.0f;
            }
            for (int64_t q = 0; q < J * NV + 1; q++) state_init(st + i * (J * NV + 1) + q);
        }
        for (int64_t t = 0; t < T; t++) {
            const float* Wtile = Wt + t * D * TILE;
            const float* bt = bias + t * TILE;
            const int32_t off = (int32_t)(t * TILE);
            for (int64_t i = 0; i < nb; i++) {
                memset(A, 0, sizeof A);
                memset(G, 0, sizeof G);
                memset(R, 0, sizeof R);
                const int32_t* ix = idx + i * D;
                const float* vl = val + i * D;
                const float* dr = drw + i * D;
                int64_t r = 0;
                for (int64_t j = 0; j < J; j++) {
                    const int64_t k = kk[i * J + j];
                    if (k > r) {
                        if (doB && doR) accumulate(Wtile, ix, vl, dr, r, k, A, G, R, 1, 1);
                        else if (doB) accumulate(Wtile, ix, vl, dr, r, k, A, G, R, 1, 0);
                        else if (doR) accumulate(Wtile, ix, vl, dr, r, k, A, G, R, 0, 1);
                        else accumulate(Wtile, ix, vl, dr, r, k, A, G, R, 0, 0);
                        r = k;
                    }
                    State* s = st + i * (J * NV + 1) + j * NV;
                    if (doP) {
                        for (int q = 0; q < NVEC; q++) lg[q] = A[q] + vload(bt + q * VW);
                        fold(s + V_P, lg, off);
                    }
                    if (doS) {
                        const float f = fS[i * J + j];
                        for (int q = 0; q < NVEC; q++) lg[q] = vsplat(f) * A[q] + vload(bt + q * VW);
                        fold(s + V_S, lg, off);
                    }
                    if (doB) {
                        const float f = fB[i * J + j];
                        for (int q = 0; q < NVEC; q++) lg[q] = vsplat(f) * G[q] + vload(bt + q * VW);
                        fold(s + V_B, lg, off);
                    }
                    if (doR) {
                        for (int q = 0; q < NVEC; q++) lg[q] = R[q] + vload(bt + q * VW);
                        fold(s + V_R, lg, off);
                    }
                }
                if (full_out) { /* the unshaped head: every unit, ASH-P's running sum */
                    if (D > r) accumulate(Wtile, ix, vl, dr, r, D, A, G, R, 0, 0);
                    for (int q = 0; q < NVEC; q++) lg[q] = A[q] + vload(bt + q * VW);
                    fold(st + i * (J * NV + 1) + J * NV, lg, off);
                }
            }
        }
        for (int64_t i = 0; i < nb; i++) {
            const int64_t n = b0 + i;
            for (int64_t j = 0; j < J; j++) {
                for (int v = 0; v < NV; v++) {
                    const int sl = slot[v];
                    if (sl < 0 || (v == V_R && !doR)) continue;
                    const State* s = st + i * (J * NV + 1) + j * NV + v;
                    const int64_t o = ((int64_t)sl * J + jmap[j]) * N + n;
                    const double sum = state_sum(s);
                    out_energy[o] = (float)((double)s->m + log(sum));
                    out_gap[o] = (float)log(sum);
                    out_maxlogit[o] = s->m;
                    out_pred[o] = s->a;
                }
            }
            if (full_out) {
                const State* s = st + i * (J * NV + 1) + J * NV;
                const double sum = state_sum(s);
                ((float*)full_out[0])[n] = (float)((double)s->m + log(sum));
                ((float*)full_out[1])[n] = (float)log(sum);
                ((float*)full_out[2])[n] = s->m;
                ((int32_t*)full_out[3])[n] = s->a;
            }
        }
    }
    free(key); free(tmpi); free(idx); free(val); free(drw); free(kk); free(fS); free(fB);
    free(st);
    return 0;
}
