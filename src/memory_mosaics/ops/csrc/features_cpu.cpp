// Fused CPU kernels for the feature extractors of eq. (6): the key path (leaky average, normalisation, scale) and the
// peek-ahead value path (mixing, normalisation, scale), forward and backward, each in one pass over memory.
//
// Eager PyTorch runs each of these as a dozen passes over (B, H, T, D) tensors, with a full-size temporary for most of
// them; here each thread walks its sequences once in time order, keeping each head's running D-vector in a buffer.
// Layout: every (B, T, H, D) tensor is contiguous and time-major, as the projections W_k x and W_v x are; per-position
// norms are (B, T, H). Per-head parameter gradients come back per (sequence, head), (B, H), in fp64: the caller sums
// over B. fp32 only; the Python side keeps the eager path for every other case.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#ifdef MEMORY_MOSAICS_BANK
#include "bank_cpu.h"
#endif

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

namespace {

constexpr float kEps = 1e-10f;  // NORM_EPS of ops/norm.py

void check_features(const torch::Tensor& x, const char* name) {
  TORCH_CHECK(x.dim() == 4, name, " must be (B, T, H, D)");
  TORCH_CHECK(x.scalar_type() == at::kFloat, name, " must be float32");
  TORCH_CHECK(x.is_contiguous(), name, " must be contiguous (B, T, H, D)");
  TORCH_CHECK(x.device().is_cpu(), name, " must be on the CPU");
}

void check_heads(const torch::Tensor& p, int64_t H, const char* name) {
  TORCH_CHECK(p.dim() == 1 && p.size(0) == H && p.scalar_type() == at::kFloat && p.is_contiguous(), name,
              " must be a float32 vector of one entry per head");
}

// An optional per-sequence state (B, H, D) as a contiguous fp32 tensor, undefined when absent; data() is then null.
torch::Tensor per_sequence(const c10::optional<torch::Tensor>& t, int64_t numel, const char* name) {
  if (!t.has_value()) return {};
  auto c = t->contiguous();
  TORCH_CHECK(c.scalar_type() == at::kFloat && c.numel() == numel, name, " must be (B, H, D) float32");
  return c;
}

const float* data(const torch::Tensor& t) { return t.defined() ? t.data_ptr<float>() : nullptr; }

// Calls f(b, h0, h1) for the (sequence, head) pairs [begin, end) of one thread, grouped by sequence: each group then
// walks its sequence in time order through contiguous rows of its heads, instead of striding across the heads of every
// row (one pass over the tensor per head).
template <typename F>
void for_each_run(int64_t begin, int64_t end, int64_t H, const F& f) {
  for (int64_t i = begin; i < end;) {
    const int64_t b = i / H, h0 = i % H, h1 = std::min(H, h0 + (end - i));
    f(b, h0, h1);
    i += h1 - h0;
  }
}

// k̄_t = x_t + λ_h k̄_{t-1} (k̄_{-1} = state or 0); k_t = s_h k̄_t / (‖k̄_t‖ + ε). Returns k, the norms ‖k̄_t‖ + ε, and k̄
// at the last position.
std::vector<torch::Tensor> keys_forward(const torch::Tensor& x, const torch::Tensor& decay, const torch::Tensor& scale,
                                        const c10::optional<torch::Tensor>& state) {
  check_features(x, "x");
  const int64_t B = x.size(0), T = x.size(1), H = x.size(2), D = x.size(3);
  check_heads(decay, H, "decay");
  check_heads(scale, H, "scale");
  auto k = torch::empty_like(x);
  auto norm = torch::empty({B, T, H}, x.options());
  auto last = torch::empty({B, H, D}, x.options());
  const auto state_c = per_sequence(state, B * H * D, "state");
  const float* state_p = data(state_c);
  const float* x_p = x.data_ptr<float>();
  const float* decay_p = decay.data_ptr<float>();
  const float* scale_p = scale.data_ptr<float>();
  float* k_p = k.data_ptr<float>();
  float* norm_p = norm.data_ptr<float>();
  float* last_p = last.data_ptr<float>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(H * D);  // k̄ of each head of the run
    for_each_run(begin, end, H, [&](int64_t b, int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t d = 0; d < D; ++d) buffer[h * D + d] = state_p ? state_p[(b * H + h) * D + d] : 0.f;
      }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = h0; h < h1; ++h) {
          const int64_t row = (b * T + t) * H + h;
          const float lam = decay_p[h];
          const float* __restrict__ xr = x_p + row * D;
          float* __restrict__ acc = buffer.data() + h * D;
          float ss = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            const float v = xr[d] + lam * acc[d];
            acc[d] = v;
            ss += v * v;
          }
          const float n = std::sqrt(ss) + kEps;
          const float f = scale_p[h] / n;
          norm_p[row] = n;
          float* __restrict__ kr = k_p + row * D;
          for (int64_t d = 0; d < D; ++d) kr[d] = acc[d] * f;
        }
      }
      for (int64_t h = h0; h < h1; ++h) {
        for (int64_t d = 0; d < D; ++d) last_p[(b * H + h) * D + d] = buffer[h * D + d];
      }
    });
  });
  return {k, norm, last};
}

