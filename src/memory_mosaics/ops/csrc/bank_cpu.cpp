// Bank retrieval on the CPU: y = softmax(q P_kᵀ) P_v for every query row against one bank of m pairs per head, the
// persistent memory's retrieval (ops/retrieval.py: bank_retrieval). Built with features_cpu.cpp, which binds it.
//
// Why not scaled_dot_product_attention: its CPU flash kernel streams the bank in blocks with an online softmax, which a
// bank of m ≈ 3.5·d pairs does not need. Here a tile of R query rows scores the whole bank at once (R × m floats stay
// in cache), the softmax is exact, the log-normaliser is saved for the backward pass, which recomputes the scores
// rather than store (T × m) probabilities, and rows cross in the time-major layout of the projections, so neither
// direction copies. The matrix products are MKL's sgemm (single-threaded inside the parallel loop).
//
// Layouts: queries, outputs and gradients contiguous (N, H, D) (N = batch × time), the bank (H, m, D).

#include "bank_cpu.h"

#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <memory>

extern "C" void sgemm_(const char* transa, const char* transb, const int* m, const int* n, const int* k,
                       const float* alpha, const float* a, const int* lda, const float* b, const int* ldb,
                       const float* beta, float* c, const int* ldc);

namespace {

using Vec = at::vec::Vectorized<float>;
// query rows per tile: R × m scores (229 KB at m = 896) stay in L2; 16 to 96 rows measured, 64 was best at m = 896
// and at m = 2688 (d = 768)
constexpr int64_t kRows = 64;

// Row-major C (m × n) = op(A) op(B) + beta·C, as the column-major Cᵀ = op(B)ᵀ op(A)ᵀ.
void gemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const float* A, int64_t lda, const float* B,
          int64_t ldb, float beta, float* C, int64_t ldc) {
  const char ta = trans_a ? 'T' : 'N', tb = trans_b ? 'T' : 'N';
  const int mi = static_cast<int>(m), ni = static_cast<int>(n), ki = static_cast<int>(k);
  const int la = static_cast<int>(lda), lb = static_cast<int>(ldb), lc = static_cast<int>(ldc);
  const float one = 1.f;
  sgemm_(&tb, &ta, &ni, &mi, &ki, &one, B, &lb, A, &la, &beta, C, &lc);
}

// exp(x) for x ≤ 0 (scores less their maximum or log-normaliser): 2^n · 2^f with t = x·log₂e = n + f, |f| ≤ 1/2,
// 2^f by Cephes' exp2f polynomial (relative error ~2e-7; PyTorch's exp_u20 allows 20 ulp and costs a third more),
// 2^n by exponent bits. Below −87 it gives 0.
inline Vec exp_nonpositive(const Vec& x) {
  const Vec t = at::vec::clamp_min(x * Vec(1.44269504088896341f), Vec(-127.f));
  const Vec n = t.round();
  const Vec f = t - n;
  Vec p(1.535336188319500e-4f);
  for (const float c : {1.339887440266574e-3f, 9.618437357674640e-3f, 5.550332471162809e-2f, 2.402264791363012e-1f,
                        6.931472028550421e-1f, 1.f})
    p = at::vec::fmadd(p, f, Vec(c));
  using IVec = at::vec::Vectorized<int32_t>;
  const IVec bits = (at::vec::convert_to_int_of_same_size(n) + IVec(127)) << IVec(23);
  return p * at::vec::cast<float>(bits);
}

// the row's maximum, in four independent chains (scores are finite: no NaN handling needed)
float row_max(const float* s, int64_t n) {
  Vec m0(-FLT_MAX), m1(-FLT_MAX), m2(-FLT_MAX), m3(-FLT_MAX);
  const int64_t w = Vec::size();
  int64_t j = 0;
  for (; j + 4 * w <= n; j += 4 * w) {
    m0 = at::vec::clamp_min(Vec::loadu(s + j), m0);
    m1 = at::vec::clamp_min(Vec::loadu(s + j + w), m1);
    m2 = at::vec::clamp_min(Vec::loadu(s + j + 2 * w), m2);
    m3 = at::vec::clamp_min(Vec::loadu(s + j + 3 * w), m3);
  }
  float mx = at::vec::vec_reduce_all<float>(
      [](Vec& a, Vec& b) { return at::vec::clamp_min(a, b); },
      at::vec::clamp_min(at::vec::clamp_min(m0, m1), at::vec::clamp_min(m2, m3)));
  for (; j < n; ++j) mx = std::max(mx, s[j]);
  return mx;
}

