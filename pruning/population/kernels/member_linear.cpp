// A whole member's linear layers, its batch in the SIMD lanes (see member_step.cpp): over the surviving weights from
// the layer's CSR (forward, weight gradients) and CSC (input gradient), or densely above MK_LINEAR_DENSE.
#include "kernels.h"

// hsum of 16 vectors at once: lane j of the result is hsum(a[j]), by the same tree (lanes l and l+8, then l and
// l+4, then (l and l+2) and (l+1 and l+3) added), so the same bits; with AVX-512 15 vector adds and 30 two-source
// permutes for 16 sums, against 16 hsums of 8 operations each.
static inline v16 hsum16(const v16 *a) {
#ifdef __AVX512F__
  v16 b[8], c[4], d[2];
  for (int k = 0; k < 8; k++)
    b[k] = __builtin_shufflevector(a[k], a[k + 8], 0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23) +
           __builtin_shufflevector(a[k], a[k + 8], 8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  for (int k = 0; k < 4; k++)  // lanes: a[k], a[k+4], a[k+8], a[k+12], 4 partial sums each
    c[k] = __builtin_shufflevector(b[k], b[k + 4], 0, 1, 2, 3, 16, 17, 18, 19, 8, 9, 10, 11, 24, 25, 26, 27) +
           __builtin_shufflevector(b[k], b[k + 4], 4, 5, 6, 7, 20, 21, 22, 23, 12, 13, 14, 15, 28, 29, 30, 31);
  for (int k = 0; k < 2; k++)  // lanes: a[k], a[k+2], ..., a[k+14], 2 partial sums each
    d[k] = __builtin_shufflevector(c[k], c[k + 2], 0, 1, 16, 17, 4, 5, 20, 21, 8, 9, 24, 25, 12, 13, 28, 29) +
           __builtin_shufflevector(c[k], c[k + 2], 2, 3, 18, 19, 6, 7, 22, 23, 10, 11, 26, 27, 14, 15, 30, 31);
  return __builtin_shufflevector(d[0], d[1], 0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30) +
         __builtin_shufflevector(d[0], d[1], 1, 17, 3, 19, 5, 21, 7, 23, 9, 25, 11, 27, 13, 29, 15, 31);
#else
  v16 r;
  for (int j = 0; j < 16; j++) r[j] = hsum(a[j]);
  return r;
#endif
}

// in (K, NP) -> out (O, NP) = W in + b over the surviving weights, ReLU'd if relu. Per lane the sum starts from the
// bias, adds the row's even-numbered surviving weights' products in one chain and the odd-numbered in another, then
// the two chains; NV vectors of the batch at a time (lanes c0 ..), so with NV = 2 four independent chains hide the
// multiply-add's latency.
template <int NV>
static void mk_linear_sparse_rows(const float *in, int64_t NP, int64_t c0, const float *w, const float *b, int64_t O,
                                  int64_t K, const int64_t *rp, const int32_t *cols, float *out, bool relu) {
  const v16 zero = {0};
  for (int64_t o = 0; o < O; o++) {
    const float *wo = w + o * K;
    v16 a[NV][2];
    for (int j = 0; j < NV; j++) a[j][0] = b[o] + zero, a[j][1] = zero;
    int64_t t = rp[o];
    for (; t + 1 < rp[o + 1]; t += 2) {
      const float *p = in + (int64_t)cols[t] * NP + c0, *q = in + (int64_t)cols[t + 1] * NP + c0;
      const float f = wo[cols[t]], g = wo[cols[t + 1]];
      for (int j = 0; j < NV; j++) {
        v16 pj, qj;
        ld(pj, p + j * L);
        ld(qj, q + j * L);
        a[j][0] += pj * f;
        a[j][1] += qj * g;
      }
    }
    if (t < rp[o + 1]) {
      const float *p = in + (int64_t)cols[t] * NP + c0;
      for (int j = 0; j < NV; j++) {
        v16 pj;
        ld(pj, p + j * L);
        a[j][0] += pj * wo[cols[t]];
      }
    }
    for (int j = 0; j < NV; j++) {
      v16 v = a[j][0] + a[j][1];
      if (relu) v = sel(gt(v, zero), v, zero);
      st(out + o * NP + c0 + j * L, v);
    }
  }
}

static void mk_linear_sparse_forward(const float *in, int64_t NP, const float *w, const float *b, int64_t O, int64_t K,
                                     const int64_t *rp, const int32_t *cols, float *out, bool relu) {
  int64_t c0 = 0;
  for (; c0 + 2 * L <= NP; c0 += 2 * L) mk_linear_sparse_rows<2>(in, NP, c0, w, b, O, K, rp, cols, out, relu);
  for (; c0 < NP; c0 += L) mk_linear_sparse_rows<1>(in, NP, c0, w, b, O, K, rp, cols, out, relu);
}

// A linear layer whose mask keeps more than this share of its weights is multiplied densely in the member kernel
// (mk_linear_dense_forward, mk_linear_dense_gin): a pruned weight is exactly 0 and adds exact zeros, and blocks of 8
// rows (or inputs) share each load of the batch's vectors. A function of the member's mask.
static const double MK_LINEAR_DENSE = 0.25;

// Whether a member's linear layer (rowptr rp over O rows of K weights) is multiplied densely: a batch of 32 and more
// than MK_LINEAR_DENSE of its weights kept.
static inline bool mk_linear_is_dense(const int64_t *rp, int64_t O, int64_t K, int64_t NP) {
  return NP == 2 * L && (double)(rp[O] - rp[0]) > MK_LINEAR_DENSE * (double)(O * K);
}

// out (O, NP) = W in + b over every weight, ReLU'd if relu; NP = 2L. Per lane: the bias, then the inputs in order.
static void mk_linear_dense_forward(const float *in, const float *w, const float *b, int64_t O, int64_t K,
                                    float *out, bool relu) {
  const v16 zero = {0};
  int64_t o0 = 0;
  auto block = [&](auto R) {
    constexpr int NR = decltype(R)::value;
    v16 a[NR][2];
    for (int r = 0; r < NR; r++) a[r][0] = a[r][1] = b[o0 + r] + zero;
    const float *wr = w + o0 * K;
    for (int64_t i = 0; i < K; i++) {
      v16 x0, x1;
      ld(x0, in + i * 2 * L);
      ld(x1, in + i * 2 * L + L);
      for (int r = 0; r < NR; r++) {
        const float f = wr[r * K + i];
        a[r][0] += x0 * f;
        a[r][1] += x1 * f;
      }
    }
    for (int r = 0; r < NR; r++)
      for (int j = 0; j < 2; j++) {
        v16 v = a[r][j];
        if (relu) v = sel(gt(v, zero), v, zero);
        st(out + (o0 + r) * 2 * L + j * L, v);
      }
  };
  for (; o0 + 8 <= O; o0 += 8) block(std::integral_constant<int, 8>());
  for (; o0 + 2 <= O; o0 += 2) block(std::integral_constant<int, 2>());
  for (; o0 < O; o0++) block(std::integral_constant<int, 1>());
}

// gin (K, NP) = W^T gout over every weight; NP = 2L. Per lane: the rows in order.
static void mk_linear_dense_gin(const float *w, const float *gout, int64_t O, int64_t K, float *gin) {
  const v16 zero = {0};
  int64_t i0 = 0;
  auto block = [&](auto R) {
    constexpr int NR = decltype(R)::value;
    v16 a[NR][2];
    for (int r = 0; r < NR; r++) a[r][0] = a[r][1] = zero;
    for (int64_t o = 0; o < O; o++) {
      v16 g0, g1;
      ld(g0, gout + o * 2 * L);
      ld(g1, gout + o * 2 * L + L);
      const float *wr = w + o * K + i0;
      for (int r = 0; r < NR; r++) {
        a[r][0] += g0 * wr[r];
        a[r][1] += g1 * wr[r];
      }
    }
    for (int r = 0; r < NR; r++) {
      st(gin + (i0 + r) * 2 * L, a[r][0]);
      st(gin + (i0 + r) * 2 * L + L, a[r][1]);
    }
  };
  for (; i0 + 8 <= K; i0 += 8) block(std::integral_constant<int, 8>());
  for (; i0 + 2 <= K; i0 += 2) block(std::integral_constant<int, 2>());
  for (; i0 < K; i0++) block(std::integral_constant<int, 1>());
}

void mk_linear_forward(const float *in, int64_t NP, const float *w, const float *b, int64_t O, int64_t K,
                              const int64_t *rp, const int32_t *cols, float *out, bool relu) {
  if (mk_linear_is_dense(rp, O, K, NP))
    mk_linear_dense_forward(in, w, b, O, K, out, relu);
  else
    mk_linear_sparse_forward(in, NP, w, b, O, K, rp, cols, out, relu);
}

// gin (K, NP) = W^T gout over the surviving weights at lanes c0 .. c0 + NV*L, input by input from the CSC (cp, rows):
// per lane the even-numbered rows' products in one chain, the odd-numbered in another, then the two added.
template <int NV>
static void mk_linear_csc_gin(const float *w, const float *gout, int64_t NP, int64_t c0, int64_t K, const int64_t *cp,
                              const int32_t *rows, float *gin) {
  const v16 zero = {0};
  for (int64_t i = 0; i < K; i++) {
    v16 a[NV][2];
    for (int j = 0; j < NV; j++) a[j][0] = a[j][1] = zero;
    int64_t u = cp[i];
    for (; u + 1 < cp[i + 1]; u += 2) {
      const int64_t r = rows[u], r2 = rows[u + 1];
      const float f = w[r * K + i], g = w[r2 * K + i];
      for (int j = 0; j < NV; j++) {
        v16 pj, qj;
        ld(pj, gout + r * NP + c0 + j * L);
        ld(qj, gout + r2 * NP + c0 + j * L);
        a[j][0] += pj * f;
        a[j][1] += qj * g;
      }
    }
    if (u < cp[i + 1]) {
      const int64_t r = rows[u];
      const float f = w[r * K + i];
      for (int j = 0; j < NV; j++) {
        v16 pj;
        ld(pj, gout + r * NP + c0 + j * L);
        a[j][0] += pj * f;
      }
    }
    for (int j = 0; j < NV; j++) st(gin + i * NP + c0 + j * L, a[j][0] + a[j][1]);
  }
}

// Its backward from gout (O, NP): gv (one float per surviving weight, in CSR order: the lanes of sum over the
// batch's vectors of gout * in, by hsum16 sixteen weights at a time), gb (O), and, if gin is not null, gin (K, NP)
// = W^T gout over the surviving weights, column by column from the layer's CSC (cp (K+1) offsets into rows, each
// column's surviving rows increasing): per lane the even-numbered rows' products in one chain, the odd-numbered in
// another, then the two added; every entry of gin is written.
// The weight gradients of mk_linear_backward; NV > 0: NP = NV * L known when compiling (the rows of gout kept in
// registers), 0: any. The same sums in the same order either way.
template <int NV>
static void mk_linear_wgrad(const float *in, int64_t NP, int64_t O, const int64_t *rp, const int32_t *cols,
                            const float *gout, float *gv) {
  const v16 zero = {0};
  v16 acc[16];
  int64_t na = 0, done = 0;  // accumulators pending, gradients written
  for (int64_t o = 0; o < O; o++) {
    const float *go = gout + o * NP;
    v16 g[NV > 0 ? NV : 1];
    for (int j = 0; j < NV; j++) ld(g[j], go + j * L);
    for (int64_t t = rp[o]; t < rp[o + 1]; t++) {
      const float *p = in + (int64_t)cols[t] * NP;
      v16 a = zero;
      if (NV > 0) {
        for (int j = 0; j < NV; j++) {
          v16 x;
          ld(x, p + j * L);
          a += g[j] * x;
        }
      } else {
        for (int64_t c0 = 0; c0 < NP; c0 += L) {
          v16 gg, x;
          ld(gg, go + c0);
          ld(x, p + c0);
          a += gg * x;
        }
      }
      acc[na++] = a;
      if (na == 16) {
        st(gv + done, hsum16(acc));
        done += 16;
        na = 0;
      }
    }
  }
  if (na) {
    for (int64_t j = na; j < 16; j++) acc[j] = zero;
    const v16 r = hsum16(acc);
    for (int64_t j = 0; j < na; j++) gv[done + j] = r[j];
  }
}

void mk_linear_backward(const float *in, int64_t NP, const float *w, int64_t O, int64_t K, const int64_t *rp,
                               const int32_t *cols, const int64_t *cp, const int32_t *rows, const float *gout,
                               float *gv, float *gb, float *gin) {
  const v16 zero = {0};
  for (int64_t o = 0; o < O; o++) {
    v16 bacc = zero;
    for (int64_t c0 = 0; c0 < NP; c0 += L) {
      v16 g;
      ld(g, gout + o * NP + c0);
      bacc += g;
    }
    gb[o] = hsum(bacc);
  }
  if (NP == 2 * L)
    mk_linear_wgrad<2>(in, NP, O, rp, cols, gout, gv);
  else if (NP == L)
    mk_linear_wgrad<1>(in, NP, O, rp, cols, gout, gv);
  else
    mk_linear_wgrad<0>(in, NP, O, rp, cols, gout, gv);
  if (!gin) return;
  if (mk_linear_is_dense(rp, O, K, NP)) {
    mk_linear_dense_gin(w, gout, O, K, gin);
    return;
  }
  int64_t c0 = 0;
  for (; c0 + 2 * L <= NP; c0 += 2 * L) mk_linear_csc_gin<2>(w, gout, NP, c0, K, cp, rows, gin);
  for (; c0 < NP; c0 += L) mk_linear_csc_gin<1>(w, gout, NP, c0, K, cp, rows, gin);
}
