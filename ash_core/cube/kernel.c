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
/* FMAs for the running sums and the logits (GCC's ISO mode keeps a * b + c as two
 * roundings and two ops; the reference head, MKL, fuses too). */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("fp-contract=fast")
#endif
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
#define PF 4
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

/* Keep a loaded value in a register: otherwise GCC folds the load into both the FMA and
 * the add that use it, and doubles the loads of the running sums (the load port is
 * their bottleneck, one 512-bit load per cycle on Zen 4). */
#if defined(__GNUC__) && defined(__AVX512F__) /* a 64-byte vector fits one zmm */
#define IN_REG(x) __asm__("" : "+v"(x))
#else
#define IN_REG(x) ((void)0)
#endif

static inline void vstore(float* p, vf v) { memcpy(p, &v, sizeof v); }

static inline vf vmaxv(vf a, vf b) {
    const vi m = a > b;
    return (vf)((m & (vi)a) | (~m & (vi)b));
}

/* Logits are handled in base-2 units (logit * log2(e), folded into the FMA that adds the
 * bias), so each exponential is 2^x = 2^n * 2^f with n = round(x) and f = x - n exact:
 * no multiply and no fused residual per lane, and no clamp (f in [-1/2, 1/2] for every
 * finite x). */
#define L2E 1.44269504088896341f
#define LN2 0.69314718055994530942
#if defined(__AVX512F__)
#include <immintrin.h>
/* 2^x for x <= 0 with AVX-512: near-minimax degree 4 for 2^f on [-1/2, 1/2] (2.7e-6
 * relative evaluated in fp32: one FMA per vector less than degree 5 at 1.9e-7, well
 * inside the 1e-4 contract; 2^0 is not exactly 1, the max term of a tile is added as an
 * exact 1 apart anyway), 2^n applied with vscalefps (graceful underflow). */
static inline vf vexp2(vf xv) {
    const __m512 x = (__m512)xv;
    const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m512 f = _mm512_sub_ps(x, n);
    __m512 p = _mm512_set1_ps(0.009570096619427204f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.05591786280274391f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.240247443318367f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.6931217908859253f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(0.9999992847442627f));
    return (vf)_mm512_scalef_ps(p, n);
}
#else
/* 2^x for x <= 0, all lanes at once: same polynomial, 2^n built in the exponent bits
 * (x clamped at -126, the smallest normal exponent; 2^-126 is far below resolution). */
static inline vf vexp2(vf x) {
    const vf magic = vsplat(12582912.0f);
    x = vmaxv(x, vsplat(-126.0f));
    const vf t = (x + magic) - magic; /* round to nearest */
    const vf f = x - t;
    vf p = vsplat(0.009570096619427204f);
    p = p * f + vsplat(0.05591786280274391f);
    p = p * f + vsplat(0.240247443318367f);
    p = p * f + vsplat(0.6931217908859253f);
    p = p * f + vsplat(0.9999992847442627f);
    const vi e = (__builtin_convertvector(t, vi) + 127) << 23;
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
    double s;  /* running sum of 2^(l - m), fp64 (tiny terms kept next to 1) */
    float m;   /* running max of l = logit * log2(e) (base-2 units) */
    int32_t a; /* argmax (first occurrence) */
} State;

static inline void state_init(State* st) {
    st->s = 0.0;
    st->m = -INFINITY;
    st->a = 0;
}

/* Reductions of tile sums. The exp terms of a tile (each <= 1 against the running max,
 * at most TILE of them) are summed in fp32 lane-wise: relative error <= TILE * 2^-24
 * (4e-6 worst case, ~1e-7 typical) of that tile's sum, far inside the 1e-4 contract. The
 * max term itself is kept out of them (fold_newmax) and the sum across tiles is fp64. */
