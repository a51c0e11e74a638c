// The population step's fused conv kernels (built and loaded by kernels.py, called by lenet_convs.Fused).
//
// conv1: a 3x3 convolution (stride 1, no padding) of one shared batch by the filters of all members, then
// 2x2 max pooling, then ReLU. conv2: each member's own 3x3 convolution of its pooled conv1 output (16 output
// channels), bias, 2x2 max pooling, ReLU. Neither conv output is stored: each pooled value is computed from
// its 4 window positions in registers, and only the pooled value and which position won (one byte) are
// written. The backward passes route each pooled gradient back to the winning position.
//
// conv1 layouts: x (n, C, H, W); ft (K, Cp) with K = C*9 + 1 (the filters, transposed, then the biases as
// the last row) and Cp = the number of filters rounded up to a multiple of 16 (zero columns); a and idx
// (n, PH, PW, Cp), the pooled output in channels_last order (padding channels 0); g (K, Cp), the filters'
// gradients then the biases'. conv2's layouts are given above its functions.
//
// Plain loops over GCC vector types, so that the compiler picks the machine's SIMD width. Deterministic:
// the same inputs give the same bits whatever else runs (no threads, fixed summation order), and every
// SIMD lane computes one channel of one member on its own, so a member's bits do not depend on the others.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif
#include <thread>
#include <vector>
#include <type_traits>

typedef uint8_t u16 __attribute__((vector_size(16)));
static const int64_t L = 16;
#ifdef __AVX512F__
typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));
#else
// Without AVX-512, GCC 12 compiles 16-lane generic vectors badly: comparisons, selects and conversions become
// scalar code, and values pass through the stack in pieces that the next vector load cannot forward from. On an
// AMD EPYC with AVX2 only (2026-12-02) the dense M=10 step took 55-80 ms, against 12-15 ms with the halves below.
// So there a 16-lane vector is two 8-lane halves, which map to AVX2 registers, with the operators the kernels use
// (and ld/st move each half as one register). The same operations lane by lane.
typedef float v8 __attribute__((vector_size(32)));
typedef int32_t i8 __attribute__((vector_size(32)));
typedef float __attribute__((may_alias)) float_a;
typedef int32_t __attribute__((may_alias)) int_a;
struct v16 {
  v8 a, b;
  v16() = default;
  v16(float s) : a(v8{} + s), b(v8{} + s) {}
  v16(v8 x, v8 y) : a(x), b(y) {}
  float &operator[](int64_t i) { return ((float_a *)this)[i]; }
  float operator[](int64_t i) const { return ((const float_a *)this)[i]; }
  v16 &operator+=(v16 o) { a += o.a; b += o.b; return *this; }
};
static inline v16 operator+(v16 x, v16 y) { return {x.a + y.a, x.b + y.b}; }
static inline v16 operator-(v16 x, v16 y) { return {x.a - y.a, x.b - y.b}; }
static inline v16 operator*(v16 x, v16 y) { return {x.a * y.a, x.b * y.b}; }
static inline v16 operator+(float s, v16 y) { return {s + y.a, s + y.b}; }
static inline v16 operator+(v16 x, float s) { return {x.a + s, x.b + s}; }
static inline v16 operator*(float s, v16 y) { return {s * y.a, s * y.b}; }
static inline v16 operator*(v16 x, float s) { return {x.a * s, x.b * s}; }
struct i16 {
  i8 a, b;
  i16() = default;
  i16(i8 x, i8 y) : a(x), b(y) {}
  int32_t &operator[](int64_t i) { return ((int_a *)this)[i]; }
  int32_t operator[](int64_t i) const { return ((const int_a *)this)[i]; }
};
static inline i16 operator|(i16 x, i16 y) { return {x.a | y.a, x.b | y.b}; }
static inline i16 operator&(i16 x, i16 y) { return {x.a & y.a, x.b & y.b}; }
static inline i16 operator~(i16 x) { return {~x.a, ~x.b}; }
#endif