// s ← exp(s − shift) over a row; returns the row's sum
float exp_sum(float* s, int64_t n, float shift) {
  const Vec vs(shift);
  Vec acc(0.f);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) {
    const Vec e = exp_nonpositive(Vec::loadu(s + j) - vs);
    e.store(s + j);
    acc = acc + e;
  }
  float sum = at::vec::vec_reduce_all<float>([](Vec& a, Vec& b) { return a + b; }, acc);
  for (; j < n; ++j) sum += (s[j] = std::exp(s[j] - shift));
  return sum;
}

// One pass: s (scores) ← p = exp(s − lse), dp (∂L/∂p) ← ∂L/∂s = p (dp − dot)
void softmax_backward(float* s, float* dp, int64_t n, float lse, float dot) {
  const Vec vl(lse), vd(dot);
  int64_t j = 0;
  for (; j + Vec::size() <= n; j += Vec::size()) {
    const Vec p = exp_nonpositive(Vec::loadu(s + j) - vl);
    p.store(s + j);
    (p * (Vec::loadu(dp + j) - vd)).store(dp + j);
  }
  for (; j < n; ++j) {
    s[j] = std::exp(s[j] - lse);
    dp[j] = s[j] * (dp[j] - dot);
  }
}

void check(const at::Tensor& q, const at::Tensor& P_k, const at::Tensor& P_v) {
  TORCH_CHECK(q.device().is_cpu() && P_k.device().is_cpu() && P_v.device().is_cpu(), "the bank kernel runs on the CPU");
  TORCH_CHECK(q.dim() == 3 && q.is_contiguous(), "queries must be contiguous (N, H, D)");
  TORCH_CHECK(P_k.dim() == 3 && P_k.sizes() == P_v.sizes(), "the bank must be (H, m, D) keys and values");
  TORCH_CHECK(P_k.size(0) == q.size(1) && P_k.size(2) == q.size(2), "the bank's heads and size must match the queries");
  TORCH_CHECK(q.scalar_type() == at::kFloat && P_k.scalar_type() == at::kFloat && P_v.scalar_type() == at::kFloat,
              "the bank kernel is fp32");
}

}  // namespace

std::vector<at::Tensor> bank_forward(const at::Tensor& q, const at::Tensor& P_k_in, const at::Tensor& P_v_in) {
  check(q, P_k_in, P_v_in);
  const at::Tensor P_k = P_k_in.contiguous(), P_v = P_v_in.contiguous();
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2), M = P_k.size(1), ld = H * D;
  const int64_t tiles = (N + kRows - 1) / kRows, rows = std::min(kRows, N);
  at::Tensor y = at::empty({N, H, D}, q.options()), lse = at::empty({H, N}, q.options());
  const float *qp = q.data_ptr<float>(), *pk = P_k.data_ptr<float>(), *pv = P_v.data_ptr<float>();
  float *yp = y.data_ptr<float>(), *lp = lse.data_ptr<float>();
  at::parallel_for(0, H * tiles, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> S(new float[rows * M]), sums(new float[rows]);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / tiles, n0 = task % tiles * kRows, r = std::min(kRows, N - n0);
      gemm(false, true, r, M, D, qp + n0 * ld + h * D, ld, pk + h * M * D, D, 0.f, S.get(), M);
      for (int64_t i = 0; i < r; ++i) {
        float* s = S.get() + i * M;
        const float mx = row_max(s, M);
        sums[i] = exp_sum(s, M, mx);
        lp[h * N + n0 + i] = mx + std::log(sums[i]);
      }
      // normalise the (R × D) output rather than the (R × m) weights
      float* yt = yp + n0 * ld + h * D;
      gemm(false, false, r, D, M, S.get(), M, pv + h * M * D, D, 0.f, yt, ld);
      for (int64_t i = 0; i < r; ++i) {
        const float inv = 1.f / sums[i];
        for (int64_t d = 0; d < D; ++d) yt[i * ld + d] *= inv;
      }
    }
  });
  return {y, lse};
}