#if defined(__AVX512F__)
static inline float hsum_ps(vf v) { return _mm512_reduce_add_ps((__m512)v); }
/* four horizontal sums at once: out[v] = sum of the lanes of a[v] */
static inline void hsum4_ps(vf a0, vf a1, vf a2, vf a3, float* out) {
    const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4((__m512)a0, (__m512)a1, 0x44),
                                    _mm512_shuffle_f32x4((__m512)a0, (__m512)a1, 0xEE));
    const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4((__m512)a2, (__m512)a3, 0x44),
                                    _mm512_shuffle_f32x4((__m512)a2, (__m512)a3, 0xEE));
    __m512 x = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88),
                             _mm512_shuffle_f32x4(ab, cd, 0xDD)); /* 128-bit block v: a[v] */
    x = _mm512_add_ps(x, _mm512_permute_ps(x, 0x4E));
    x = _mm512_add_ps(x, _mm512_permute_ps(x, 0xB1));
    float t[VW];
    _mm512_storeu_ps(t, x);
    out[0] = t[0]; out[1] = t[4]; out[2] = t[8]; out[3] = t[12];
}
#else
static inline float hsum_ps(vf v) {
    float s = 0.0f;
    for (int i = 0; i < VW; i++) s += v[i];
    return s;
}
static inline void hsum4_ps(vf a0, vf a1, vf a2, vf a3, float* out) {
    out[0] = hsum_ps(a0); out[1] = hsum_ps(a1); out[2] = hsum_ps(a2); out[3] = hsum_ps(a3);
}
#endif

static inline vf tile_max(const vf* lg) {
    vf mv = lg[0];
    for (int q = 1; q < NVEC; q++) mv = vmaxv(lg[q], mv);
    return mv;
}

/* A tile with a lane above the running max (~log(tiles) times per state): find the new
 * max and its first class, rescale the running sum. The max term is exactly 1 (2^0); it
 * is added apart, in fp64, and the other terms of the tile are summed in fp32 without
 * it, so that s - 1, which MSP near 1 resolves, keeps the relative precision of fp32
 * (summed together with the 1 in fp32, the small terms would be lost). */
static inline void fold_newmax(State* st, const vf* lg, vf mv, int32_t off) {
    const float mx = vmax_lanes(mv);
    int32_t am = 0, qa = -1;
    for (int q = 0; q < NVEC; q++) {
        const int i = vfind(lg[q], mx);
        if (i >= 0) { am = q * VW + i; qa = q; break; }
    }
    const vf m = vsplat(mx);
    vf acc = vsplat(0.0f);
    for (int q = 0; q < NVEC; q++) {
        vf e = vexp2(lg[q] - m);
        if (q == qa) e[am % VW] = 0.0f; /* 2^0 = 1 exactly, added below */
        acc += e;
    }
    const double tile = (qa >= 0 ? 1.0 : 0.0) + (double)hsum_ps(acc);
    if (st->m == -INFINITY) {
        st->s = tile;
    } else {
        st->s = st->s * exp2((double)st->m - (double)mx) + tile;
    }
    st->m = mx;
    st->a = off + am;
}

/* Fold one tile of logits lg[NVEC] (classes off..off+TILE) into a running state.
 * Returns the tile's sum of exps against the running max (to be added to st->s by the
 * caller), 0 when the state was updated in place (new max) or the tile skipped. Fast
 * path (no lane above the running max): exps against the running max, summed lane-wise.
 * Tiles entirely below max - SKIP are under fp64 resolution of the sum. */
static inline vf fold_acc(State* st, const vf* lg, int32_t off) {
    const vf mv = tile_max(lg);
    if (vany_gt(mv, st->m)) {
        fold_newmax(st, lg, mv, off);
        return vsplat(0.0f);
    }
    if (!vany_gt(mv, st->m - SKIP * L2E)) return vsplat(0.0f);
    const vf m = vsplat(st->m);
    vf acc = vexp2(lg[0] - m);
    for (int q = 1; q < NVEC; q++) acc += vexp2(lg[q] - m);
    return acc;
}