static inline i16 splat(int32_t v) {
  i16 r;
  for (int64_t e = 0; e < L; e++) r[e] = v;
  return r;
}

// Lane-wise comparisons, selects and width changes of the 16-lane vectors: with AVX-512 the vector operators
// themselves; without it, on the two 8-lane halves (see v16 above). Exact operations: the same bits either way.
#ifdef __AVX512F__
static inline i16 gt(v16 a, v16 b) { return a > b; }
static inline i16 lt(v16 a, v16 b) { return a < b; }
static inline i16 le(v16 a, v16 b) { return a <= b; }
static inline i16 nan(v16 a) { return a != a; }
static inline i16 eq(i16 a, i16 b) { return a == b; }
static inline i16 lt(i16 a, i16 b) { return a < b; }
static inline v16 sel(i16 t, v16 a, v16 b) { return t ? a : b; }
static inline i16 sel(i16 t, i16 a, i16 b) { return t ? a : b; }
static inline u16 narrow(i16 v) { return __builtin_convertvector(v, u16); }
static inline i16 widen(u16 v) { return __builtin_convertvector(v, i16); }
#else
typedef uint8_t u8 __attribute__((vector_size(8)));
static inline i16 gt(v16 x, v16 y) { return {(i8)(x.a > y.a), (i8)(x.b > y.b)}; }
static inline i16 lt(v16 x, v16 y) { return {(i8)(x.a < y.a), (i8)(x.b < y.b)}; }
static inline i16 le(v16 x, v16 y) { return {(i8)(x.a <= y.a), (i8)(x.b <= y.b)}; }
static inline i16 nan(v16 x) { return {(i8)(x.a != x.a), (i8)(x.b != x.b)}; }
static inline i16 eq(i16 x, i16 y) { return {x.a == y.a, x.b == y.b}; }
static inline i16 lt(i16 x, i16 y) { return {x.a < y.a, x.b < y.b}; }
static inline v16 sel(i16 t, v16 x, v16 y) { return {t.a ? x.a : y.a, t.b ? x.b : y.b}; }
static inline i16 sel(i16 t, i16 x, i16 y) { return {t.a ? x.a : y.a, t.b ? x.b : y.b}; }
static inline u16 narrow(i16 v) {
  const u8 x = __builtin_convertvector(v.a, u8), y = __builtin_convertvector(v.b, u8);
  u16 r;
  std::memcpy(&r, &x, sizeof x);
  std::memcpy((char *)&r + sizeof x, &y, sizeof y);
  return r;
}
static inline i16 widen(u16 v) {
  u8 x, y;
  std::memcpy(&x, &v, sizeof x);
  std::memcpy(&y, (const char *)&v + sizeof x, sizeof y);
  return {__builtin_convertvector(x, i8), __builtin_convertvector(y, i8)};
}
#endif

// Loads and stores of whole vectors (and other values) from and to memory. For the two-halves vector (AVX2) each
// half is moved as one 32-byte register: a 64-byte memcpy into the struct went through 16-byte pieces that the
// next 32-byte load could not forward from, a stall per access.
template <class T> static inline void ld(T &v, const void *p) { std::memcpy(&v, p, sizeof v); }
template <class T> static inline void st(void *p, const T &v) { std::memcpy(p, &v, sizeof v); }
#ifndef __AVX512F__
static inline void ld(v16 &v, const void *p) {
  std::memcpy(&v.a, p, sizeof v.a);
  std::memcpy(&v.b, (const char *)p + sizeof v.a, sizeof v.b);
}
static inline void st(void *p, const v16 &v) {
  std::memcpy(p, &v.a, sizeof v.a);
  std::memcpy((char *)p + sizeof v.a, &v.b, sizeof v.b);
}
#endif

