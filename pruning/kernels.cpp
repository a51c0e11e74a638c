// The population step's fused conv1 kernels (built and loaded by kernels.py): a 3x3 convolution (stride 1,
// no padding) of one shared batch by the Cout filters of all members, then 2x2 max pooling, then ReLU.
//
// The conv1 output itself is never stored: each pooled value is computed from its 4 window positions in
// registers, and only the pooled value and which position won (one byte) are written. The backward pass
// routes each pooled gradient back to the winning position and multiplies it by that position's patch.
//
// Layouts: x (n, C, H, W); ft (K, Cp) with K = C*9 + 1 (the filters, transposed, then the biases as the
// last row) and Cp = Cout rounded up to a multiple of 16 (zero columns); a and idx (n, PH, PW, Cout), which
// is the pooled output in channels_last order; g (K, Cp), the filters' gradients then the biases'.
// Plain loops over GCC vector types, so that the compiler picks the machine's SIMD width; deterministic:
// the same inputs give the same bits whatever else runs (no threads, fixed summation order).
#include <cstdint>
#include <cstring>

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));
static const int64_t L = 16;

static inline i16 splat(int32_t v) {
  i16 r;
  for (int64_t e = 0; e < L; e++) r[e] = v;
  return r;
}

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

extern "C" void conv1_pool_forward(const float *x, const float *ft, float *a, uint8_t *idx, int64_t n, int64_t C,
                                   int64_t H, int64_t W, int64_t Cout, int64_t Cp) {
  const int64_t K = C * 9 + 1, PH = (H - 2) / 2, PW = (W - 2) / 2;
  float p[4 * K];
  const v16 zero = {0};
  const i16 none = splat(0), one = splat(1), two = splat(2), three = splat(3);
  for (int64_t b = 0; b < n; b++) {
    const float *xb = x + b * C * H * W;
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++) {
        patches4(xb, C, H, W, i, j, K, p);
        const int64_t off = ((b * PH + i) * PW + j) * Cout;
        for (int64_t c0 = 0; c0 < Cp; c0 += L) {
          v16 r0 = zero, r1 = zero, r2 = zero, r3 = zero;
          for (int64_t k = 0; k < K; k++) {
            v16 f;
            std::memcpy(&f, ft + k * Cp + c0, sizeof f);
            r0 += p[k] * f;
            r1 += p[K + k] * f;
            r2 += p[2 * K + k] * f;
            r3 += p[3 * K + k] * f;
          }
          // The first maximum in window order wins, and NaN wins, as in max_pool2d; then ReLU (NaN stays NaN).
          v16 best = r0;
          i16 won = none, t;
          t = (r1 > best) | (r1 != r1); best = t ? r1 : best; won = t ? one : won;
          t = (r2 > best) | (r2 != r2); best = t ? r2 : best; won = t ? two : won;
          t = (r3 > best) | (r3 != r3); best = t ? r3 : best; won = t ? three : won;
          best = best < zero ? zero : best;
          const int64_t m = Cout - c0 < L ? Cout - c0 : L;
          float bf[L];
          int32_t wf[L];
          std::memcpy(bf, &best, sizeof bf);
          std::memcpy(wf, &won, sizeof wf);
          std::memcpy(a + off + c0, bf, m * sizeof(float));
          for (int64_t e = 0; e < m; e++) idx[off + c0 + e] = (uint8_t)wf[e];
        }
      }
  }
}