static inline void fold(State* st, const vf* lg, int32_t off) {
    const vf acc = fold_acc(st, lg, off);
    st->s += (double)hsum_ps(acc);
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
    /* the four digit histograms in one pass (they do not depend on the order) */
    int32_t cnt[4][256];
    memset(cnt, 0, sizeof cnt);
    for (int64_t d = 0; d < D; d++) {
        const uint32_t k = key[d];
        cnt[0][k & 255u]++;
        cnt[1][(k >> 8) & 255u]++;
        cnt[2][(k >> 16) & 255u]++;
        cnt[3][k >> 24]++;
    }
    uint32_t *ks = key, *kd = key2;
    int32_t *is = idx, *id = idx2;
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 8 * pass;
        int32_t* c = cnt[pass];
        if (c[(ks[0] >> shift) & 255u] == D) continue; /* digit constant: skip pass */
        int32_t sum = 0;
        for (int b = 0; b < 256; b++) { int32_t n = c[b]; c[b] = sum; sum += n; }
        for (int64_t d = 0; d < D; d++) {
            const int32_t pos = c[(ks[d] >> shift) & 255u]++;
            kd[pos] = ks[d];
            id[pos] = is[d];
        }
        uint32_t* tk = ks; ks = kd; kd = tk;
        int32_t* ti = is; is = id; id = ti;
    }
    if (is != idx) memcpy(idx, is, (size_t)D * sizeof(int32_t));
}

/* Sort row x into ix (unit order) and vl (values, descending); returns s1 = sum of x
 * in fp64. key holds 2 * D words, tmpi D. */
static double sorted_row(const float* x, int64_t D, uint32_t* key, int32_t* tmpi,
                         int32_t* ix, float* vl) {
    sort_row(x, D, key, key + D, ix, tmpi);
    double s1 = 0.0;
    for (int64_t d = 0; d < D; d++) s1 += x[d];
    for (int64_t r = 0; r < D; r++) vl[r] = x[ix[r]];
    return s1;
}

/* Count of vl > t (vl descending; compared in float32, as torch compares a float32
 * tensor with a threshold). */
static inline int64_t count_above(const float* vl, int64_t D, float t) {
    int64_t lo = 0, hi = D;
    while (lo < hi) {
        const int64_t mid = (lo + hi) >> 1;
        if (vl[mid] > t) lo = mid + 1; else hi = mid;
    }
    return lo;
}

/* The scores of a finished state at flat output index o: energy = logsumexp, gap =
 * logsumexp - max (MSP = exp(-gap) keeps fp64 resolution near 1), max logit, argmax. */
static inline void store_state(const State* s, int64_t o, float* energy, float* gap,
                               float* maxlogit, int32_t* pred) {
    const double sum = state_sum(s);
    energy[o] = (float)((double)s->m * LN2 + log(sum));
    gap[o] = (float)log(sum);
    maxlogit[o] = (float)((double)s->m * LN2);
    pred[o] = s->a;
}

/* The unshaped head's state into full_out (4 pointers: energy, gap, maxlogit, pred). */
static inline void store_full(const State* s, void* const* full_out, int64_t n) {
    store_state(s, n, (float*)full_out[0], (float*)full_out[1], (float*)full_out[2],
                (int32_t*)full_out[3]);
}

/* The bias in base-2 units; -inf (class padding) becomes a finite -1e30 so that 2^x
 * never sees inf - inf. */