// Gradients of keys_forward from dL/dk (and dL/dk̄_last): dL/dx, per (sequence, head) dL/dβ and dL/dlog s, and
// dL/dstate (empty without a state). The normalisation's backward rebuilds k̄ = k·n/s; the leaky average's backward is
// the same recurrence run backwards in time, G_t = ḡ_t + λ G_{t+1}, and dL/dβ = -λ Σ_t k̄_{t-1}·G_t needs no second
// pass.
std::vector<torch::Tensor> keys_backward(const torch::Tensor& grad, const torch::Tensor& k, const torch::Tensor& norm,
                                         const torch::Tensor& decay, const torch::Tensor& scale,
                                         const c10::optional<torch::Tensor>& state,
                                         const c10::optional<torch::Tensor>& grad_last) {
  check_features(grad, "grad");
  check_features(k, "k");
  const int64_t B = k.size(0), T = k.size(1), H = k.size(2), D = k.size(3);
  TORCH_CHECK(grad.sizes() == k.sizes(), "grad and k must have one shape");
  TORCH_CHECK(norm.is_contiguous() && norm.numel() == B * T * H, "norm must be (B, T, H)");
  check_heads(decay, H, "decay");
  check_heads(scale, H, "scale");
  auto g_x = torch::empty_like(k);
  auto dbl = k.options().dtype(at::kDouble);
  auto g_beta = torch::empty({B, H}, dbl);
  auto g_log_scale = torch::empty({B, H}, dbl);
  const auto state_c = per_sequence(state, B * H * D, "state");
  const auto grad_last_c = per_sequence(grad_last, B * H * D, "grad_last");
  const float *state_p = data(state_c), *grad_last_p = data(grad_last_c);
  // empty without a state
  auto g_state = state_p ? torch::empty({B, H, D}, k.options()) : torch::empty({0}, k.options());
  float* g_state_p = state_p ? g_state.data_ptr<float>() : nullptr;
  const float* g_p = grad.data_ptr<float>();
  const float* k_p = k.data_ptr<float>();
  const float* norm_p = norm.data_ptr<float>();
  const float* decay_p = decay.data_ptr<float>();
  const float* scale_p = scale.data_ptr<float>();
  float* g_x_p = g_x.data_ptr<float>();
  double* g_beta_p = g_beta.data_ptr<double>();
  double* g_log_scale_p = g_log_scale.data_ptr<double>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(H * D);  // λ G_{t+1} of each head of the run
    std::vector<double> beta_acc(H), scale_acc(H);
    for_each_run(begin, end, H, [&](int64_t b, int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        beta_acc[h] = scale_acc[h] = 0.0;
        for (int64_t d = 0; d < D; ++d) buffer[h * D + d] = grad_last_p ? grad_last_p[(b * H + h) * D + d] : 0.f;
      }
      for (int64_t t = T - 1; t >= 0; --t) {
        for (int64_t h = h0; h < h1; ++h) {
          const int64_t row = (b * T + t) * H + h;
          const float lam = decay_p[h], s = scale_p[h];
          const float* __restrict__ gr = g_p + row * D;
          const float* __restrict__ kr = k_p + row * D;
          float* __restrict__ carry = buffer.data() + h * D;
          // k_t·g_t, and k_t·λG_{t+1} (which times n/s is k̄_t·λG_{t+1}; at the last position the carry holds the
          // state's gradient instead, which is no term of dL/dβ)
          float dot = 0.f, cross = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            dot += kr[d] * gr[d];
            cross += kr[d] * carry[d];
          }
          const float n = norm_p[row];
          const float r = std::max(n - kEps, FLT_MIN);  // ‖k̄_t‖, finite for k̄_t = 0
          const float a = s / n, c = dot / (s * r);
          scale_acc[h] += dot;
          if (t < T - 1) beta_acc[h] += static_cast<double>(cross) * (n / s);
          float* __restrict__ gxr = g_x_p + row * D;
          for (int64_t d = 0; d < D; ++d) {
            const float G = a * gr[d] - kr[d] * c + carry[d];  // ḡ_t + λG_{t+1}
            gxr[d] = G;
            carry[d] = lam * G;
          }
        }
      }
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t i = b * H + h;
        if (state_p) {  // the carry is now λ G_0 = dL/dstate
          float cross = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            g_state_p[i * D + d] = buffer[h * D + d];
            cross += state_p[i * D + d] * buffer[h * D + d];
          }
          beta_acc[h] += cross;
        }
        g_beta_p[i] = -beta_acc[h];
        g_log_scale_p[i] = scale_acc[h];
      }
    });
  });
  return {g_x, g_beta, g_log_scale, g_state};
}