// p[0], p[stride], ..., p[15 * stride] as one vector (AVX2: built in registers, not through the stack)
static inline v16 strided16(const float *p, int64_t stride) {
#if !defined(__AVX512F__) && defined(__AVX2__)
  const __m256 x = _mm256_setr_ps(p[0], p[stride], p[2 * stride], p[3 * stride], p[4 * stride], p[5 * stride],
                                  p[6 * stride], p[7 * stride]);
  const float *q = p + 8 * stride;
  const __m256 y = _mm256_setr_ps(q[0], q[stride], q[2 * stride], q[3 * stride], q[4 * stride], q[5 * stride],
                                  q[6 * stride], q[7 * stride]);
  return {(v8)x, (v8)y};
#else
  v16 r;
  for (int64_t o = 0; o < L; o++) r[o] = p[o * stride];
  return r;
#endif
}

// conv2's pooling: max_pool2d over a window's 4 positions r0..r3 (the first maximum in window order wins, and NaN
// wins, as in max_pool2d), then ReLU; won: the winning position, or 4 where ReLU is inactive (the pooled value is
// <= 0, so no gradient flows back). A selection only: no rounding.
static inline void pool_relu(v16 r0, v16 r1, v16 r2, v16 r3, v16 &best, i16 &won) {
  const v16 zero = {0};
  i16 t;
  best = r0;
  won = splat(0);
  t = gt(r1, best) | nan(r1); best = sel(t, r1, best); won = sel(t, splat(1), won);
  t = gt(r2, best) | nan(r2); best = sel(t, r2, best); won = sel(t, splat(2), won);
  t = gt(r3, best) | nan(r3); best = sel(t, r3, best); won = sel(t, splat(3), won);
  t = le(best, zero);
  best = sel(t, zero, best);
  won = sel(t, splat(4), won);
}

static inline float hsum(v16 v) {  // a fixed tree: the same bits for the same lanes
  typedef float v8 __attribute__((vector_size(32)));
  typedef float v4 __attribute__((vector_size(16)));
  v8 lo, hi;
  ld(lo, &v);
  ld(hi, (const char *)&v + sizeof lo);
  lo += hi;
  v4 a, c;
  ld(a, &lo);
  ld(c, (const char *)&lo + sizeof a);
  a += c;
  return (a[0] + a[2]) + (a[1] + a[3]);
}