static void bias_base2(const float* bias, int64_t Cp, float* bias2) {
    for (int64_t c = 0; c < Cp; c++)
        bias2[c] = bias[c] == -INFINITY ? -1e30f : (float)((double)bias[c] * (double)L2E);
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
            vf x0 = vload(w0 + q * VW), x1 = vload(w1 + q * VW);
            IN_REG(x0);
            IN_REG(x1);
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
            vf wq = vload(w + q * VW);
            IN_REG(wq);
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
    float* bias2 = malloc((size_t)Cp * sizeof(float));
    if (!bias2 || !key || !tmpi || !idx || !val || !drw || !kk || !fS || !fB || !st) {
        free(key); free(tmpi); free(idx); free(val); free(drw); free(kk); free(fS); free(fB);
        free(st); free(bias2);
        return -1;
    }
    bias_base2(bias, Cp, bias2);
    vf A[NVEC], G[NVEC], R[NVEC], lg[NVEC];
    const vf l2e = vsplat(L2E);

    for (int64_t b0 = n0; b0 < n1; b0 += RB) {
        const int64_t nb = (n1 - b0) < RB ? (n1 - b0) : RB;
        for (int64_t i = 0; i < nb; i++) {
            const int64_t n = b0 + i;
            const float* x = X + (n - n0) * D;
            int32_t* ix = idx + i * D;
            float* vl = val + i * D;
            const double s1 = sorted_row(x, D, key, tmpi, ix, vl);
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
                    k = count_above(vl, D, thr[j]);
                }
                if (k < r) k = r; /* guard: counts must be nondecreasing */
                for (; r < k; r++) s2 += vl[r];
                kk[i * J + j] = (int32_t)k;
                fS[i * J + j] = (float)(exp(s2 != 0.0 ? s1 / s2 : 0.0) * (double)L2E);
                fB[i * J + j] = k > 0 ? (float)(s1 / (double)k * (double)L2E) : 0.0f;
            }
            for (int64_t q = 0; q < J * NV + 1; q++) state_init(st + i * (J * NV + 1) + q);
        }
        for (int64_t t = 0; t < T; t++) {
            const float* Wtile = Wt + t * D * TILE;
            const float* bt = bias2 + t * TILE;
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
                    const vf z = vsplat(0.0f);
                    vf aP = z, aS = z, aB = z, aR = z;
                    if (doP) {
                        for (int q = 0; q < NVEC; q++) lg[q] = l2e * A[q] + vload(bt + q * VW);
                        aP = fold_acc(s + V_P, lg, off);
                    }
                    if (doS) {
                        const float f = fS[i * J + j];
                        for (int q = 0; q < NVEC; q++) lg[q] = vsplat(f) * A[q] + vload(bt + q * VW);
                        aS = fold_acc(s + V_S, lg, off);
                    }
                    if (doB) {
                        const float f = fB[i * J + j];
                        for (int q = 0; q < NVEC; q++) lg[q] = vsplat(f) * G[q] + vload(bt + q * VW);
                        aB = fold_acc(s + V_B, lg, off);
                    }
                    if (doR) {
                        for (int q = 0; q < NVEC; q++) lg[q] = l2e * R[q] + vload(bt + q * VW);
                        aR = fold_acc(s + V_R, lg, off);
                    }
                    float sums[4];
                    hsum4_ps(aP, aS, aB, aR, sums);
                    s[V_P].s += (double)sums[0];
                    s[V_S].s += (double)sums[1];
                    s[V_B].s += (double)sums[2];
                    s[V_R].s += (double)sums[3];
                }
                if (full_out) { /* the unshaped head: every unit, ASH-P's running sum */
                    if (D > r) accumulate(Wtile, ix, vl, dr, r, D, A, G, R, 0, 0);
                    for (int q = 0; q < NVEC; q++) lg[q] = l2e * A[q] + vload(bt + q * VW);
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
                    store_state(st + i * (J * NV + 1) + j * NV + v,
                                ((int64_t)sl * J + jmap[j]) * N + n, out_energy, out_gap,
                                out_maxlogit, out_pred);
                }
            }
            if (full_out) store_full(st + i * (J * NV + 1) + J * NV, full_out, n);
        }
    }
    free(key); free(tmpi); free(idx); free(val); free(drw); free(kk); free(fS); free(fB);
    free(st); free(bias2);
    return 0;
}


/* ReAct ("clip") rows [n0, n1), every grid point at once. clip[J] holds the clip values
 * in walk order (nonincreasing), so the clipped units of checkpoint j, the
 * k_j = #(x >= clip[j]) largest (float32 compare; a unit equal to the clip is the same
 * clipped or not), are a nondecreasing prefix of the sorted row. Logits at j:
 * clip[j] * G_k + (z - A_k) + b with the running sums of ash_cube_rows (A: value x
 * weight, G: weight) and z = x W^T, the same walk continued to the row's last non-zero
 * unit. The rest z - A_k is exactly 0 where no non-zero unit is left past k (the walk
 * only added exact zeros since: 0 * w + a = a), so a clip at 0 of a post-ReLU row gives
 * the bias, with the exact path's ties; a row clipped everywhere uses G summed in unit
 * order, the same for every such row (exact ties again).
 * Per tile, the walk keeps clip * G and A at every checkpoint, finishes z, then folds
 * every checkpoint. Arguments and outputs ([J][N], jmap, full_out) as ash_cube_rows with
 * one slot. Returns 0, or -1 on allocation failure. */
