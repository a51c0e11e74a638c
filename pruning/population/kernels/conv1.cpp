// The population step's conv1 (kernels.conv1_pool_forward/backward, sparse.Conv1Live; called by lenet_convs.Fused):
// a 3x3 convolution (stride 1, no padding) of one shared batch by the filters of all members, then 2x2 max
// pooling, then ReLU. The conv output is not stored: each pooled value is computed from its 4 window positions in
// registers, and only the pooled value and which position won (one byte) are written. The backward passes route
// each pooled gradient back to the winning position.
//
// Layouts: x (n, C, H, W); ft (K, Cp) with K = C*9 + 1 (the filters, transposed, then the biases as the last row)
// and Cp = the number of filters rounded up to a multiple of 16 (zero columns); a and idx (n, PH, PW, Cp), the
// pooled output in channels_last order (padding channels 0); g (K, Cp), the filters' gradients then the biases'.
#include "kernels.h"

// The 4 patches of pooled position (i, j): p[o*K + c*9 + ky*3 + kx], window position o = dy*2 + dx
// (max_pool2d's scan order), and a 1 for the bias.
static inline void patches4(const float *x, int64_t C, int64_t H, int64_t W, int64_t i, int64_t j, int64_t K,
                            float *p) {
  for (int o = 0; o < 4; o++) {
    const int64_t y0 = 2 * i + (o >> 1), x0 = 2 * j + (o & 1);
    float *q = p + o * K;
    for (int64_t c = 0; c < C; c++)
      for (int ky = 0; ky < 3; ky++)
        for (int kx = 0; kx < 3; kx++) q[c * 9 + ky * 3 + kx] = x[(c * H + y0 + ky) * W + x0 + kx];
    q[K - 1] = 1.0f;
  }
}

// One vector of 16 conv1 channels at a pooled position: each window position's conv (the K patch values p, as
// patches4 writes them, times the filters' rows f + k * stride), then the pooling: the first maximum in window order
// wins, and NaN wins, as in max_pool2d; then ReLU (NaN stays NaN). best: the pooled values; won: the winners.
static inline void conv1_vector(const float *p, const float *f0, int64_t stride, int64_t K, v16 &best, u16 &won8) {
  const v16 zero = {0};
  v16 r0 = zero, r1 = zero, r2 = zero, r3 = zero;
  for (int64_t k = 0; k < K; k++) {
    v16 f;
    ld(f, f0 + k * stride);
    r0 += p[k] * f;
    r1 += p[K + k] * f;
    r2 += p[2 * K + k] * f;
    r3 += p[3 * K + k] * f;
  }
  best = r0;
  i16 won = splat(0), t;
  t = gt(r1, best) | nan(r1); best = sel(t, r1, best); won = sel(t, splat(1), won);
  t = gt(r2, best) | nan(r2); best = sel(t, r2, best); won = sel(t, splat(2), won);
  t = gt(r3, best) | nan(r3); best = sel(t, r3, best); won = sel(t, splat(3), won);
  best = sel(lt(best, zero), zero, best);
  won8 = narrow(won);
}

// f(pos, p) at every pooled position pos = (b * PH + i) * PW + j of the batch, p its 4 patches (patches4); by image
// over the threads.
template <class F>
static void conv1_positions(const float *x, int64_t n, int64_t C, int64_t H, int64_t W, int64_t threads, F f) {
  parallel(n, threads, [=](int64_t b0, int64_t b1) {
    const int64_t K = C * 9 + 1, PH = (H - 2) / 2, PW = (W - 2) / 2;
    std::vector<float> pv(4 * K);
    float *p = pv.data();
    for (int64_t b = b0; b < b1; b++)
      for (int64_t i = 0; i < PH; i++)
        for (int64_t j = 0; j < PW; j++) {
          patches4(x + b * C * H * W, C, H, W, i, j, K, p);
          f((b * PH + i) * PW + j, p);
        }
  });
}

