// Sparse linear layers: y = x W^T + b for the members whose mask is sparse enough, reading only the surviving
// weights. The weights stay in their dense (M, OUT, IN) tensor; a member's surviving entries are listed row by
// row (CSR without values: rowptr (OUT + 1) offsets into cols, the column of each surviving weight in
// increasing order), built once from its mask. members (nm): which slots of the population take this path;
// rowptr (nm, OUT + 1) holds offsets into the one cols array of all of them.
//
// Each member is computed on its own by one thread, in a fixed order, so its bits depend on its own mask and
// values only (not on the other members, the path they take, or the thread count). x (M, n, IN), y (M, n, OUT),
// b (M, OUT). The batch is a SIMD vector: the activations are transposed to (IN, 32) per chunk of 32 images, and
// each output sum starts at 0, adds the surviving terms in column order, then the bias.
#include "kernels.h"

extern "C" void linear_sparse_forward(const float *x, const float *w, const float *bias, float *y,
                                      const int64_t *members, const int64_t *rowptr, const int32_t *cols, int64_t nm,
                                      int64_t n, int64_t IN, int64_t OUT, int64_t threads) {
  parallel(nm, threads, [=](int64_t s0, int64_t s1) {  // by member
    const int64_t NP = 2 * L;
    std::vector<float> xt(IN * NP), yt(OUT * NP);
    float *xT = xt.data(), *yT = yt.data();
    const v16 zero = {0};
    for (int64_t s = s0; s < s1; s++) {
      const int64_t m = members[s];
      const float *xs = x + m * n * IN, *ws = w + m * OUT * IN, *bs = bias + m * OUT;
      const int64_t *rp = rowptr + s * (OUT + 1);
      float *ys = y + m * n * OUT;
      for (int64_t b0 = 0; b0 < n; b0 += NP) {
        const int64_t nb = std::min(NP, n - b0);
        transpose_chunk(xs, IN, b0, nb, NP, xT);
        for (int64_t r = 0; r < OUT; r++) {
          // four independent sums (the row's terms e, e+1, e+2, e+3 in turn), so that the adds overlap; then
          // ((s0 + s1) + (s2 + s3)) + bias: a fixed order
          v16 a0[4] = {zero, zero, zero, zero}, a1[4] = {zero, zero, zero, zero};
          const float *wr = ws + r * IN;
          const int64_t e0 = rp[r], e1 = rp[r + 1];
          int64_t e = e0;
          for (; e + 4 <= e1; e += 4)
            for (int u = 0; u < 4; u++) {
              const int64_t j = cols[e + u];
              const float f = wr[j];
              v16 p0, p1;
              ld(p0, xT + j * NP);
              ld(p1, xT + j * NP + L);
              a0[u] += f * p0;
              a1[u] += f * p1;
            }
          for (int u = 0; e < e1; e++, u++) {
            const int64_t j = cols[e];
            const float f = wr[j];
            v16 p0, p1;
            ld(p0, xT + j * NP);
            ld(p1, xT + j * NP + L);
            a0[u] += f * p0;
            a1[u] += f * p1;
          }
          v16 s0 = ((a0[0] + a0[1]) + (a0[2] + a0[3])) + bs[r];
          v16 s1 = ((a1[0] + a1[1]) + (a1[2] + a1[3])) + bs[r];
          st(yT + r * NP, s0);
          st(yT + r * NP + L, s1);
        }
        untranspose_chunk(yT, NP, OUT, b0, nb, ys);
      }
    }
  });
}

// The backward of linear_sparse_forward: gw (M, OUT, IN) gets the gradient of each surviving weight (a sum over
// the batch in image order, as lanes, then a fixed tree; the other entries are not written: the caller keeps them
// 0); dx (M, n, IN), if not null, the gradient of x (each column's terms added row by row). dz (M, n, OUT): the
// gradient of y.
extern "C" void linear_sparse_backward(const float *x, const float *w, const float *dz, float *gw, float *dx,
                                       const int64_t *members, const int64_t *rowptr, const int32_t *cols, int64_t nm,
                                       int64_t n, int64_t IN, int64_t OUT, int64_t threads) {
  parallel(nm, threads, [=](int64_t s0, int64_t s1) {  // by member
    const int64_t NV = (n + L - 1) / L, NP = NV * L;
    std::vector<float> xt(IN * NP), zt(OUT * NP), dt(dx ? IN * NP : 0);
    float *xT = xt.data(), *zT = zt.data(), *dT = dt.data();
    const v16 zero = {0};
    for (int64_t s = s0; s < s1; s++) {
      const int64_t m = members[s];
      const float *xs = x + m * n * IN, *ws = w + m * OUT * IN;
      const int64_t *rp = rowptr + s * (OUT + 1);
      float *gs = gw + m * OUT * IN;
      transpose_chunk(xs, IN, 0, n, NP, xT);
      transpose_chunk(dz + m * n * OUT, OUT, 0, n, NP, zT);
      if (dx) std::fill(dT, dT + IN * NP, 0.0f);
      for (int64_t r = 0; r < OUT; r++) {
        const float *zr = zT + r * NP, *wr = ws + r * IN;
        float *gr = gs + r * IN;
        for (int64_t e = rp[r]; e < rp[r + 1]; e++) {
          const int64_t j = cols[e];
          const float *xj = xT + j * NP;
          v16 acc = zero;
          for (int64_t v = 0; v < NP; v += L) {
            v16 zv, xv;
            ld(zv, zr + v);
            ld(xv, xj + v);
            acc += zv * xv;
          }
          gr[j] = hsum(acc);
          if (dx) {
            const float f = wr[j];
            float *dj = dT + j * NP;
            for (int64_t v = 0; v < NP; v += L) {
              v16 zv, dv;
              ld(zv, zr + v);
              ld(dv, dj + v);
              dv += f * zv;
              st(dj + v, dv);
            }
          }
        }
      }
      if (dx) {
        untranspose_chunk(dT, NP, IN, 0, n, dx + m * n * IN);
      }
    }
  });
}