// f(begin, end) over [0, n), cut into `threads` contiguous ranges run on their own threads. Every kernel below
// cuts its work where the pieces write disjoint outputs and each sum keeps its order, so the result does not
// depend on the number of threads.
template <class F>
static void parallel(int64_t n, int64_t threads, F f) {
  threads = std::max<int64_t>(1, std::min(threads, n));
  if (threads == 1) {
    f(0, n);
    return;
  }
  std::vector<std::thread> pool;
  for (int64_t t = 1; t < threads; t++) pool.emplace_back(f, n * t / threads, n * (t + 1) / threads);
  f(0, n / threads);
  for (auto &th : pool) th.join();
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

static inline void transpose_chunk(const float *x, int64_t IN, int64_t b0, int64_t nb, int64_t NP, float *xT) {
  // xT[j * NP + b] = x[(b0 + b) * IN + j], zero for nb <= b < NP; in 16 x 16 tiles that stay in the L1 cache
  float tile[16][16];
  for (int64_t j0 = 0; j0 < IN; j0 += 16) {
    const int64_t nj = std::min<int64_t>(16, IN - j0);
    for (int64_t c0 = 0; c0 < NP; c0 += 16) {
      for (int64_t b = 0; b < 16; b++) {
        if (c0 + b < nb && nj == 16)  // a fixed size: not a library call per row
          std::memcpy(tile[b], x + (b0 + c0 + b) * IN + j0, 16 * sizeof(float));
        else if (c0 + b < nb)
          for (int64_t j = 0; j < nj; j++) tile[b][j] = x[(b0 + c0 + b) * IN + j0 + j];
        else
          for (int64_t j = 0; j < nj; j++) tile[b][j] = 0.0f;
      }
      for (int64_t j = 0; j < nj; j++)
        for (int64_t b = 0; b < 16; b++) xT[(j0 + j) * NP + c0 + b] = tile[b][j];
    }
  }
}

static inline void untranspose_chunk(const float *xT, int64_t NP, int64_t IN, int64_t b0, int64_t nb, float *x) {
  // x[(b0 + b) * IN + j] = xT[j * NP + b] for b < nb: the inverse of transpose_chunk
  float tile[16][16];
  for (int64_t j0 = 0; j0 < IN; j0 += 16) {
    const int64_t nj = std::min<int64_t>(16, IN - j0);
    for (int64_t c0 = 0; c0 < nb; c0 += 16) {
      const int64_t ncb = std::min<int64_t>(16, nb - c0);
      for (int64_t j = 0; j < nj; j++)
        for (int64_t b = 0; b < 16; b++) tile[b][j] = xT[(j0 + j) * NP + c0 + b];
      for (int64_t b = 0; b < ncb; b++)
        for (int64_t j = 0; j < nj; j++) x[(b0 + c0 + b) * IN + j0 + j] = tile[b][j];
    }
  }
}

// conv2 over surviving weights only ("tap lists"), for the members whose conv2 mask is sparse enough (the
// Python side picks them from their masks: kernels.Conv2Taps). op (M, 17): for such a member, op[m][o] ..
// op[m][o + 1] is the range of taps (int32) that output channel o keeps, each tap k = (ky*3 + kx)*Ci + ci in
// increasing order (the row of wt it reads); op[m][0] = -1 for a member on the dense kernels below.
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
static const int64_t NB = L;      // images per chunk: one SIMD vector
static const int64_t TAP_PW = 5;  // pooled width the tap kernels are compiled for (LeNet on 28x28 inputs: 13 -> 5)
static const int64_t CW = 2 * TAP_PW;  // conv columns pooling reads

static inline bool on_taps(const int64_t *op, int64_t m) { return op && op[m * (L + 1)] >= 0; }

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

static void conv2_taps_forward(const float *a1, const float *wt, const float *bias, float *a2, uint8_t *idx,
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
static void conv2_taps_backward_member(const float *a1, const float *wt, const uint8_t *idx, const float *ga2,
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

// The SGD step over a member's surviving weights (population.Population.step): for each element i of a parameter,
// as torch.optim.SGD on the gradient of weight * mask, in its order of operations:
//   g = mask ? grad : 0;  g = p * wd + g (wd != 0);  buf = first ? g : buf * momentum + g (momentum != 0), g = buf;
//   p = g * (-lr) + p (one fused multiply-add, as torch's vectorised add with alpha).
// mask (uint8, one byte per element; null: every element survives). Blocks of 64 elements whose mask bytes are all
// 0 are skipped: their weights, gradients' images and momentum stay exactly 0 (what the masked update gives them
// for finite values), so the work follows the surviving weights down to that granularity. Elementwise: the bits do
// not depend on the thread count. The roundings are torch's: its vectorised add with alpha is one fused multiply-add,
// its mul_ then add_ two roundings; so this part is compiled without contracting a * b + c (the kernels above allow
// it) and writes each fused multiply-add out. Measured (M=18 LeNets' parameters, 1 thread, 2026-12-01, Intel Xeon,
// beside training): 0.88 ms against 1.5-1.7 ms for the mask multiply then torch's update, at any density (the
// gradients' pruned entries still cross the memory bus); 0.76 at 2% density, 0.10 with everything pruned. Checking
// each vector's 16 mask bytes apart, explicit vectors, cost more than they saved (1.3-1.8 ms).
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
template <bool MASK, bool WD, int MOM>  // MOM: 0 no momentum, 1 its first step, 2 later steps
static void sgd_range(float *p, const float *grad, float *buf, const uint8_t *mask, int64_t i0, int64_t i1, float lr,
                      float momentum, float wd) {
  for (int64_t i = i0; i < i1; i++) {
    float g = grad[i];
    if (MASK) g = mask[i] ? g : 0.0f;
    if (WD) g = __builtin_fmaf(p[i], wd, g);
    if (MOM == 2) g = buf[i] * momentum + g;  // two roundings, as torch's mul_ then add_
    if (MOM) buf[i] = g;
    p[i] = __builtin_fmaf(g, -lr, p[i]);
  }
}

template <bool WD, int MOM>
static void sgd(float *p, const float *grad, float *buf, const uint8_t *mask, int64_t n, float lr, float momentum,
                float wd, int64_t threads) {
  const int64_t B = 64;
  parallel((n + B - 1) / B, threads, [=](int64_t k0, int64_t k1) {
    if (!mask) {
      sgd_range<false, WD, MOM>(p, grad, buf, mask, k0 * B, std::min(n, k1 * B), lr, momentum, wd);
      return;
    }
    for (int64_t k = k0; k < k1; k++) {
      const int64_t i0 = k * B, i1 = std::min(n, i0 + B);
      uint64_t any = 0;
      if (i1 - i0 == B) {
        for (int64_t j = 0; j < B; j += 8) {
          uint64_t w;
          std::memcpy(&w, mask + i0 + j, 8);
          any |= w;
        }
      } else {
        for (int64_t i = i0; i < i1; i++) any |= mask[i];
      }
      if (any) sgd_range<true, WD, MOM>(p, grad, buf, mask, i0, i1, lr, momentum, wd);
    }
  });
}

extern "C" void masked_sgd(float *p, const float *grad, float *buf, const uint8_t *mask, int64_t n, float lr,
                           float momentum, float wd, int64_t first, int64_t threads) {
  const int mom = buf ? (first ? 1 : 2) : 0;
  if (wd != 0.0f) {
    if (mom == 0) sgd<true, 0>(p, grad, buf, mask, n, lr, momentum, wd, threads);
    if (mom == 1) sgd<true, 1>(p, grad, buf, mask, n, lr, momentum, wd, threads);
    if (mom == 2) sgd<true, 2>(p, grad, buf, mask, n, lr, momentum, wd, threads);
  } else {
    if (mom == 0) sgd<false, 0>(p, grad, buf, mask, n, lr, momentum, wd, threads);
    if (mom == 1) sgd<false, 1>(p, grad, buf, mask, n, lr, momentum, wd, threads);
    if (mom == 2) sgd<false, 2>(p, grad, buf, mask, n, lr, momentum, wd, threads);
  }
}
#pragma GCC pop_options

// ---------------------------------------------------------------------------------------------------------------
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
//
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
static void mk_taps(const float *w, int64_t O, int64_t K, int64_t H, int64_t W, int64_t NP, const int64_t *rp,
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
static void mk_conv_forward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv, const int64_t *toff,
                            const float *b, int64_t Co, const int64_t *rp, float *out, uint8_t *code) {
  if (NP == 2 * L && W == 28)
    mk_conv_forward_t<2 * L, 28>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
  else if (NP == 2 * L && W == 13)
    mk_conv_forward_t<2 * L, 13>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
  else
    mk_conv_forward_t<0, 0>(in, H, W, NP, wv, toff, b, Co, rp, out, code);
}

static void mk_conv_backward(const float *in, int64_t H, int64_t W, int64_t NP, const float *wv, const int64_t *toff,
                             int64_t Co, const int64_t *rp, const float *gout, const uint8_t *code, v16 *gacc,
                             v16 *gbias, float *gin) {
  if (NP == 2 * L && W == 28)
    mk_conv_backward_t<2 * L, 28>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
  else if (NP == 2 * L && W == 13)
    mk_conv_backward_t<2 * L, 13>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
  else
    mk_conv_backward_t<0, 0>(in, H, W, NP, wv, toff, Co, rp, gout, code, gacc, gbias, gin);
}

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

static void mk_linear_forward(const float *in, int64_t NP, const float *w, const float *b, int64_t O, int64_t K,
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

static void mk_linear_backward(const float *in, int64_t NP, const float *w, int64_t O, int64_t K, const int64_t *rp,
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