int ash_clip_rows(int64_t n0, int64_t n1, int64_t N, int64_t D, int64_t Cp,
                  const float* X, const float* Wt, const float* bias, int64_t J,
                  const float* clip, const int32_t* jmap, float* out_energy, float* out_gap,
                  float* out_maxlogit, int32_t* out_pred, void* const* full_out) {
    const int64_t T = Cp / TILE;
    uint32_t* key = malloc((size_t)D * 2 * sizeof(uint32_t));
    int32_t* tmpi = malloc((size_t)D * sizeof(int32_t));
    int32_t* idx = malloc((size_t)RB * D * sizeof(int32_t));
    float* val = malloc((size_t)RB * D * sizeof(float));
    int32_t* kk = malloc((size_t)RB * J * sizeof(int32_t));
    int64_t* nz = malloc((size_t)RB * sizeof(int64_t));
    float* cg = malloc((size_t)J * TILE * sizeof(float)); /* clip[j] * G_k per checkpoint */
    float* sa = malloc((size_t)J * TILE * sizeof(float)); /* A_k per checkpoint */
    State* st = malloc((size_t)RB * (J + 1) * sizeof(State));
    float* bias2 = malloc((size_t)Cp * sizeof(float));
    int rc = -1;
    if (!key || !tmpi || !idx || !val || !kk || !nz || !cg || !sa || !st || !bias2) goto done;
    bias_base2(bias, Cp, bias2);
    vf A[NVEC], G[NVEC], R[NVEC], Gall[NVEC], lg[NVEC];
    const vf l2e = vsplat(L2E);
    for (int64_t b0 = n0; b0 < n1; b0 += RB) {
        const int64_t nb = (n1 - b0) < RB ? (n1 - b0) : RB;
        for (int64_t i = 0; i < nb; i++) {
            float* vl = val + i * D;
            sorted_row(X + (b0 + i - n0) * D, D, key, tmpi, idx + i * D, vl);
            int64_t e = D;
            while (e > 0 && vl[e - 1] == 0.0f) e--;
            nz[i] = e;
            int64_t r = 0;
            for (int64_t j = 0; j < J; j++) {
                /* units at or above the clip: min(x, c) = c for ties at c too, and a
                 * row at or above it everywhere is all clipped (exact ties, below) */
                int64_t k = count_above(vl, D, nextafterf(clip[j], -INFINITY));
                if (k < r) k = r; /* guard: counts must be nondecreasing */
                kk[i * J + j] = (int32_t)(r = k);
            }
            for (int64_t q = 0; q < J + 1; q++) state_init(st + i * (J + 1) + q);
        }
        for (int64_t t = 0; t < T; t++) {
            const float* Wtile = Wt + t * D * TILE;
            const float* bt = bias2 + t * TILE;
            const int32_t off = (int32_t)(t * TILE);
            /* G over every unit in unit order: rows whose every unit is clipped have the
             * same logits, tied exactly (as min(x, c) W^T gives them), whatever their order */
            memset(Gall, 0, sizeof Gall);
            for (int64_t d = 0; d < D; d++)
                for (int q = 0; q < NVEC; q++) Gall[q] += vload(Wtile + d * TILE + q * VW);
            for (int64_t i = 0; i < nb; i++) {
                memset(A, 0, sizeof A);
                memset(G, 0, sizeof G);
                memset(R, 0, sizeof R);
                const int32_t* ix = idx + i * D;
                const float* vl = val + i * D;
                int64_t r = 0;
                for (int64_t j = 0; j < J; j++) {
                    const int64_t k = kk[i * J + j];
                    if (k > r) accumulate(Wtile, ix, vl, vl, r, k, A, G, R, 1, 0);
                    r = k;
                    const vf c = vsplat(clip[j]);
                    const vf* g = k == D ? Gall : G; /* all clipped: ties as the exact path */
                    for (int q = 0; q < NVEC; q++) {
                        vstore(cg + j * TILE + q * VW, c * g[q]);
                        vstore(sa + j * TILE + q * VW, A[q]);
                    }
                }
                if (nz[i] > r) accumulate(Wtile, ix, vl, vl, r, nz[i], A, G, R, 0, 0);
                State* s = st + i * (J + 1);
                for (int64_t j = 0; j < J; j++) {
                    for (int q = 0; q < NVEC; q++) {
                        const vf rest = A[q] - vload(sa + j * TILE + q * VW);
                        lg[q] = l2e * (vload(cg + j * TILE + q * VW) + rest) + vload(bt + q * VW);
                    }
                    fold(s + j, lg, off);
                }
                if (full_out) {
                    for (int q = 0; q < NVEC; q++) lg[q] = l2e * A[q] + vload(bt + q * VW);
                    fold(s + J, lg, off);
                }
            }
        }
        for (int64_t i = 0; i < nb; i++) {
            for (int64_t j = 0; j < J; j++)
                store_state(st + i * (J + 1) + j, (int64_t)jmap[j] * N + b0 + i, out_energy,
                            out_gap, out_maxlogit, out_pred);
            if (full_out) store_full(st + i * (J + 1) + J, full_out, b0 + i);
        }
    }
    rc = 0;
done:
    free(key); free(tmpi); free(idx); free(val); free(kk); free(nz); free(cg); free(sa);
    free(st); free(bias2);
    return rc;
}