// ga: the gradient of the pooled, ReLU'd output a (ReLU's backward is applied here: none where a <= 0).
// loc: a (K, Cp) scratch; each image's sum is formed there, then added to g in image order.
extern "C" void conv1_pool_backward(const float *x, const uint8_t *idx, const float *a, const float *ga, float *g,
                                    float *loc, int64_t n, int64_t C, int64_t H, int64_t W, int64_t Cout,
                                    int64_t Cp) {
  const int64_t K = C * 9 + 1, PH = (H - 2) / 2, PW = (W - 2) / 2;
  float p[4 * K];
  const v16 zero = {0};
  std::memset(g, 0, K * Cp * sizeof(float));
  for (int64_t b = 0; b < n; b++) {
    const float *xb = x + b * C * H * W;
    std::memset(loc, 0, K * Cp * sizeof(float));
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++) {
        const int64_t off = ((b * PH + i) * PW + j) * Cout;
        patches4(xb, C, H, W, i, j, K, p);
        for (int64_t c0 = 0; c0 < Cp; c0 += L) {
          const int64_t m = Cout - c0 < L ? Cout - c0 : L;
          float af[L] = {0}, gf[L] = {0};
          int32_t wf[L] = {0};
          std::memcpy(af, a + off + c0, m * sizeof(float));
          std::memcpy(gf, ga + off + c0, m * sizeof(float));
          for (int64_t e = 0; e < m; e++) wf[e] = idx[off + c0 + e];
          v16 av, gv;
          i16 wv;
          std::memcpy(&av, af, sizeof av);
          std::memcpy(&gv, gf, sizeof gv);
          std::memcpy(&wv, wf, sizeof wv);
          gv = av <= zero ? zero : gv;  // threshold_backward(grad, a, 0)
          const v16 g0 = wv == 0 ? gv : zero, g1 = wv == 1 ? gv : zero;
          const v16 g2 = wv == 2 ? gv : zero, g3 = wv == 3 ? gv : zero;
          for (int64_t k = 0; k < K; k++) {
            v16 l;
            std::memcpy(&l, loc + k * Cp + c0, sizeof l);
            l += p[k] * g0 + p[K + k] * g1 + p[2 * K + k] * g2 + p[3 * K + k] * g3;
            std::memcpy(loc + k * Cp + c0, &l, sizeof l);
          }
        }
      }
    for (int64_t e = 0; e < K * Cp; e++) g[e] += loc[e];
  }
}

// conv2 (3x3, stride 1, no padding, 16 output channels per member, grouped by member) + bias + 2x2 max pooling
// + ReLU, for M members that each see their own input channels. Only the conv2 outputs that pooling reads are
// computed (pooling drops the last row and column of an odd-sized output).
//
// Layouts: a1 (n, H, W, M*Ci), the pooled conv1 output in channels_last order; wt (M, K, 16) with K = 9*Ci in
// (ky, kx, ci) order; bias (M, 16); a2 (M, n, 16*PH*PW), each member's output flattened as LeNet flattens it
// (channel, y, x), which is what fc1 reads; idx (n, PH, PW, M, 16): the winning window position, or 4 where
// ReLU is inactive (the pooled value is <= 0, so no gradient flows back).
extern "C" void conv2_pool_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
                                   int64_t n, int64_t H, int64_t W, int64_t M, int64_t Ci) {
  const int64_t K = 9 * Ci, MC = M * Ci, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW;
  const v16 zero = {0};
  const i16 one = splat(1), two = splat(2), three = splat(3), four = splat(4);
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++)
        for (int64_t m = 0; m < M; m++) {
          v16 r0, r1, r2, r3;
          std::memcpy(&r0, bias + m * L, sizeof r0);
          r1 = r0; r2 = r0; r3 = r0;
          const float *w = wt + m * K * L;
          for (int64_t ky = 0; ky < 3; ky++)
            for (int64_t kx = 0; kx < 3; kx++) {
              const float *p = a1 + ((b * H + 2 * i + ky) * W + 2 * j + kx) * MC + m * Ci;
              for (int64_t ci = 0; ci < Ci; ci++, w += L) {
                v16 f;
                std::memcpy(&f, w, sizeof f);
                r0 += p[ci] * f;
                r1 += p[MC + ci] * f;
                r2 += p[W * MC + ci] * f;
                r3 += p[W * MC + MC + ci] * f;
              }
            }
          v16 best = r0;
          i16 won = splat(0), t;
          t = (r1 > best) | (r1 != r1); best = t ? r1 : best; won = t ? one : won;
          t = (r2 > best) | (r2 != r2); best = t ? r2 : best; won = t ? two : won;
          t = (r3 > best) | (r3 != r3); best = t ? r3 : best; won = t ? three : won;
          t = best <= zero;
          best = t ? zero : best;
          won = t ? four : won;
          float *out = a2 + (m * n + b) * L * S + i * PW + j;
          uint8_t *code = idx + (((b * PH + i) * PW + j) * M + m) * L;
          for (int64_t o = 0; o < L; o++) {
            out[o * S] = best[o];
            code[o] = (uint8_t)won[o];
          }
        }
}

