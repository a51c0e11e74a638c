// Whole members on the sparse path (issue 19; members.Members calls it). One call trains every such member for one
// step: forward, loss, backward and the SGD update, each member by one thread, over its surviving weights only.
//
// Layout: every activation of a member is (units, NP), the batch in the columns (NP = n rounded up to 16), so one
// SIMD vector holds one unit of 16 images, from the input to the logits: no layer moves data between layouts
// (what made per-layer sparse kernels pay a fixed cost as large as the arithmetic at LeNet's sizes). Each layer's
// surviving weights are a CSR over its weight viewed as (out, in): rows are output channels or units, columns
// the flat index of a conv tap (ci*9 + ky*3 + kx) or a linear input; rowptr (S, O+1) int64 holds offsets into the
// layer's cols (int32), each row's columns increasing. So a conv layer's cost is its surviving taps times the
// positions, a linear layer's its surviving weights, a pruned filter or unit costs its bias, for unstructured and
// structured masks alike; per step a member also pays its pooling, ReLUs, the loss and the bias updates.
//
// conv: 3x3, stride 1, no padding, then 2x2 max pooling (conv rows and columns past 2*(H-2)/2 are not computed:
// pooling drops them) and ReLU (pool_relu: the winner, 4 where inactive). The forward sums start from the bias
// and add the taps in increasing order, one multiply-add each; the gradients sum over images, then positions in
// a fixed order, then a fixed tree across the 16 lanes (hsum). Padding lanes (images >= n) get a zero gradient at
// the loss, so they add exact zeros. Same values as the dense step up to float rounding; the bits depend on the
// member's own mask and values only, not on the thread count or the other members.
//
// What made it fast (2026-12-03, AMD EPYC with AVX-512, each measured side by side against the step before, per
// member at the paper population's masks of iterations 2-10): the linear layers' weight gradients reduced 16 at a
// time (hsum16) and their input gradients summed input by input from a CSC instead of read-modify-writes, 1.16-1.37x;
// the conv taps' offsets and weights listed once per step and the conv weight gradient in four chains instead of
// one, 1.03-1.18x; register blocks of 5 pooled columns, so no block of one, 1.01-1.08x; dense multiplies for linear
// layers above 25% density, 1.04-1.16x; the conv loops compiled for a batch of 32 and LeNet's row lengths (constant
// displacements instead of addresses spilled to the stack), 1.09-1.35x.
#include "kernels.h"

static void mk_relu_backward(float *g, const float *a, int64_t n) {  // g = a > 0 ? g : 0, as threshold_backward
  const v16 zero = {0};
  for (int64_t i = 0; i < n; i += L) {
    v16 gv, av;
    ld(gv, g + i);
    ld(av, a + i);
    gv = sel(gt(av, zero), gv, zero);
    st(g + i, gv);
  }
}

struct MemberScratch {  // one thread's buffers, kept between calls
  std::vector<float> act[5], grad[5], gv[5];
  std::vector<uint8_t> code[2];
  std::vector<v16> gacc, gbias;
  std::vector<float> gbs[5];  // the biases' gradients
  std::vector<float> tw[2];  // the conv layers' taps (mk_taps)
  std::vector<int64_t> toff[2];
};

static MemberScratch &member_scratch() {
  static thread_local MemberScratch sc;
  return sc;
}

// The SGD update of one parameter's surviving entries (idx: their flat indices, or all n if null), as masked_sgd
// does it (torch.optim.SGD's order of operations and roundings). grad[j] belongs to entry idx[j] (or j).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
static void mk_sgd(float *p, const float *grad, float *buf, const int64_t *rp, const int32_t *cols, int64_t K,
                   int64_t n, float lr, float momentum, float wd, bool first) {
  const int64_t t00 = rp ? rp[0] : 0;
  auto one = [&](int64_t i, float g) {
    if (wd != 0.0f) g = __builtin_fmaf(p[i], wd, g);
    if (buf) {
      if (!first) g = buf[i] * momentum + g;
      buf[i] = g;
    }
    p[i] = __builtin_fmaf(g, -lr, p[i]);
  };
  if (!rp) {
    for (int64_t i = 0; i < n; i++) one(i, grad[i]);
    return;
  }
  for (int64_t o = 0; o < n; o++)
    for (int64_t t = rp[o]; t < rp[o + 1]; t++) one(o * K + cols[t], grad[t - t00]);
}
#pragma GCC pop_options

