/* ASH score-cube kernel: scores of every grid point in one pass, per grid strategy.
 *
 * ash_cube_rows ("prefix": ASH-P/S/B/RAND): for each row a stable descending sort of its
 * units (LSD radix sort on float keys, so ties keep the lower unit index first, exactly
 * like torch.sort(stable=True)); survivors of every grid point are a prefix of that order.
 * The head is applied as running sums over that order, tile by tile of TILE classes held
 * in registers:
 *   A += v * W[:, d]   (ASH-P; ASH-S = f * A),   G += W[:, d]   (ASH-B = s1/k * G),
 *   R += u * W[:, d]   (ASH-RAND, u = the survivor's uniform draw).
 * At each checkpoint the tile's logits are folded into an online logsumexp / max /
 * argmax per (row, grid point, variant), so no [N, C] logits are ever stored.
 * ash_clip_rows ("clip": ReAct) reuses the same sort, running sums and folds;
 * ash_scale_rows ("row-scale": SCALE) folds a per-row factor times the dense logits.
 * Shared parts: kernel_core.h.
 *
 * Built at run time by ash_core/cube/kernel.py (cc -O3 -march=native); loaded
 * with ctypes; one call handles a row range, Python threads run ranges in parallel.
 */
#include "kernel_core.h"

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
 * Returns 0, or -1 on allocation failure. Long on purpose: one loop nest (row block,
 * class tile, row, checkpoint) keeps the running sums in registers across checkpoints. */
int ash_cube_rows(int64_t n0, int64_t n1, int64_t N, int64_t D, int64_t Cp,
                  const float* X, const float* draws, const float* Wt, const float* bias,
                  int64_t J, int mode, const int32_t* kloc, const float* thr,
                  const int32_t* slot, const int32_t* jmap, float* out_energy,
                  float* out_gap, float* out_maxlogit, int32_t* out_pred,
                  void* const* full_out) {
    const int doP = slot[V_P] >= 0, doS = slot[V_S] >= 0, doB = slot[V_B] >= 0,
              doR = slot[V_R] >= 0 && draws != NULL;
    const int64_t T = Cp / TILE;
    Scratch sc;
    if (scratch_alloc(&sc, RB, D, bias, Cp)) return -1;
    uint32_t* key = sc.key;
    int32_t *tmpi = sc.tmpi, *idx = sc.idx;
    float *val = sc.val, *bias2 = sc.bias2;
    float* drw = malloc((size_t)RB * D * sizeof(float));
    int32_t* kk = malloc((size_t)RB * J * sizeof(int32_t));
    float* fS = malloc((size_t)RB * J * sizeof(float));
    float* fB = malloc((size_t)RB * J * sizeof(float));
    State* st = malloc((size_t)RB * (J * NV + 1) * sizeof(State));
    if (!drw || !kk || !fS || !fB || !st) {
        free(drw); free(kk); free(fS); free(fB); free(st);
        scratch_free(&sc);
        return -1;
    }
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
    free(drw); free(kk); free(fS); free(fB); free(st);
    scratch_free(&sc);
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
 * one slot. Returns 0, or -1 on allocation failure.
 * Longer than a step-sized function on purpose, like ash_cube_rows: one loop nest (row
 * block, class tile, row, checkpoint) keeps the accumulators in registers from one
 * checkpoint to the next; helpers would pass them through memory. */
int ash_clip_rows(int64_t n0, int64_t n1, int64_t N, int64_t D, int64_t Cp,
                  const float* X, const float* Wt, const float* bias, int64_t J,
                  const float* clip, const int32_t* jmap, float* out_energy, float* out_gap,
                  float* out_maxlogit, int32_t* out_pred, void* const* full_out) {
    const int64_t T = Cp / TILE;
    Scratch sc;
    if (scratch_alloc(&sc, RB, D, bias, Cp)) return -1;
    int32_t* idx = sc.idx;
    float *val = sc.val, *bias2 = sc.bias2;
    int32_t* kk = malloc((size_t)RB * J * sizeof(int32_t));
    int64_t* nz = malloc((size_t)RB * sizeof(int64_t));
    float* cg = malloc((size_t)J * TILE * sizeof(float)); /* clip[j] * G_k per checkpoint */
    float* sa = malloc((size_t)J * TILE * sizeof(float)); /* A_k per checkpoint */
    State* st = malloc((size_t)RB * (J + 1) * sizeof(State));
    int rc = -1;
    if (!kk || !nz || !cg || !sa || !st) goto done;
    vf A[NVEC], G[NVEC], R[NVEC], Gall[NVEC], lg[NVEC];
    const vf l2e = vsplat(L2E);
    for (int64_t b0 = n0; b0 < n1; b0 += RB) {
        const int64_t nb = (n1 - b0) < RB ? (n1 - b0) : RB;
        for (int64_t i = 0; i < nb; i++) {
            float* vl = val + i * D;
            sorted_row(X + (b0 + i - n0) * D, D, sc.key, sc.tmpi, idx + i * D, vl);
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
    free(kk); free(nz); free(cg); free(sa); free(st);
    scratch_free(&sc);
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
    Scratch sc;
    if (scratch_alloc(&sc, 1, D, bias, Cp)) return -1;
    float *val = sc.val, *bias2 = sc.bias2;
    float* f = malloc((size_t)J * sizeof(float));
    State* st = malloc((size_t)(J + 1) * sizeof(State));
    int rc = -1;
    if (!f || !st) goto done;
    vf zt[NVEC], lg[NVEC];
    const vf l2e = vsplat(L2E);
    for (int64_t n = n0; n < n1; n++) {
        const double s1 = sorted_row(X + (n - n0) * D, D, sc.key, sc.tmpi, sc.idx, val);
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
    free(f); free(st);
    scratch_free(&sc);
    return rc;
}