extern "C" void conv1_pool_forward(const float *x, const float *ft, float *a, uint8_t *idx, int64_t n, int64_t C,
                                   int64_t H, int64_t W, int64_t Cp, int64_t threads) {
  const int64_t K = C * 9 + 1;
  conv1_positions(x, n, C, H, W, threads, [=](int64_t pos, const float *p) {
    for (int64_t c0 = 0; c0 < Cp; c0 += L) {
      v16 best;
      u16 won8;
      conv1_vector(p, ft + c0, Cp, K, best, won8);
      st(a + pos * Cp + c0, best);
      st(idx + pos * Cp + c0, won8);
    }
  });
}

// ga: the gradient of the pooled, ReLU'd output a (ReLU's backward is applied here: none where a <= 0).
// Each image's sums are formed over its pooled positions in order, then added to g in image order; the
// threads take disjoint blocks of 16 channels.
template <int KK>  // KK > 0: K known when compiling (MNIST: 10); 0: any
static void conv1_backward(const float *x, const uint8_t *idx, const float *a, const float *ga, float *g, int64_t n,
                           int64_t C, int64_t H, int64_t W, int64_t Cp, int64_t threads) {
  parallel(Cp / L, threads, [=](int64_t blk0, int64_t blk1) {
    const int64_t K = KK ? KK : C * 9 + 1, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW;
    const v16 zero = {0};
    std::vector<float> patches(S * 4 * K);  // one image's
    float *pbuf = patches.data();
    for (int64_t k = 0; k < K; k++) std::memset(g + k * Cp + blk0 * L, 0, (blk1 - blk0) * L * sizeof(float));
    for (int64_t b = 0; b < n; b++) {
      const float *xb = x + b * C * H * W;
      for (int64_t i = 0; i < PH; i++)
        for (int64_t j = 0; j < PW; j++) patches4(xb, C, H, W, i, j, K, pbuf + (i * PW + j) * 4 * K);
      for (int64_t c0 = blk0 * L; c0 < blk1 * L; c0 += L) {
        v16 acc[KK ? KK : 64];  // K <= 64: up to 7 input channels
        for (int64_t k = 0; k < K; k++) acc[k] = zero;
        for (int64_t s = 0; s < S; s++) {
          const int64_t off = (b * S + s) * Cp + c0;
          v16 av, gv;
          u16 w8;
          ld(av, a + off);
          ld(gv, ga + off);
          ld(w8, idx + off);
          const i16 wv = widen(w8);
          gv = sel(le(av, zero), zero, gv);  // threshold_backward(grad, a, 0)
          const float *p = pbuf + s * 4 * K;
          for (int64_t k = 0; k < K; k++) {
            v16 val = p[k] + zero;  // each lane: the patch value at the position that won it
            val = sel(eq(wv, splat(1)), p[K + k] + zero, val);
            val = sel(eq(wv, splat(2)), p[2 * K + k] + zero, val);
            val = sel(eq(wv, splat(3)), p[3 * K + k] + zero, val);
            acc[k] += gv * val;
          }
        }
        for (int64_t k = 0; k < K; k++) {
          v16 t;
          ld(t, g + k * Cp + c0);
          t += acc[k];
          st(g + k * Cp + c0, t);
        }
      }
    }
  });
}

extern "C" void conv1_pool_backward(const float *x, const uint8_t *idx, const float *a, const float *ga, float *g,
                                    int64_t n, int64_t C, int64_t H, int64_t W, int64_t Cp, int64_t threads) {
  if (C == 1)
    conv1_backward<10>(x, idx, a, ga, g, n, C, H, W, Cp, threads);
  else
    conv1_backward<0>(x, idx, a, ga, g, n, C, H, W, Cp, threads);
}