// m_t = c_h u_t + (1 - c_h) u_{t+1} (u_T = 0); v_t = r_h m_t / (‖m_t‖ + ε). Returns v and the norms ‖m_t‖ + ε.
std::vector<torch::Tensor> values_forward(const torch::Tensor& u, const torch::Tensor& coef,
                                          const torch::Tensor& scale) {
  check_features(u, "u");
  const int64_t B = u.size(0), T = u.size(1), H = u.size(2), D = u.size(3);
  check_heads(coef, H, "coef");
  check_heads(scale, H, "scale");
  auto v = torch::empty_like(u);
  auto norm = torch::empty({B, T, H}, u.options());
  const float* u_p = u.data_ptr<float>();
  const float* coef_p = coef.data_ptr<float>();
  const float* scale_p = scale.data_ptr<float>();
  float* v_p = v.data_ptr<float>();
  float* norm_p = norm.data_ptr<float>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(D), zeros(D, 0.f);  // zeros: u_T
    float* __restrict__ m = buffer.data();
    for_each_run(begin, end, H, [&](int64_t b, int64_t h0, int64_t h1) {
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = h0; h < h1; ++h) {
          const int64_t row = (b * T + t) * H + h;
          const float c = coef_p[h];
          const float* __restrict__ now = u_p + row * D;
          const float* __restrict__ next = t + 1 < T ? u_p + (row + H) * D : zeros.data();
          float ss = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            const float x = c * now[d] + (1.f - c) * next[d];
            m[d] = x;
            ss += x * x;
          }
          const float n = std::sqrt(ss) + kEps;
          const float f = scale_p[h] / n;
          norm_p[row] = n;
          float* __restrict__ vr = v_p + row * D;
          for (int64_t d = 0; d < D; ++d) vr[d] = m[d] * f;
        }
      }
    });
  });
  return {v, norm};
}

