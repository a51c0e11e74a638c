// A whole member's conv layers, its batch in the SIMD lanes (see member_step.cpp): forward over the surviving taps,
// pooling and ReLU; backward into the taps', biases' and (conv2) input's gradients.
#include "kernels.h"

// Pooled columns per register block (2 per pooled column x 2 conv rows accumulators): 4, or 5 where that ends a row
// (LeNet's conv2 rows are 5 pooled columns, conv1's 13 = 4 + 4 + 5), so no block of one is left; AVX2 half that.
#ifdef __AVX512F__
static const int64_t MK_PB = 5;  // the largest block
static inline int64_t mk_block(int64_t left) { return left == 5 ? 5 : std::min<int64_t>(left, 4); }
#else
static const int64_t MK_PB = 2;
static inline int64_t mk_block(int64_t left) { return std::min<int64_t>(left, 2); }
#endif

// A conv layer's surviving taps as the kernels read them, built per step from the CSR (rp, cols) and the weights w
// (O, K): wv[t] the tap's weight, toff[t] its offset ((ci*H + ky)*W + kx)*NP in the input (Ci*H*W, NP), t counted
// from rp[0]. So the inner loops do no index arithmetic.
void mk_taps(const float *w, int64_t O, int64_t K, int64_t H, int64_t W, int64_t NP, const int64_t *rp,
                    const int32_t *cols, float *wv, int64_t *toff) {
  const int64_t t00 = rp[0];
  for (int64_t o = 0; o < O; o++)
    for (int64_t t = rp[o]; t < rp[o + 1]; t++) {
      const int64_t k = cols[t], ci = k / 9, r = k - ci * 9, ky = r / 3, kx = r - ky * 3;
      wv[t - t00] = w[o * K + k];
      toff[t - t00] = ((ci * H + ky) * W + kx) * NP;
    }
}

// One output channel at PB pooled positions of one pooled row (2*PB conv columns of 2 conv rows, 16 images): the
// sums start from the bias and add the taps in order, one multiply-add each; then pooling and ReLU. base: the
// input at the block's first conv position (lanes c0..), RS: one input row.
template <int PB, int NPC, int WC>  // NPC, WC > 0: NP and W known when compiling (constant displacements)
static inline void mk_conv_block(const float *base, int64_t RS_, int64_t NP_, const float *wv, const int64_t *toff,
                                 int64_t nt, float bias, v16 *best, i16 *won) {
  const int64_t NP = NPC ? NPC : NP_, RS = WC ? WC * NP : RS_;
  const v16 zero = {0};
  v16 top[2 * PB], bot[2 * PB];
  for (int x = 0; x < 2 * PB; x++) top[x] = bot[x] = bias + zero;
  for (int64_t t = 0; t < nt; t++) {
    const float f = wv[t];
    const float *src = base + toff[t];
    for (int x = 0; x < 2 * PB; x++) {
      v16 p0, p1;
      ld(p0, src + x * NP);
      ld(p1, src + RS + x * NP);
      top[x] += p0 * f;
      bot[x] += p1 * f;
    }
  }
  for (int px = 0; px < PB; px++) pool_relu(top[2 * px], top[2 * px + 1], bot[2 * px], bot[2 * px + 1], best[px], won[px]);
}

// in (Ci*H*W, NP) -> out (Co*PH*PW, NP) pooled and ReLU'd, code: the winners; wv, toff from mk_taps
template <int NPC, int WC>
static void mk_conv_forward_t(const float *in, int64_t H, int64_t W_, int64_t NP_, const float *wv, const int64_t *toff,
                              const float *b, int64_t Co, const int64_t *rp, float *out, uint8_t *code) {
  const int64_t NP = NPC ? NPC : NP_, W = WC ? WC : W_;
  const int64_t PH = (H - 2) / 2, PW = (W - 2) / 2, RS = W * NP, t00 = rp[0];
  for (int64_t c0 = 0; c0 < NP; c0 += L)
    for (int64_t o = 0; o < Co; o++) {
      const int64_t t0 = rp[o] - t00, nt = rp[o + 1] - rp[o];
      for (int64_t py = 0; py < PH; py++) {
        for (int64_t px0 = 0; px0 < PW;) {
          const int64_t np = mk_block(PW - px0);
          const float *base = in + (2 * py * W + 2 * px0) * NP + c0;
          v16 best[MK_PB];
          i16 won[MK_PB];
          switch (np) {
            case 1: mk_conv_block<1, NPC, WC>(base, RS, NP, wv + t0, toff + t0, nt, b[o], best, won); break;
            case 2: mk_conv_block<2, NPC, WC>(base, RS, NP, wv + t0, toff + t0, nt, b[o], best, won); break;
#ifdef __AVX512F__
            case 3: mk_conv_block<3, NPC, WC>(base, RS, NP, wv + t0, toff + t0, nt, b[o], best, won); break;
            case 4: mk_conv_block<4, NPC, WC>(base, RS, NP, wv + t0, toff + t0, nt, b[o], best, won); break;
            case 5: mk_conv_block<5, NPC, WC>(base, RS, NP, wv + t0, toff + t0, nt, b[o], best, won); break;
#endif
          }
          for (int64_t px = 0; px < np; px++) {
            const int64_t row = (o * PH + py) * PW + px0 + px;
            const u16 w8 = narrow(won[px]);
            st(out + row * NP + c0, best[px]);
            st(code + row * NP + c0, w8);
          }
          px0 += np;
        }
      }
    }
}

