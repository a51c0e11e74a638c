// The population step's conv2 (kernels.conv2_pool_forward/backward; called by lenet_convs.Fused): each member's own
// 3x3 convolution of its pooled conv1 output (16 output channels), bias, 2x2 max pooling, ReLU, with conv1.cpp's
// pooling and winners. The members on the tap kernels (conv2_taps.cpp) are handed to them.
#include "kernels.h"

// conv2 (3x3, stride 1, no padding, 16 output channels per member, grouped by member) + bias + 2x2 max pooling
// + ReLU, for M members that each see their own input channels. Only the conv2 outputs that pooling reads are
// computed (pooling drops the last row and column of an odd-sized output).
//
// Layouts: a1 (n, H, W, M*Ci), the pooled conv1 output in channels_last order; wt (M, K, 16) with K = 9*Ci in
// (ky, kx, ci) order; bias (M, 16); a2 (M, n, 16*PH*PW), each member's output flattened as LeNet flattens it
// (channel, y, x), which is what fc1 reads; idx (n, PH, PW, M, 16): the winning window position, or 4 where
// ReLU is inactive (the pooled value is <= 0, so no gradient flows back).
template <int CI>  // as in conv2_backward
static void conv2_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
                          const int64_t *op, int64_t n, int64_t H, int64_t W, int64_t CS, int64_t M, int64_t ci_any,
                          int64_t threads) {
  parallel(n, threads, [=](int64_t b0, int64_t b1) {  // by image
    const int64_t Ci = CI ? CI : ci_any;
    const int64_t K = 9 * Ci, MC = CS, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW;
    for (int64_t b = b0; b < b1; b++)
      for (int64_t i = 0; i < PH; i++)
        for (int64_t j = 0; j < PW; j++)
          for (int64_t m = 0; m < M; m++) {
            if (on_taps(op, m)) continue;  // computed by conv2_taps_forward
            v16 r0, r1, r2, r3;
            ld(r0, bias + m * L);
            r1 = r0; r2 = r0; r3 = r0;
            const float *w = wt + m * K * L;
            for (int64_t ky = 0; ky < 3; ky++)
              for (int64_t kx = 0; kx < 3; kx++) {
                const float *p = a1 + ((b * H + 2 * i + ky) * W + 2 * j + kx) * MC + m * Ci;
                for (int64_t ci = 0; ci < Ci; ci++, w += L) {
                  v16 f;
                  ld(f, w);
                  r0 += p[ci] * f;
                  r1 += p[MC + ci] * f;
                  r2 += p[W * MC + ci] * f;
                  r3 += p[W * MC + MC + ci] * f;
                }
              }
            v16 best;
            i16 won;
            pool_relu(r0, r1, r2, r3, best, won);
            float *out = a2 + (m * n + b) * L * S + i * PW + j;
            uint8_t *code = idx + (((b * PH + i) * PW + j) * M + m) * L;
            for (int64_t o = 0; o < L; o++) {
              out[o * S] = best[o];
              code[o] = (uint8_t)won[o];
            }
          }
  });
}

extern "C" void conv2_pool_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
                                   const int64_t *op, const int32_t *taps, float *acache, int64_t n, int64_t H,
                                   int64_t W, int64_t CS, int64_t M, int64_t Ci, int64_t threads) {
  if (Ci == 6)
    conv2_forward<6>(a1, wt, bias, a2, idx, op, n, H, W, CS, M, Ci, threads);
  else
    conv2_forward<0>(a1, wt, bias, a2, idx, op, n, H, W, CS, M, Ci, threads);
  if (op) conv2_taps_forward(a1, wt, bias, a2, idx, op, taps, acache, n, H, W, CS, M, Ci, threads);
}

