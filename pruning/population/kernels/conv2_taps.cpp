// conv2 over surviving weights only ("tap lists"), for the members whose conv2 mask is sparse enough (the
// Python side picks them from their masks: kernels.Conv2Taps). op (M, 17): for such a member, op[m][o] ..
// op[m][o + 1] is the range of taps (int32) that output channel o keeps, each tap k = (ky*3 + kx)*Ci + ci in
// increasing order (the row of wt it reads); op[m][0] = -1 for a member on the dense kernels (conv2.cpp).
//
// Layout: the images in the SIMD lanes. A member's input channels are copied, 16 images at a time, into
// A (H, W, Ci, 16); for each pooled row and output channel, the two conv rows pooling reads (10 columns x 16
// images each, 20 registers) are computed by adding f * (a shifted input row) for each surviving tap f. So the
// work is proportional to the surviving weights, a whole pruned filter costs only its bias, and the 4 input
// rows a pooled row reads (20 KB) stay in the L1 cache while every output channel uses them.
//
// Forward: the same operations in the same order as conv2_forward (start from the bias, add the taps in k
// order with one multiply-add each; skipping a pruned tap skips adding an exact 0), so the pooled values and
// winners are bit for bit those of the dense kernel wherever the inputs are finite. Backward: the bias
// gradients are summed as the dense kernel sums them (the same bits); the filters' and the input's gradients
// sum the same terms in another fixed order (float rounding apart, the same values).
#include "kernels.h"
static const int64_t NB = L;      // images per chunk: one SIMD vector
static const int64_t TAP_PW = 5;  // pooled width the tap kernels are compiled for (LeNet on 28x28 inputs: 13 -> 5)
static const int64_t CW = 2 * TAP_PW;  // conv columns pooling reads

struct TapScratch {  // one thread's buffers, kept between calls (no allocation per step)
  std::vector<float> A, dA, P, G, gacc;
  std::vector<uint8_t> C;
};

static TapScratch &tap_scratch() {
  static thread_local TapScratch sc;
  return sc;
}

// A (H*W, Ci, NB): member m's input channels for images b0 .. b0 + nb - 1 in the lanes, zeros past nb (with
// AVX-512, one gather per position and channel).
static void member_chunk(const float *a1, int64_t b0, int64_t nb, int64_t HW, int64_t CS, int64_t m, int64_t Ci,
                         float *A) {
#ifdef __AVX512F__
  const __m512i lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                           _mm512_set1_epi32((int32_t)(HW * CS)));
  const __mmask16 live = (__mmask16)((1u << nb) - 1u);
  for (int64_t s = 0; s < HW; s++) {
    const float *src = a1 + (b0 * HW + s) * CS + m * Ci;
    for (int64_t ci = 0; ci < Ci; ci++)
      _mm512_storeu_ps(A + (s * Ci + ci) * NB,
                       _mm512_mask_i32gather_ps(_mm512_setzero_ps(), live, lanes, src + ci, 4));
  }
#else
  if (nb < NB) std::fill(A, A + HW * Ci * NB, 0.0f);
  for (int64_t s = 0; s < HW; s++) {
    float *dst = A + s * Ci * NB;
    const float *src = a1 + (b0 * HW + s) * CS + m * Ci;
    for (int64_t lane = 0; lane < nb; lane++, src += HW * CS)
      for (int64_t ci = 0; ci < Ci; ci++) dst[ci * NB + lane] = src[ci];
  }
#endif
}

// The inverse for a gradient: dA (H*W, Ci, NB) into member m's channels of da1 (n, H, W, CS), images b0 .. b0+nb-1,
// 16 positions at a time (their 6 KB of dA stay in the L1 cache), image by image within them (a stride the
// hardware prefetches; a scatter across the 16 images, or whole images at a time, were 2-3x slower).
static void member_unchunk(const float *dA, int64_t b0, int64_t nb, int64_t HW, int64_t CS, int64_t m, int64_t Ci,
                           float *da1) {
  for (int64_t s0 = 0; s0 < HW; s0 += 16) {
    const int64_t s1 = std::min<int64_t>(HW, s0 + 16);
    for (int64_t lane = 0; lane < nb; lane++) {
      float *dst = da1 + ((b0 + lane) * HW + s0) * CS + m * Ci;
      const float *src = dA + s0 * Ci * NB + lane;
      for (int64_t s = s0; s < s1; s++, dst += CS, src += Ci * NB)
        for (int64_t ci = 0; ci < Ci; ci++) dst[ci] = src[ci * NB];
    }
  }
}