// Member s's weights, biases and rowptrs per layer, out of the S members' stacked arrays.
struct MemberView {
  const float *w[5], *b[5];
  const int64_t *r[5];
  MemberView(float *const *w_, float *const *b_, const int64_t *const *rp, const int64_t *O, const int64_t *K,
             int64_t s) {
    for (int l = 0; l < 5; l++) {
      w[l] = w_[l] + s * O[l] * K[l];
      b[l] = b_[l] + s * O[l];
      r[l] = rp[l] + s * (O[l] + 1);
    }
  }
};

// A member's forward pass (member_step's and member_logits'): xt (C*H*W, NP) the batch, images in the columns;
// the activations into sc.act (the logits (O4, NP) in sc.act[4]), conv winners into sc.code, the conv taps into
// sc.tw and sc.toff. ws, bs, r: this member's weights, biases and rowptrs per layer.
static void mk_member_forward(MemberScratch &sc, const float *xt, int64_t NP, const int64_t *dims,
                              const float *const *ws, const float *const *bs, const int64_t *const *r,
                              const int32_t *const *cols) {
  const int64_t H = dims[1], W = dims[2];
  const int64_t *O = dims + 3, *K = dims + 8;
  const int64_t H1 = (H - 2) / 2, W1 = (W - 2) / 2, H2 = (H1 - 2) / 2, W2 = (W1 - 2) / 2;
  const int64_t units[5] = {O[0] * H1 * W1, O[1] * H2 * W2, O[2], O[3], O[4]};
  for (int l = 0; l < 5; l++) sc.act[l].resize(units[l] * NP);
  sc.code[0].resize(units[0] * NP);
  sc.code[1].resize(units[1] * NP);
  const int64_t ch[2] = {H, H1}, cw[2] = {W, W1};
  for (int l = 0; l < 2; l++) {
    const int64_t nnz = std::max<int64_t>(r[l][O[l]] - r[l][0], 1);
    sc.tw[l].resize(nnz);
    sc.toff[l].resize(nnz);
    mk_taps(ws[l], O[l], K[l], ch[l], cw[l], NP, r[l], cols[l], sc.tw[l].data(), sc.toff[l].data());
  }
  float *a1 = sc.act[0].data(), *a2 = sc.act[1].data(), *h1 = sc.act[2].data(), *h2 = sc.act[3].data(),
        *z = sc.act[4].data();
  mk_conv_forward(xt, H, W, NP, sc.tw[0].data(), sc.toff[0].data(), bs[0], O[0], r[0], a1, sc.code[0].data());
  mk_conv_forward(a1, H1, W1, NP, sc.tw[1].data(), sc.toff[1].data(), bs[1], O[1], r[1], a2, sc.code[1].data());
  mk_linear_forward(a2, NP, ws[2], bs[2], O[2], K[2], r[2], cols[2], h1, true);
  mk_linear_forward(h1, NP, ws[3], bs[3], O[3], K[3], r[3], cols[3], h2, true);
  mk_linear_forward(h2, NP, ws[4], bs[4], O[4], K[4], r[4], cols[4], z, false);
}

// x rows b0 .. b0+nb-1 of (n, C*H*W) into xt (C*H*W, NP), the images in the columns, padding lanes 0
static void mk_transpose_batch(const float *x, int64_t b0, int64_t nb, int64_t CHW, int64_t NP, float *xt) {
  for (int64_t u = 0; u < CHW; u++) {
    for (int64_t i = 0; i < nb; i++) xt[u * NP + i] = x[(b0 + i) * CHW + u];
    for (int64_t i = nb; i < NP; i++) xt[u * NP + i] = 0.0f;
  }
}