// The backward of conv2_pool_forward. ga2 (M, n, 16*PH*PW): the gradient of a2. w (M, 16, Kp): each output
// channel's filter in (ky, kx, ci) order, zero-padded to Kp (a multiple of 16). Writes gwt (M, K, 16) and
// gb (M, 16), the gradients of wt and bias, and da1 (n, H, W, M*Ci), the gradient of a1. scratch: 4*Kp + 16*M*Ci
// floats. Sums run in a fixed order (images, then pooled positions, then members).
extern "C" void conv2_pool_backward(const float *a1, const float *w, const uint8_t *idx, const float *ga2,
                                    float *gwt, float *gb, float *da1, float *scratch, int64_t n, int64_t H,
                                    int64_t W, int64_t M, int64_t Ci, int64_t Kp) {
  const int64_t K = 9 * Ci, MC = M * Ci, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW;
  const v16 zero = {0};
  float *d = scratch;              // (4, Kp): each window position's share of the input gradient
  float *local = scratch + 4 * Kp; // (M, 4, 4, Ci): the 4x4 input block under one pooled position
  std::memset(gwt, 0, M * K * L * sizeof(float));
  std::memset(gb, 0, M * L * sizeof(float));
  std::memset(da1, 0, n * H * W * MC * sizeof(float));
  for (int64_t b = 0; b < n; b++)
    for (int64_t i = 0; i < PH; i++)
      for (int64_t j = 0; j < PW; j++) {
        std::memset(local, 0, M * 16 * Ci * sizeof(float));
        for (int64_t m = 0; m < M; m++) {
          const float *gsrc = ga2 + (m * n + b) * L * S + i * PW + j;
          const uint8_t *code = idx + (((b * PH + i) * PW + j) * M + m) * L;
          v16 gv;
          i16 wv;
          for (int64_t o = 0; o < L; o++) {
            gv[o] = gsrc[o * S];
            wv[o] = code[o];
          }
          const v16 g0 = wv == 0 ? gv : zero, g1 = wv == 1 ? gv : zero;
          const v16 g2 = wv == 2 ? gv : zero, g3 = wv == 3 ? gv : zero;
          v16 bsum;
          std::memcpy(&bsum, gb + m * L, sizeof bsum);
          bsum += (g0 + g1) + (g2 + g3);
          std::memcpy(gb + m * L, &bsum, sizeof bsum);
          // the filters' gradients: each input value times the gradient of the window position it fed
          float *gw = gwt + m * K * L;
          for (int64_t ky = 0; ky < 3; ky++)
            for (int64_t kx = 0; kx < 3; kx++) {
              const float *p = a1 + ((b * H + 2 * i + ky) * W + 2 * j + kx) * MC + m * Ci;
              for (int64_t ci = 0; ci < Ci; ci++, gw += L) {
                v16 acc;
                std::memcpy(&acc, gw, sizeof acc);
                acc += p[ci] * g0 + p[MC + ci] * g1 + p[W * MC + ci] * g2 + p[W * MC + MC + ci] * g3;
                std::memcpy(gw, &acc, sizeof acc);
              }
            }
          // the input's gradient: each output channel's gradient goes to the window position that won it
          std::memset(d, 0, 4 * Kp * sizeof(float));
          const float *wm = w + m * L * Kp;
          for (int64_t o = 0; o < L; o++) {
            if (wv[o] > 3) continue;  // ReLU inactive: no gradient
            float *dst = d + wv[o] * Kp;
            const float g = gv[o];
            const float *f = wm + o * Kp;
            for (int64_t e = 0; e < Kp; e++) dst[e] += g * f[e];
          }
          float *loc = local + m * 16 * Ci;
          for (int64_t o = 0; o < 4; o++) {
            const int64_t dy = o >> 1, dx = o & 1;
            for (int64_t ky = 0; ky < 3; ky++) {
              float *row = loc + ((dy + ky) * 4 + dx) * Ci;
              const float *src = d + o * Kp + ky * 3 * Ci;
              for (int64_t e = 0; e < 3 * Ci; e++) row[e] += src[e];
            }
          }
        }
        for (int64_t r = 0; r < 4; r++)
          for (int64_t c = 0; c < 4; c++) {
            float *dst = da1 + ((b * H + 2 * i + r) * W + 2 * j + c) * MC;
            for (int64_t m = 0; m < M; m++) {
              const float *src = local + ((m * 4 + r) * 4 + c) * Ci;
              for (int64_t ci = 0; ci < Ci; ci++) dst[m * Ci + ci] += src[ci];
            }
          }
      }
}