// conv1 over its live channels only (issue 19). `live` (nl channel indices < Cp, ascending) lists the channels whose
// filter keeps a weight; every other channel's filter is all 0, so its conv output is exactly its bias at each
// position (the dense kernel's sum starts from +0, adds the products with 0, signed zeros that leave +0, then the
// bias), its pooled value relu(0 + bias) and its winner 0 (all four positions tie, so the first wins; 3 if NaN):
// what the dense kernel writes, bit for bit. So each position gets that constant row, then the live channels,
// computed as in the dense kernel 16 to a vector from their filters packed together ((K, NLp), NLp = nl rounded
// up to 16), are written to their places; ac and ic (n, PH, PW, NLp) keep the packed values and winners for the
// backward pass. The work follows the live channels: a structured mask's pruned filters, and the filters an
// unstructured mask has emptied, cost only the constant row.
#ifdef __AVX512F__
static inline v16 gather16(const float *base, const int32_t *li) {
  __m512 r = _mm512_i32gather_ps(_mm512_loadu_si512(li), base, 4);
  v16 v;
  ld(v, &r);
  return v;
}
static inline void scatter16(float *base, const int32_t *li, int64_t ne, v16 v) {  // lanes e < ne to base[li[e]]
  __m512 r;
  ld(r, &v);
  const __mmask16 m = (__mmask16)((1u << ne) - 1);
  _mm512_mask_i32scatter_ps(base, m, _mm512_maskz_loadu_epi32(m, li), r, 4);
}
#else
static inline void scatter16(float *base, const int32_t *li, int64_t ne, v16 v) {
  for (int64_t e = 0; e < ne; e++) base[li[e]] = v[e];
}
static inline v16 gather16(const float *base, const int32_t *li) {
  v16 v;
  for (int64_t e = 0; e < L; e++) v[e] = base[li[e]];
  return v;
}
#endif

extern "C" void conv1_live_forward(const float *x, const float *ft, const int32_t *live, float *a, float *ac,
                                   uint8_t *ic, int64_t nl, int64_t n, int64_t C, int64_t H, int64_t W,
                                   int64_t Cp, int64_t threads) {
  const int64_t K = C * 9 + 1, NLp = (nl + L - 1) / L * L;
  std::vector<float> ftv(K * NLp, 0.0f), crowv(Cp);  // the live filters packed; the constant row
  for (int64_t k = 0; k < K; k++)
    for (int64_t e = 0; e < nl; e++) ftv[k * NLp + e] = ft[k * Cp + live[e]];
  for (int64_t c = 0; c < Cp; c++) {
    const float v = 0.0f + ft[(K - 1) * Cp + c];
    crowv[c] = v < 0.0f ? 0.0f : v;
  }
  const float *ftc = ftv.data(), *crow = crowv.data();
  conv1_positions(x, n, C, H, W, threads, [=](int64_t pos, const float *p) {
    std::memcpy(a + pos * Cp, crow, Cp * sizeof(float));
    for (int64_t c0 = 0; c0 < NLp; c0 += L) {
      v16 best;
      u16 won8;
      conv1_vector(p, ftc + c0, NLp, K, best, won8);  // as the dense kernel
      st(ac + pos * NLp + c0, best);
      st(ic + pos * NLp + c0, won8);
      scatter16(a + pos * Cp, live + c0, std::min<int64_t>(L, nl - c0), best);
    }
  });
}