// The logits (S, n, O4) of S members on x (n, C, H, W), 32 images at a time (evaluation; members.Members.logits):
// each member's forward pass as in member_step, so the same values as its training step computes. xt: scratch
// (C*H*W, 32).
extern "C" void member_logits(const float *x, int64_t n, const int64_t *dims, float *const *w, float *const *b,
                              const int64_t *const *rp, const int32_t *const *cols, float *xt, float *out, int64_t S,
                              int64_t threads) {
  const int64_t CHW = dims[0] * dims[1] * dims[2], NP = 2 * L, O4 = dims[7];
  const int64_t *O = dims + 3, *K = dims + 8;
  for (int64_t b0 = 0; b0 < n; b0 += NP) {
    const int64_t nb = std::min(NP, n - b0);
    mk_transpose_batch(x, b0, nb, CHW, NP, xt);
    parallel(S, threads, [=](int64_t s0, int64_t s1) {
      MemberScratch &sc = member_scratch();
      for (int64_t s = s0; s < s1; s++) {
        const MemberView v(w, b, rp, O, K, s);
        mk_member_forward(sc, xt, NP, dims, v.w, v.b, v.r, cols);
        const float *z = sc.act[4].data();
        for (int64_t i = 0; i < nb; i++)
          for (int64_t j = 0; j < O4; j++) out[(s * n + b0 + i) * O4 + j] = z[j * NP + i];
      }
    });
  }
}