// C (16*S, NB): the winners idx[b][pos][m][o] of member m at [o*S + pos][lane]
static void member_codes(const uint8_t *idx, int64_t b0, int64_t nb, int64_t S, int64_t M, int64_t m, uint8_t *C) {
  if (nb < NB) std::fill(C, C + L * S * NB, (uint8_t)4);
  for (int64_t lane = 0; lane < nb; lane++)
    for (int64_t pos = 0; pos < S; pos++) {
      const uint8_t *src = idx + (((b0 + lane) * S + pos) * M + m) * L;
      for (int64_t o = 0; o < L; o++) C[(o * S + pos) * NB + lane] = src[o];
    }
}

void conv2_taps_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
                               const int64_t *op, const int32_t *taps, float *acache, int64_t n, int64_t H, int64_t W,
                               int64_t CS, int64_t M, int64_t Ci, int64_t threads) {
  std::vector<int64_t> members;
  for (int64_t m = 0; m < M; m++)
    if (on_taps(op, m)) members.push_back(m);
  const int64_t *mem = members.data();
  parallel((int64_t)members.size(), threads, [=](int64_t s0, int64_t s1) {  // by member
    const int64_t K = 9 * Ci, PH = (H - 2) / 2, S = PH * TAP_PW, HW = H * W, RS = W * Ci * NB;  // RS: a row of A
    const v16 zero = {0};
    TapScratch &sc = tap_scratch();
    sc.A.resize(HW * Ci * NB);
    sc.P.resize(L * S * NB);
    sc.C.resize(L * S * NB);
    float *A = sc.A.data(), *P = sc.P.data();
    uint8_t *C = sc.C.data();
    for (int64_t s = s0; s < s1; s++) {
      const int64_t m = mem[s];
      const int64_t *om = op + m * (L + 1);
      const float *wm = wt + m * K * L;
      for (int64_t b0 = 0; b0 < n; b0 += NB) {
        const int64_t nb = std::min(NB, n - b0);
        if (acache) A = acache + (m * ((n + NB - 1) / NB) + b0 / NB) * HW * Ci * NB;  // kept for the backward pass
        member_chunk(a1, b0, nb, HW, CS, m, Ci, A);
        for (int64_t py = 0; py < PH; py++)
          for (int64_t o = 0; o < L; o++) {
            v16 top[CW], bot[CW];
            const v16 start = bias[m * L + o] + zero;
            for (int64_t x = 0; x < CW; x++) top[x] = bot[x] = start;
            for (int64_t t = om[o]; t < om[o + 1]; t++) {
              const int64_t k = taps[t], kk = k / Ci, ci = k - kk * Ci, ky = kk / 3, kx = kk - ky * 3;
              const float f = wm[k * L + o];
              const float *src = A + ((2 * py + ky) * W + kx) * Ci * NB + ci * NB;
              for (int64_t x = 0; x < CW; x++) {
                v16 p0, p1;
                ld(p0, src + x * Ci * NB);
                ld(p1, src + RS + x * Ci * NB);
                top[x] += p0 * f;
                bot[x] += p1 * f;
              }
            }
            for (int64_t px = 0; px < TAP_PW; px++) {
              v16 best;
              i16 won;
              pool_relu(top[2 * px], top[2 * px + 1], bot[2 * px], bot[2 * px + 1], best, won);
              const int64_t row = o * S + py * TAP_PW + px;
              const u16 won8 = narrow(won);
              st(P + row * NB, best);
              st(C + row * NB, won8);
            }
          }
        untranspose_chunk(P, NB, L * S, b0, nb, a2 + m * n * L * S);
        for (int64_t lane = 0; lane < nb; lane++)
          for (int64_t pos = 0; pos < S; pos++) {
            uint8_t *dst = idx + (((b0 + lane) * S + pos) * M + m) * L;
            for (int64_t o = 0; o < L; o++) dst[o] = C[(o * S + pos) * NB + lane];
          }
      }
    }
  });
}