// Its backward from gout (Co*PH*PW, NP), the gradient of out: gacc (one vector per tap, zeroed by the caller) and
// gbias (Co vectors, zeroed) summed over the images' lanes, and gin (Ci*H*W, NP; zeroed by the caller) if not null.
// Per block of pooled positions a tap's gradient is summed in four chains (top and bottom conv row, even and odd
// column), added as (top even + top odd) + (bottom even + bottom odd), then to the tap's running sum.
template <int PB, int NPC, int WC>
static inline void mk_conv_back_block(const float *base, float *gbase, int64_t RS_, int64_t NP_, const float *wv,
                                      const int64_t *toff, int64_t nt, const v16 *dtop, const v16 *dbot, v16 *gacc) {
  const int64_t NP = NPC ? NPC : NP_, RS = WC ? WC * NP : RS_;
  const v16 zero = {0};
  for (int64_t t = 0; t < nt; t++) {
    const float *src = base + toff[t];
    v16 s[4] = {zero, zero, zero, zero};
    for (int x = 0; x < 2 * PB; x++) {
      v16 p0, p1;
      ld(p0, src + x * NP);
      ld(p1, src + RS + x * NP);
      s[x & 1] += dtop[x] * p0;
      s[2 + (x & 1)] += dbot[x] * p1;
    }
    gacc[t] += (s[0] + s[1]) + (s[2] + s[3]);
    if (gbase) {
      const float f = wv[t];
      float *dst = gbase + toff[t];
      for (int x = 0; x < 2 * PB; x++) {
        v16 q0, q1;
        ld(q0, dst + x * NP);
        ld(q1, dst + RS + x * NP);
        q0 += f * dtop[x];
        q1 += f * dbot[x];
        st(dst + x * NP, q0);
        st(dst + RS + x * NP, q1);
      }
    }
  }
}

template <int NPC, int WC>
static void mk_conv_backward_t(const float *in, int64_t H, int64_t W_, int64_t NP_, const float *wv, const int64_t *toff,
                               int64_t Co, const int64_t *rp, const float *gout, const uint8_t *code, v16 *gacc,
                               v16 *gbias, float *gin) {
  const int64_t NP = NPC ? NPC : NP_, W = WC ? WC : W_;
  const int64_t PH = (H - 2) / 2, PW = (W - 2) / 2, RS = W * NP, t00 = rp[0];
  const v16 zero = {0};
  const i16 one = splat(1), two = splat(2), three = splat(3), four = splat(4);
  for (int64_t c0 = 0; c0 < NP; c0 += L)
    for (int64_t o = 0; o < Co; o++) {
      const int64_t t0 = rp[o] - t00, nt = rp[o + 1] - rp[o];
      v16 bacc = gbias[o];
      for (int64_t py = 0; py < PH; py++)
        for (int64_t px0 = 0; px0 < PW;) {
          const int64_t np = mk_block(PW - px0);
          v16 dtop[2 * MK_PB], dbot[2 * MK_PB];
          for (int64_t px = 0; px < np; px++) {
            const int64_t row = (o * PH + py) * PW + px0 + px;
            v16 g;
            u16 c8;
            ld(g, gout + row * NP + c0);
            ld(c8, code + row * NP + c0);
            const i16 c = widen(c8);
            bacc += sel(lt(c, four), g, zero);
            dtop[2 * px] = sel(eq(c, splat(0)), g, zero);
            dtop[2 * px + 1] = sel(eq(c, one), g, zero);
            dbot[2 * px] = sel(eq(c, two), g, zero);
            dbot[2 * px + 1] = sel(eq(c, three), g, zero);
          }
          const int64_t off = (2 * py * W + 2 * px0) * NP + c0;
          const float *src = in + off;
          float *gb = gin ? gin + off : nullptr;
          switch (np) {
            case 1: mk_conv_back_block<1, NPC, WC>(src, gb, RS, NP, wv + t0, toff + t0, nt, dtop, dbot, gacc + t0); break;
            case 2: mk_conv_back_block<2, NPC, WC>(src, gb, RS, NP, wv + t0, toff + t0, nt, dtop, dbot, gacc + t0); break;
#ifdef __AVX512F__
            case 3: mk_conv_back_block<3, NPC, WC>(src, gb, RS, NP, wv + t0, toff + t0, nt, dtop, dbot, gacc + t0); break;
            case 4: mk_conv_back_block<4, NPC, WC>(src, gb, RS, NP, wv + t0, toff + t0, nt, dtop, dbot, gacc + t0); break;
            case 5: mk_conv_back_block<5, NPC, WC>(src, gb, RS, NP, wv + t0, toff + t0, nt, dtop, dbot, gacc + t0); break;
#endif
          }
          px0 += np;
        }
      gbias[o] = bacc;
    }
}

// LeNet on MNIST with a batch of 32: NP = 32 and rows of 28 (conv1) or 13 (conv2) known when compiling.
void mk_conv_forward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv, const int64_t *toff,
                            const float *b, int64_t Co, const int64_t *rp, float *out, uint8_t *code) {
  if (NP == 2 * L && W == 28)
    mk_conv_forward_t<2 * L, 28>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
  else if (NP == 2 * L && W == 13)
    mk_conv_forward_t<2 * L, 13>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
  else
    mk_conv_forward_t<0, 0>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
}

void mk_conv_backward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv, const int64_t *toff,
                             int64_t Co, const int64_t *rp, const float *gout, const uint8_t *code, v16 *gacc,
                             v16 *gbias, float *gin) {
  if (NP == 2 * L && W == 28)
    mk_conv_backward_t<2 * L, 28>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
  else if (NP == 2 * L && W == 13)
    mk_conv_backward_t<2 * L, 13>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
  else
    mk_conv_backward_t<0, 0>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
}