std::vector<at::Tensor> bank_backward(const at::Tensor& g_in, const at::Tensor& q, const at::Tensor& P_k_in,
                                      const at::Tensor& P_v_in, const at::Tensor& y, const at::Tensor& lse) {
  check(q, P_k_in, P_v_in);
  const at::Tensor P_k = P_k_in.contiguous(), P_v = P_v_in.contiguous();
  const at::Tensor g = g_in.contiguous();  // a view already, from the next projection's backward
  const int64_t N = q.size(0), H = q.size(1), D = q.size(2), M = P_k.size(1), ld = H * D;
  const int64_t tiles = (N + kRows - 1) / kRows, rows = std::min(kRows, N);
  TORCH_CHECK(g.sizes() == q.sizes() && y.sizes() == q.sizes() && y.is_contiguous() && lse.is_contiguous() &&
                  lse.numel() == H * N,
              "bank_backward takes the gradient and the forward's outputs");
  // the bank's gradients sum over every query: one accumulator per thread, summed at the end
  const int64_t threads = at::get_num_threads();
  at::Tensor g_q = at::empty({N, H, D}, q.options());
  at::Tensor g_pk = at::zeros({threads, H, M, D}, q.options()), g_pv = at::zeros({threads, H, M, D}, q.options());
  const float *qp = q.data_ptr<float>(), *gp = g.data_ptr<float>(), *yp = y.data_ptr<float>();
  const float *pk = P_k.data_ptr<float>(), *pv = P_v.data_ptr<float>(), *lp = lse.data_ptr<float>();
  float *gqp = g_q.data_ptr<float>(), *gpk = g_pk.data_ptr<float>(), *gpv = g_pv.data_ptr<float>();
  at::parallel_for(0, H * tiles, 1, [&](int64_t begin, int64_t end) {
    std::unique_ptr<float[]> P(new float[rows * M]), dP(new float[rows * M]);
    const int64_t thread = at::get_thread_num();
    for (int64_t task = begin; task < end; ++task) {
      const int64_t h = task / tiles, n0 = task % tiles * kRows, r = std::min(kRows, N - n0);
      const float *qt = qp + n0 * ld + h * D, *gt = gp + n0 * ld + h * D, *yt = yp + n0 * ld + h * D;
      const float *pkh = pk + h * M * D, *pvh = pv + h * M * D;
      gemm(false, true, r, M, D, qt, ld, pkh, D, 0.f, P.get(), M);   // scores again
      gemm(false, true, r, M, D, gt, ld, pvh, D, 0.f, dP.get(), M);  // ∂L/∂p = g P_vᵀ
      for (int64_t i = 0; i < r; ++i) {
        float dot = 0.f;  // Σ_j p_j ∂L/∂p_j = g·y, over D rather than m
        for (int64_t d = 0; d < D; ++d) dot += yt[i * ld + d] * gt[i * ld + d];
        softmax_backward(P.get() + i * M, dP.get() + i * M, M, lp[h * N + n0 + i], dot);
      }
      gemm(false, false, r, D, M, dP.get(), M, pkh, D, 0.f, gqp + n0 * ld + h * D, ld);
      gemm(true, false, M, D, r, dP.get(), M, qt, ld, 1.f, gpk + (thread * H + h) * M * D, D);
      gemm(true, false, M, D, r, P.get(), M, gt, ld, 1.f, gpv + (thread * H + h) * M * D, D);
    }
  });
  return {g_q, g_pk.sum(0), g_pv.sum(0)};
}
