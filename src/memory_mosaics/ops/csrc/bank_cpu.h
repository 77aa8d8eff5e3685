// Bank retrieval kernels (bank_cpu.cpp), bound by features_cpu.cpp where PyTorch links MKL (MEMORY_MOSAICS_BANK).
#pragma once

#include <torch/extension.h>

#include <vector>

// y (N, H, D) = softmax(q P_kᵀ) P_v per head, and the log-normalisers (H, N), for queries q (N, H, D).
std::vector<at::Tensor> bank_forward(const at::Tensor& q, const at::Tensor& P_k, const at::Tensor& P_v);

// ∂L/∂q, ∂L/∂P_k, ∂L/∂P_v from the gradient g (N, H, D) and the forward's y and log-normalisers.
std::vector<at::Tensor> bank_backward(const at::Tensor& g, const at::Tensor& q, const at::Tensor& P_k,
                                      const at::Tensor& P_v, const at::Tensor& y, const at::Tensor& lse);