/* SCALE ("row-scale") rows [n0, n1), every grid point at once. Z [n1 - n0][Cp] holds the
 * rows' unshaped products x W^T (a dense GEMM; padding columns 0), kloc[J] the kept
 * counts in walk order (nondecreasing). Logits at j: exp(s1 / s2(k_j)) z + b, s2(k) the
 * sum of the row's k largest values (fp64 prefix sums of the sorted row; factor 1 where
 * s2 = 0). Only the per-row factor depends on j, so each tile of z is loaded once and
 * folded at every grid point: no [N, C] logits per p. Outputs as ash_clip_rows.
 * Returns 0, or -1 on allocation failure. */
int ash_scale_rows(int64_t n0, int64_t n1, int64_t N, int64_t D, int64_t Cp,
                   const float* X, const float* Z, const float* bias, int64_t J,
                   const int32_t* kloc, const int32_t* jmap, float* out_energy,
                   float* out_gap, float* out_maxlogit, int32_t* out_pred,
                   void* const* full_out) {
    const int64_t T = Cp / TILE;
    uint32_t* key = malloc((size_t)D * 2 * sizeof(uint32_t));
    int32_t* tmpi = malloc((size_t)D * sizeof(int32_t));
    int32_t* idx = malloc((size_t)D * sizeof(int32_t));
    float* val = malloc((size_t)D * sizeof(float));
    float* f = malloc((size_t)J * sizeof(float));
    State* st = malloc((size_t)(J + 1) * sizeof(State));
    float* bias2 = malloc((size_t)Cp * sizeof(float));
    int rc = -1;
    if (!key || !tmpi || !idx || !val || !f || !st || !bias2) goto done;
    bias_base2(bias, Cp, bias2);
    vf zt[NVEC], lg[NVEC];
    const vf l2e = vsplat(L2E);
    for (int64_t n = n0; n < n1; n++) {
        const double s1 = sorted_row(X + (n - n0) * D, D, key, tmpi, idx, val);
        double s2 = 0.0;
        int64_t r = 0;
        for (int64_t j = 0; j < J; j++) {
            for (; r < kloc[j]; r++) s2 += val[r];
            f[j] = (float)(exp(s2 != 0.0 ? s1 / s2 : 0.0) * (double)L2E);
        }
        for (int64_t q = 0; q < J + 1; q++) state_init(st + q);
        const float* z = Z + (n - n0) * Cp;
        for (int64_t t = 0; t < T; t++) {
            const float* bt = bias2 + t * TILE;
            const int32_t off = (int32_t)(t * TILE);
            for (int q = 0; q < NVEC; q++) zt[q] = vload(z + t * TILE + q * VW);
            for (int64_t j = 0; j < J; j++) {
                const vf fj = vsplat(f[j]);
                for (int q = 0; q < NVEC; q++) lg[q] = fj * zt[q] + vload(bt + q * VW);
                fold(st + j, lg, off);
            }
            if (full_out) {
                for (int q = 0; q < NVEC; q++) lg[q] = l2e * zt[q] + vload(bt + q * VW);
                fold(st + J, lg, off);
            }
        }
        for (int64_t j = 0; j < J; j++)
            store_state(st + j, (int64_t)jmap[j] * N + n, out_energy, out_gap, out_maxlogit,
                        out_pred);
        if (full_out) store_full(st + J, full_out, n);
    }
    rc = 0;
done:
    free(key); free(tmpi); free(idx); free(val); free(f); free(st); free(bias2);
    return rc;
}
