/* Shared parts of the score-cube kernel (kernel.c includes this; one translation unit):
 * vector helpers, the base-2 exponential, the online logsumexp / max / argmax state and
 * its tile folds, the stable radix sort of a row, the running sums over rank bands, and
 * the output of a finished state.
 */
#ifndef ASH_KERNEL_CORE_H
#define ASH_KERNEL_CORE_H
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

/* Scratch every entry point needs: sort keys, a block of sorted rows (unit order and
 * values), the bias in base-2 units. */
typedef struct {
    uint32_t* key; /* 2 * D */
    int32_t* tmpi; /* D */
    int32_t* idx;  /* rows * D */
    float* val;    /* rows * D */
    float* bias2;  /* Cp */
} Scratch;

static void scratch_free(Scratch* b) {
    free(b->key); free(b->tmpi); free(b->idx); free(b->val); free(b->bias2);
}

/* Allocate for blocks of `rows` rows and fill bias2; -1 (nothing left allocated) on
 * failure. */
static int scratch_alloc(Scratch* b, int64_t rows, int64_t D, const float* bias, int64_t Cp) {
    b->key = malloc((size_t)D * 2 * sizeof(uint32_t));
    b->tmpi = malloc((size_t)D * sizeof(int32_t));
    b->idx = malloc((size_t)rows * D * sizeof(int32_t));
    b->val = malloc((size_t)rows * D * sizeof(float));
    b->bias2 = malloc((size_t)Cp * sizeof(float));
    if (!b->key || !b->tmpi || !b->idx || !b->val || !b->bias2) {
        scratch_free(b);
        return -1;
    }
    bias_base2(bias, Cp, b->bias2);
    return 0;
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

#endif /* ASH_KERNEL_CORE_H */