// Gradients of values_forward from dL/dv: dL/du, and per (sequence, head) dL/dc and dL/dlog r.
std::vector<torch::Tensor> values_backward(const torch::Tensor& grad, const torch::Tensor& u, const torch::Tensor& v,
                                           const torch::Tensor& norm, const torch::Tensor& coef,
                                           const torch::Tensor& scale) {
  check_features(grad, "grad");
  check_features(u, "u");
  check_features(v, "v");
  const int64_t B = u.size(0), T = u.size(1), H = u.size(2), D = u.size(3);
  TORCH_CHECK(grad.sizes() == u.sizes() && v.sizes() == u.sizes(), "grad, u and v must have one shape");
  TORCH_CHECK(norm.is_contiguous() && norm.numel() == B * T * H, "norm must be (B, T, H)");
  check_heads(coef, H, "coef");
  check_heads(scale, H, "scale");
  auto g_u = torch::empty_like(u);
  auto dbl = u.options().dtype(at::kDouble);
  auto g_coef = torch::empty({B, H}, dbl);
  auto g_log_scale = torch::empty({B, H}, dbl);
  const float* g_p = grad.data_ptr<float>();
  const float* u_p = u.data_ptr<float>();
  const float* v_p = v.data_ptr<float>();
  const float* norm_p = norm.data_ptr<float>();
  const float* coef_p = coef.data_ptr<float>();
  const float* scale_p = scale.data_ptr<float>();
  float* g_u_p = g_u.data_ptr<float>();
  double* g_coef_p = g_coef.data_ptr<double>();
  double* g_log_scale_p = g_log_scale.data_ptr<double>();
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> buffer(H * D), zeros(D, 0.f);  // dL/dm_{t-1} of each head of the run; zeros: u_T
    std::vector<double> coef_acc(H), scale_acc(H);
    for_each_run(begin, end, H, [&](int64_t b, int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) {
        coef_acc[h] = scale_acc[h] = 0.0;
        for (int64_t d = 0; d < D; ++d) buffer[h * D + d] = 0.f;
      }
      for (int64_t t = 0; t < T; ++t) {
        for (int64_t h = h0; h < h1; ++h) {
          const int64_t row = (b * T + t) * H + h;
          const float c = coef_p[h], r = scale_p[h];
          const float* __restrict__ gr = g_p + row * D;
          const float* __restrict__ vr = v_p + row * D;
          const float* __restrict__ now = u_p + row * D;
          const float* __restrict__ next = t + 1 < T ? u_p + (row + H) * D : zeros.data();
          float* __restrict__ g_m_prev = buffer.data() + h * D;
          float dot = 0.f;
          for (int64_t d = 0; d < D; ++d) dot += vr[d] * gr[d];
          const float n = norm_p[row];
          const float rn = std::max(n - kEps, FLT_MIN);
          const float a = r / n, e = dot / (r * rn);
          float* __restrict__ gur = g_u_p + row * D;
          float dc = 0.f;
          for (int64_t d = 0; d < D; ++d) {
            const float gm = a * gr[d] - vr[d] * e;
            dc += gm * (now[d] - next[d]);              // dm_t/dc = u_t - u_{t+1}
            gur[d] = c * gm + (1.f - c) * g_m_prev[d];  // u_t enters m_t with c and m_{t-1} with 1 - c
            g_m_prev[d] = gm;
          }
          coef_acc[h] += dc;
          scale_acc[h] += dot;
        }
      }
      for (int64_t h = h0; h < h1; ++h) {
        g_coef_p[b * H + h] = coef_acc[h];
        g_log_scale_p[b * H + h] = scale_acc[h];
      }
    });
  });
  return {g_u, g_coef, g_log_scale};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("keys_forward", &keys_forward);
  m.def("keys_backward", &keys_backward);
  m.def("values_forward", &values_forward);
  m.def("values_backward", &values_backward);
#ifdef MEMORY_MOSAICS_BANK
  m.def("bank_forward", &bank_forward);
  m.def("bank_backward", &bank_backward);
#endif
}