// One member's gradients on its taps: gwt's surviving entries and gb (the caller zeroed both), and its channels
// of da1. acache: the forward pass's chunks of A, or null (then they are copied again).
void conv2_taps_backward_member(const float *a1, const float *wt, const uint8_t *idx, const float *ga2,
                                       float *gwt, float *gb, float *da1, const int64_t *om, const int32_t *taps,
                                       const float *acache, int64_t m, int64_t n, int64_t H, int64_t W, int64_t CS,
                                       int64_t M, int64_t Ci) {
  const int64_t K = 9 * Ci, PH = (H - 2) / 2, S = PH * TAP_PW, HW = H * W, RS = W * Ci * NB;
  const v16 zero = {0};
  const i16 one = splat(1), two = splat(2), three = splat(3);
  const int64_t T = om[L] - om[0];
  TapScratch &sc = tap_scratch();
  sc.A.resize(HW * Ci * NB);
  sc.dA.resize(HW * Ci * NB);
  sc.G.resize(L * S * NB);
  sc.C.resize(L * S * NB);
  sc.gacc.resize(std::max<int64_t>(T, 1) * L);
  float *A = sc.A.data(), *dA = sc.dA.data(), *G = sc.G.data(), *gacc = sc.gacc.data();
  uint8_t *C = sc.C.data();
  const float *wm = wt + m * K * L;
  // the bias gradients exactly as conv2_backward sums them: images, pooled positions, 16 channels in the lanes
  v16 bsum = zero;
#ifdef __AVX512F__
  const __m512i strided = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32((int32_t)S));
#endif
  for (int64_t b = 0; b < n; b++)
    for (int64_t pos = 0; pos < S; pos++) {
      const float *gsrc = ga2 + (m * n + b) * L * S + pos;
      u16 c8;
      ld(c8, idx + ((b * S + pos) * M + m) * L);
      const i16 wv = widen(c8);
      v16 gv;
#ifdef __AVX512F__
      const __m512 g = _mm512_i32gather_ps(strided, gsrc, 4);
      ld(gv, &g);
#else
      for (int64_t o = 0; o < L; o++) gv[o] = gsrc[o * S];
#endif
      bsum += sel(lt(wv, splat(4)), gv, zero);
    }
  st(gb + m * L, bsum);
  std::fill(gacc, gacc + T * L, 0.0f);
  for (int64_t b0 = 0; b0 < n; b0 += NB) {
    const int64_t nb = std::min(NB, n - b0);
    const float *Ab = A;
    if (acache)
      Ab = acache + (m * ((n + NB - 1) / NB) + b0 / NB) * HW * Ci * NB;
    else
      member_chunk(a1, b0, nb, HW, CS, m, Ci, A);
    member_codes(idx, b0, nb, S, M, m, C);
    transpose_chunk(ga2 + m * n * L * S, L * S, b0, nb, NB, G);
    std::fill(dA, dA + HW * Ci * NB, 0.0f);
    for (int64_t py = 0; py < PH; py++)
      for (int64_t o = 0; o < L; o++) {
        const int64_t t0 = om[o], t1 = om[o + 1];
        if (t0 == t1) continue;
        // the gradients of the two conv rows under pooled row py, routed to the window position that won
        v16 dtop[CW], dbot[CW];
        for (int64_t px = 0; px < TAP_PW; px++) {
          const int64_t row = o * S + py * TAP_PW + px;
          v16 g;
          u16 c8;
          ld(g, G + row * NB);
          ld(c8, C + row * NB);
          const i16 c = widen(c8);
          dtop[2 * px] = sel(eq(c, splat(0)), g, zero);
          dtop[2 * px + 1] = sel(eq(c, one), g, zero);
          dbot[2 * px] = sel(eq(c, two), g, zero);
          dbot[2 * px + 1] = sel(eq(c, three), g, zero);
        }
        for (int64_t t = t0; t < t1; t++) {
          const int64_t k = taps[t], kk = k / Ci, ci = k - kk * Ci, ky = kk / 3, kx = kk - ky * 3;
          const int64_t off = ((2 * py + ky) * W + kx) * Ci * NB + ci * NB;
          const float *src = Ab + off;
          float *dst = dA + off;
          const float f = wm[k * L + o];
          v16 acc;
          ld(acc, gacc + (t - om[0]) * L);
          for (int64_t x = 0; x < CW; x++) {
            v16 p0, p1, q0, q1;
            ld(p0, src + x * Ci * NB);
            ld(p1, src + RS + x * Ci * NB);
            acc += dtop[x] * p0;
            acc += dbot[x] * p1;
            ld(q0, dst + x * Ci * NB);
            ld(q1, dst + RS + x * Ci * NB);
            q0 += f * dtop[x];
            q1 += f * dbot[x];
            st(dst + x * Ci * NB, q0);
            st(dst + RS + x * Ci * NB, q1);
          }
          st(gacc + (t - om[0]) * L, acc);
        }
      }
    member_unchunk(dA, b0, nb, HW, CS, m, Ci, da1);
  }
  float *gw = gwt + m * K * L;
  for (int64_t o = 0; o < L; o++)
    for (int64_t t = om[o]; t < om[o + 1]; t++) {
      v16 acc;
      ld(acc, gacc + (t - om[0]) * L);
      gw[taps[t] * L + o] = hsum(acc);
    }
}