// Its backward: g (K, Cp) gets the live channels' filter gradients (as the dense kernel sums them: per image over its
// pooled positions in order, then added in image order, so the same bits), every channel's bias gradient (the sum of
// the ReLU'd output gradients in that same order: the dense kernel multiplies each by the patch's 1, exactly), and 0
// for the filters of dead channels (pruned weights, whose gradients the masked update never reads). ga is read at
// the live channels only (gathered); ac and ic are the forward pass's packed values and winners.
template <int KK>  // KK > 0: K known when compiling (MNIST: 10); 0: any
static void conv1_live_backward_k(const float *x, const float *ac, const uint8_t *ic, const float *a,
                                  const float *ga, const int32_t *live, float *g, int64_t nl, int64_t n, int64_t C,
                                  int64_t H, int64_t W, int64_t Cp, int64_t threads) {
  const int64_t K = KK ? KK : C * 9 + 1, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW, NLp = (nl + L - 1) / L * L;
  std::memset(g, 0, K * Cp * sizeof(float));
  // The dead channels' bias row. A dead channel's output is the same at every position (so its first one says whether
  // ReLU passes gradient) and only ga is read; the live lanes' values here are overwritten below.
  parallel(Cp / L, threads, [=](int64_t blk0, int64_t blk1) {
    const v16 zero = {0};
    for (int64_t c0 = blk0 * L; c0 < blk1 * L; c0 += L) {
      v16 a0;
      ld(a0, a + c0);
      const i16 on = ~le(a0, zero);  // as threshold_backward: NaN passes
      bool any = false;
      for (int64_t e = 0; e < L; e++) any |= on[e] != 0;
      if (!any) continue;  // no gradient reaches these biases: they stay 0
      for (int64_t b = 0; b < n; b++) {
        v16 acc = zero;
        for (int64_t s = 0; s < S; s++) {
          v16 gv;
          ld(gv, ga + (b * S + s) * Cp + c0);
          acc += sel(on, gv, zero);
        }
        v16 t;
        ld(t, g + (K - 1) * Cp + c0);
        t += acc;
        st(g + (K - 1) * Cp + c0, t);
      }
    }
  });
  parallel(NLp / L, threads, [=](int64_t blk0, int64_t blk1) {  // the live filters' weights
    const v16 zero = {0};
    std::vector<float> patches(S * 4 * K);
    float *pbuf = patches.data();
    for (int64_t b = 0; b < n; b++) {
      const float *xb = x + b * C * H * W;
      for (int64_t i = 0; i < PH; i++)
        for (int64_t j = 0; j < PW; j++) patches4(xb, C, H, W, i, j, K, pbuf + (i * PW + j) * 4 * K);
      for (int64_t c0 = blk0 * L; c0 < blk1 * L; c0 += L) {
        int32_t li[L];  // the lanes' channels (padding lanes read channel 0 and are dropped)
        for (int64_t e = 0; e < L; e++) li[e] = c0 + e < nl ? live[c0 + e] : 0;
        v16 acc[KK ? KK : 64];
        for (int64_t k = 0; k < K; k++) acc[k] = zero;
        for (int64_t s = 0; s < S; s++) {
          const int64_t pos = b * S + s;
          v16 av, gv = gather16(ga + pos * Cp, li);
          u16 w8;
          ld(av, ac + pos * NLp + c0);
          ld(w8, ic + pos * NLp + c0);
          const i16 wv = widen(w8);
          gv = sel(le(av, zero), zero, gv);
          const float *p = pbuf + s * 4 * K;
          for (int64_t k = 0; k < K - 1; k++) {
            v16 val = p[k] + zero;
            val = sel(eq(wv, splat(1)), p[K + k] + zero, val);
            val = sel(eq(wv, splat(2)), p[2 * K + k] + zero, val);
            val = sel(eq(wv, splat(3)), p[3 * K + k] + zero, val);
            acc[k] += gv * val;
          }
          acc[K - 1] += gv;  // the bias: the patch's 1 at whichever position won, as the dense kernel multiplies it
        }
        for (int64_t e = 0; e < std::min<int64_t>(L, nl - c0); e++) {
          if (b == 0) g[(K - 1) * Cp + live[c0 + e]] = 0.0f;  // drop what the dead channels' loop wrote
          for (int64_t k = 0; k < K; k++) g[k * Cp + live[c0 + e]] += acc[k][e];
        }
      }
    }
  });
}

extern "C" void conv1_live_backward(const float *x, const float *ac, const uint8_t *ic, const float *a,
                                    const float *ga, const int32_t *live, float *g, int64_t nl, int64_t n, int64_t C,
                                    int64_t H, int64_t W, int64_t Cp, int64_t threads) {
  if (C == 1)
    conv1_live_backward_k<10>(x, ac, ic, a, ga, live, g, nl, n, C, H, W, Cp, threads);
  else
    conv1_live_backward_k<0>(x, ac, ic, a, ga, live, g, nl, n, C, H, W, Cp, threads);
}