// x (n, C, H, W), y (n) int64; dims: C, H, W, then (O, K) of conv1, conv2, fc1, fc2, fc3. w, b, bw, bb: per layer,
// the S members' stacked weights (S, O, K), biases (S, O) and their momentum buffers (null without momentum);
// rp, cols: per layer, rowptr (S, O+1) and cols; cp, rows: the linear layers' CSC (index 2-4; colptr (S, K+1) and
// rows). xt: scratch (C*H*W, NP). loss (S): each member's mean loss.
extern "C" void member_step(const float *x, const int64_t *y, int64_t n, const int64_t *dims, float *const *w,
                            float *const *b, float *const *bw, float *const *bb, const int64_t *const *rp,
                            const int32_t *const *cols, const int64_t *const *cp, const int32_t *const *rows,
                            float *xt, float *loss, int64_t S, float lr, float momentum, float wd, int64_t first,
                            int64_t threads) {
  const int64_t C = dims[0], H = dims[1], W = dims[2];
  const int64_t *O = dims + 3, *K = dims + 8;
  const int64_t NP = (n + L - 1) / L * L, HW = H * W;
  const int64_t H1 = (H - 2) / 2, W1 = (W - 2) / 2, H2 = (H1 - 2) / 2, W2 = (W1 - 2) / 2;
  mk_transpose_batch(x, 0, n, C * HW, NP, xt);  // the shared batch, images in the columns
  const int64_t units[5] = {O[0] * H1 * W1, O[1] * H2 * W2, O[2], O[3], O[4]};
  parallel(S, threads, [=](int64_t s0, int64_t s1) {
    MemberScratch &sc = member_scratch();
    for (int l = 0; l < 5; l++) sc.grad[l].resize(units[l] * NP);
    for (int64_t s = s0; s < s1; s++) {
      const MemberView v(w, b, rp, O, K, s);
      const float *const *ws = v.w;
      const int64_t *const *r = v.r;
      for (int l = 0; l < 5; l++) sc.gv[l].resize(std::max<int64_t>(r[l][O[l]] - r[l][0], 1));
      mk_member_forward(sc, xt, NP, dims, v.w, v.b, v.r, cols);
      float *a1 = sc.act[0].data(), *a2 = sc.act[1].data(), *h1 = sc.act[2].data(), *h2 = sc.act[3].data(),
            *z = sc.act[4].data();
      float *g1 = sc.grad[0].data(), *g2 = sc.grad[1].data(), *gh1 = sc.grad[2].data(), *gh2 = sc.grad[3].data(),
            *gz = sc.grad[4].data();
      // mean cross-entropy per member, as log_softmax: z - max - log(sum(exp(z - max))); its gradient
      // (softmax - one-hot) / n, 0 in the padding lanes
      float total = 0.0f;
      for (int64_t i = 0; i < NP; i++) {
        if (i >= n) {
          for (int64_t j = 0; j < O[4]; j++) gz[j * NP + i] = 0.0f;
          continue;
        }
        float mx = z[i];
        for (int64_t j = 1; j < O[4]; j++) mx = std::max(mx, z[j * NP + i]);
        float sum = 0.0f;
        for (int64_t j = 0; j < O[4]; j++) sum += std::exp(z[j * NP + i] - mx);
        const float lse = std::log(sum);
        for (int64_t j = 0; j < O[4]; j++) {
          const float lp = z[j * NP + i] - mx - lse;
          if (j == y[i]) total -= lp;
          gz[j * NP + i] = (std::exp(lp) - (j == y[i] ? 1.0f : 0.0f)) / (float)n;
        }
      }
      loss[s] = total / (float)n;
      // backward: the gradients of surviving weights into sc.gv, of biases into gbs
      std::vector<float> *gbs = sc.gbs;
      for (int l = 0; l < 5; l++) gbs[l].assign(O[l], 0.0f);
      const int64_t *c[5];
      for (int l = 2; l < 5; l++) c[l] = cp[l] + s * (K[l] + 1);
      mk_linear_backward(h2, NP, ws[4], O[4], K[4], r[4], cols[4], c[4], rows[4], gz, sc.gv[4].data(), gbs[4].data(),
                         gh2);
      mk_relu_backward(gh2, h2, units[3] * NP);
      mk_linear_backward(h1, NP, ws[3], O[3], K[3], r[3], cols[3], c[3], rows[3], gh2, sc.gv[3].data(), gbs[3].data(),
                         gh1);
      mk_relu_backward(gh1, h1, units[2] * NP);
      mk_linear_backward(a2, NP, ws[2], O[2], K[2], r[2], cols[2], c[2], rows[2], gh1, sc.gv[2].data(), gbs[2].data(),
                         g2);
      // conv2 (its input gradient g1), then conv1 (no input gradient)
      for (int l = 1; l >= 0; l--) {
        const int64_t nnz = r[l][O[l]] - r[l][0];
        sc.gacc.assign(std::max<int64_t>(nnz, 1), v16{0});
        sc.gbias.assign(O[l], v16{0});
        if (l == 1) {
          std::fill(g1, g1 + units[0] * NP, 0.0f);
          mk_conv_backward(a1, H1, W1, NP, sc.tw[1].data(), sc.toff[1].data(), O[1], r[1], g2, sc.code[1].data(),
                           sc.gacc.data(), sc.gbias.data(), g1);
        } else {
          mk_conv_backward(xt, H, W, NP, sc.tw[0].data(), sc.toff[0].data(), O[0], r[0], g1, sc.code[0].data(),
                           sc.gacc.data(), sc.gbias.data(), nullptr);
        }
        for (int64_t t = 0; t < nnz; t++) sc.gv[l][t] = hsum(sc.gacc[t]);
        for (int64_t o = 0; o < O[l]; o++) gbs[l][o] = hsum(sc.gbias[o]);
      }
      // the update: surviving weights and every bias
      for (int l = 0; l < 5; l++) {
        mk_sgd(w[l] + s * O[l] * K[l], sc.gv[l].data(), bw[l] ? bw[l] + s * O[l] * K[l] : nullptr, r[l], cols[l],
               K[l], O[l], lr, momentum, wd, first);
        mk_sgd(b[l] + s * O[l], gbs[l].data(), bb[l] ? bb[l] + s * O[l] : nullptr, nullptr, nullptr, 0, O[l], lr,
               momentum, wd, first);
      }
    }
  });
}