// The backward of conv2_pool_forward. ga2 (M, n, 16*PH*PW): the gradient of a2. wx (M, 5, 16, 16*Ci): for each
// member, winning window position (4: none) and output channel, the filter placed where that position reads
// the 4x4 input block under a pooled value, in (row, column, ci) order (zeros elsewhere, all zeros for 4).
// Writes gwt (M, K, 16) and gb (M, 16), the gradients of wt and bias, and da1 (n, H, W, M*Ci), the gradient of
// a1; dam (M, n, H, W, Ci) is a scratch in which each member's input gradient is summed before da1 is
// written. Sums run in a fixed order (images, pooled positions, members, output channels). Ci <= 16.
template <int CI>  // CI > 0: the number of input channels per member, known when compiling (LeNet: 6); 0: any
static void conv2_backward(const float *a1, const float *wx, const float *wt, const uint8_t *idx, const float *ga2,
                           float *gwt, float *gb, float *da1, float *dam, const int64_t *op, const int32_t *taps,
                           const float *acache, int64_t n, int64_t H, int64_t W, int64_t CS, int64_t M, int64_t ci_any, int64_t threads) {
  const int64_t Ci = CI ? CI : ci_any;
  parallel(M, threads, [=](int64_t m0, int64_t m1) {  // by member
    const int64_t K = 9 * Ci, MC = CS, PH = (H - 2) / 2, PW = (W - 2) / 2, S = PH * PW, B = 16 * Ci;
    const v16 zero = {0};
    std::memset(gwt + m0 * K * L, 0, (m1 - m0) * K * L * sizeof(float));
    std::memset(gb + m0 * L, 0, (m1 - m0) * L * sizeof(float));
    for (int64_t m = m0; m < m1; m++)
      if (!on_taps(op, m)) std::memset(dam + m * n * H * W * Ci, 0, n * H * W * Ci * sizeof(float));
    for (int64_t m = m0; m < m1; m++)  // member by member: its filters and gradients stay in the L1 cache
      if (on_taps(op, m))
        conv2_taps_backward_member(a1, wt, idx, ga2, gwt, gb, da1, op + m * (L + 1), taps, acache, m, n, H, W, CS,
                                   M, Ci);
      else
      for (int64_t b = 0; b < n; b++)
        for (int64_t i = 0; i < PH; i++)
          for (int64_t j = 0; j < PW; j++) {
            const float *gsrc = ga2 + (m * n + b) * L * S + i * PW + j;
            const uint8_t *code = idx + (((b * PH + i) * PW + j) * M + m) * L;
            const v16 gv = strided16(gsrc, S);
            u16 c8;
            ld(c8, code);
            const i16 wv = widen(c8);
            const v16 live = sel(lt(wv, splat(4)), gv, zero);  // the gradient where ReLU is active, 0 elsewhere
            v16 bsum;
            ld(bsum, gb + m * L);
            bsum += live;
            st(gb + m * L, bsum);
            // the filters' gradients: each input value times the gradient of the window position it fed
            float *gw = gwt + m * K * L;
            for (int64_t ky = 0; ky < 3; ky++)
              for (int64_t kx = 0; kx < 3; kx++) {
                const float *p = a1 + ((b * H + 2 * i + ky) * W + 2 * j + kx) * MC + m * Ci;
                for (int64_t ci = 0; ci < Ci; ci++, gw += L) {
                  v16 acc, val = p[ci] + zero;  // each lane: the input value at the position that won it
                  val = sel(eq(wv, splat(1)), p[MC + ci] + zero, val);
                  val = sel(eq(wv, splat(2)), p[W * MC + ci] + zero, val);
                  val = sel(eq(wv, splat(3)), p[W * MC + MC + ci] + zero, val);
                  ld(acc, gw);
                  acc += live * val;
                  st(gw, acc);
                }
              }
            // the input's gradient over the 4x4 block: each output channel's gradient times its filter, placed
            // at the window position that won it
            v16 loc[CI ? CI : 16], odd[CI ? CI : 16];  // even and odd output channels: shorter chains
            for (int64_t v = 0; v < Ci; v++) loc[v] = odd[v] = zero;
            const float *wm = wx + m * 5 * L * B;
            for (int64_t o = 0; o < L; o += 2) {
              const float g = live[o], h = live[o + 1];
              const float *f = wm + (wv[o] * L + o) * B, *e = wm + (wv[o + 1] * L + o + 1) * B;
              for (int64_t v = 0; v < Ci; v++) {
                v16 fv, ev;
                ld(fv, f + v * L);
                ld(ev, e + v * L);
                loc[v] += g * fv;
                odd[v] += h * ev;
              }
            }
            for (int64_t v = 0; v < Ci; v++) loc[v] += odd[v];
            const float *src = (const float *)loc;
            for (int64_t r = 0; r < 4; r++) {
              float *dst = dam + (((m * n + b) * H + 2 * i + r) * W + 2 * j) * Ci;
              for (int64_t e = 0; e < 4 * Ci; e++) dst[e] += src[r * 4 * Ci + e];
            }
          }
  });
  parallel(n, threads, [=](int64_t b0, int64_t b1) {  // da1 from dam, by image
    for (int64_t b = b0; b < b1; b++)
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++) {
          float *dst = da1 + ((b * H + y) * W + x) * CS;
          for (int64_t m = 0; m < M; m++)
            if (!on_taps(op, m))  // a member on the tap kernels wrote its channels itself
              std::memcpy(dst + m * Ci, dam + (((m * n + b) * H + y) * W + x) * Ci, Ci * sizeof(float));
          for (int64_t c = M * Ci; c < CS; c++) dst[c] = 0.0f;  // the padding channels
        }
  });
}

extern "C" void conv2_pool_backward(const float *a1, const float *wx, const float *wt, const uint8_t *idx,
                                    const float *ga2, float *gwt, float *gb, float *da1, float *dam,
                                    const int64_t *op, const int32_t *taps, const float *acache, int64_t n,
                                    int64_t H, int64_t W, int64_t CS, int64_t M, int64_t Ci, int64_t threads) {
  if (Ci == 6)
    conv2_backward<6>(a1, wx, wt, idx, ga2, gwt, gb, da1, dam, op, taps, acache, n, H, W, CS, M, Ci, threads);
  else
    conv2_backward<0>(a1, wx, wt, idx, ga2, gwt, gb, da1, dam, op, taps, acache, n, H, W, CS, M, Ci, threads);
}
