#include "deltaserve/model/mlp.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/model/dense_rows.h"

namespace deltaserve::model {
namespace {

using RowVectorMap = Eigen::Map<Eigen::RowVectorXf>;
using ConstRowVectorMap = Eigen::Map<const Eigen::RowVectorXf>;

// Uniform bound a of the initial weights of a layer, as in torch.nn.init:
//   Glorot (xavier_uniform_):   a = √(6 / (fan_in + fan_out))  identity/tanh/sigmoid
//   He (kaiming_uniform_ relu): a = √(6 / fan_in)              relu
double InitBound(Activation activation, int fan_in, int fan_out) {
  if (activation == Activation::kRelu) return std::sqrt(6.0 / fan_in);
  return std::sqrt(6.0 / (static_cast<double>(fan_in) + fan_out));
}

// A ← act(A) in place, as one contiguous vectorised array operation (a
// row-wise broadcast inside the same expression would make Eigen fall back to
// scalar tanh/logistic).
void Activate(Activation activation, MatrixMap& a) {
  switch (activation) {
    case Activation::kIdentity:
      return;
    case Activation::kTanh:
      a.array() = a.array().tanh();
      return;
    case Activation::kRelu:
      a.array() = a.array().max(0.0f);
      return;
    case Activation::kSigmoid:
      a.array() = a.array().logistic();
      return;
  }
}

// G ← G ⊙ act'(Z), with act' written in terms of A = act(Z):
//   identity 1,  tanh 1 − A²,  relu [A > 0],  sigmoid A ⊙ (1 − A).
void MultiplyByActivationDerivative(Activation activation, const Matrix& a, MatrixMap& g) {
  switch (activation) {
    case Activation::kIdentity:
      return;
    case Activation::kTanh:
      g.array() *= 1.0f - a.array().square();
      return;
    case Activation::kRelu:
      g.array() = (a.array() > 0.0f).select(g.array(), 0.0f);
      return;
    case Activation::kSigmoid:
      g.array() *= a.array() * (1.0f - a.array());
      return;
  }
}

absl::Status CheckBatch(int input_dim, const Eigen::Ref<const Matrix>& x) {
  if (x.rows() < 1 || x.cols() != input_dim) {
    return absl::InvalidArgumentError(absl::StrCat("inputs: expected [n x ", input_dim,
                                                   "] with n >= 1, got [", x.rows(), " x ",
                                                   x.cols(), "]"));
  }
  return absl::OkStatus();
}

absl::Status CheckSize(const char* what, size_t expected, size_t got) {
  if (expected != got) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": expected ", expected, " floats, got ", got));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<Mlp> Mlp::Create(MlpSpec spec) {
  DELTASERVE_RETURN_IF_ERROR(ValidateMlpSpec(spec));
  std::vector<LayerOffsets> offsets;
  offsets.reserve(spec.layers.size());
  size_t next = 0;
  int fan_in = spec.input_dim;
  for (const LayerSpec& layer : spec.layers) {
    LayerOffsets o;
    o.weight = next;
    o.bias = next + static_cast<size_t>(layer.units) * fan_in;
    o.fan_in = fan_in;
    o.units = layer.units;
    offsets.push_back(o);
    next = o.bias + layer.units;
    fan_in = layer.units;
  }
  return Mlp(std::move(spec), std::move(offsets), next);
}

// Initialisation, bit-identical on every machine. One std::mt19937_64 seeded
// with spec().seed draws the weights of layer 0, 1, ... in flat (row-major)
// order; biases are zero and consume no draws. Each 64-bit draw r becomes
//
//   k = r >> 40                      (top 24 bits, 0 ≤ k < 2²⁴)
//   u = (2k + 1 − 2²⁴) / 2²⁴         (exact in double, symmetric in (−1, 1))
//   w = float(u · a)                 (one correctly rounded double product)
//
// with a = InitBound(activation, fan_in, units) computed in double (sqrt is
// correctly rounded). No std::*_distribution is involved, so the result does
// not depend on the standard library.
std::vector<float> Mlp::InitialParameters() const {
  std::vector<float> params(parameter_count_, 0.0f);
  std::mt19937_64 engine(spec_.seed);
  constexpr double kTwo24 = 16777216.0;
  for (size_t l = 0; l < offsets_.size(); ++l) {
    const LayerOffsets& o = offsets_[l];
    const double a = InitBound(spec_.layers[l].activation, o.fan_in, o.units);
    const size_t count = static_cast<size_t>(o.units) * o.fan_in;
    for (size_t i = 0; i < count; ++i) {
      const uint64_t k = engine() >> 40;
      const double u = (2.0 * static_cast<double>(k) + 1.0 - kTwo24) / kTwo24;
      params[o.weight + i] = static_cast<float>(u * a);
    }
  }
  return params;
}

// Forward, layer by layer (rows are samples):
//   A_0 = X,   A_l = act_l(A_{l-1} · W_lᵀ + 1·b_lᵀ)
// A_l's storage is first filled with the bias rows and the product is
// accumulated onto them (a GEMM with β = 1, so the bias add costs no extra
// pass and Eigen skips its zero fill); then the activation runs in place.
absl::Status Mlp::Forward(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                          Workspace& ws) const {
  DELTASERVE_RETURN_IF_ERROR(CheckSize("parameters", parameter_count_, params.size()));
  DELTASERVE_RETURN_IF_ERROR(CheckBatch(spec_.input_dim, X));
  const Eigen::Index n = X.rows();
  ws.activations_.resize(offsets_.size());
  for (size_t l = 0; l < offsets_.size(); ++l) {
    const LayerOffsets& o = offsets_[l];
    ConstMatrixMap w(params.data() + o.weight, o.units, o.fan_in);
    ConstRowVectorMap b(params.data() + o.bias, o.units);
    Matrix& out = ws.activations_[l];
    out.resize(n, o.units);  // No allocation when the shape is unchanged.
    MatrixMap a(out.data(), n, o.units);
    for (Eigen::Index i = 0; i < n; ++i) a.row(i) = b;
    if (l == 0) {
      a.noalias() += X * w.transpose();
    } else {
      a.noalias() += ws.activations_[l - 1] * w.transpose();
    }
    Activate(spec_.layers[l].activation, a);
  }
  return absl::OkStatus();
}

// ForwardRowInvariant, in chunks of rows, layer by layer, each layer's
// product by DenseRows (dense_rows.h: a row's sums never depend on the other
// rows, so neither do the chunk boundaries). A chunk holds at most
// kChunkBytes of one layer's outputs (and at most kChunkRows rows), so the
// scratch stays bounded whatever the request's size. Layer outputs go to rows
// padded to a multiple of 16 floats in a 64-byte-aligned buffer, so every row
// starts equally aligned and the activation (Eigen splits an array into
// vector packets and a scalar remainder by address) treats each row alike.
absl::Status Mlp::ForwardRowInvariant(absl::Span<const float> params,
                                      const Eigen::Ref<const Matrix>& X, Matrix* Y,
                                      Workspace& ws) const {
  DELTASERVE_RETURN_IF_ERROR(CheckSize("parameters", parameter_count_, params.size()));
  DELTASERVE_RETURN_IF_ERROR(CheckBatch(spec_.input_dim, X));
  static_assert(EIGEN_MAX_ALIGN_BYTES >= 64, "rows are padded for 64-byte alignment");
  constexpr Eigen::Index kRowAlignFloats = 16;
  constexpr Eigen::Index kChunkRows = 256;
  constexpr Eigen::Index kChunkBytes = Eigen::Index{1} << 20;
  auto padded = [](int units) {
    return (units + kRowAlignFloats - 1) / kRowAlignFloats * kRowAlignFloats;
  };
  Eigen::Index widest = 0;
  for (const LayerOffsets& o : offsets_) widest = std::max(widest, padded(o.units));
  constexpr Eigen::Index kChunkRowMultiple = 8;  // Whole row tiles (dense_rows_kernel.cc).
  const Eigen::Index chunk_rows = std::clamp<Eigen::Index>(
      kChunkBytes / (widest * Eigen::Index{sizeof(float)}) / kChunkRowMultiple * kChunkRowMultiple,
      kChunkRowMultiple, kChunkRows);

  const Eigen::Index n = X.rows();
  Y->resize(n, output_dim());
  for (Eigen::Index first = 0; first < n; first += chunk_rows) {
    const Eigen::Index rows = std::min(chunk_rows, n - first);
    const float* in = X.data() + first * X.outerStride();
    Eigen::Index in_stride = X.outerStride();
    for (size_t l = 0; l < offsets_.size(); ++l) {
      const LayerOffsets& o = offsets_[l];
      // Storage only, grown to a chunk's rows of the widest layer and never
      // shrunk, so steady traffic allocates nothing whatever the widths.
      Matrix& buffer = l % 2 == 0 ? ws.row_invariant_a_ : ws.row_invariant_b_;
      const Eigen::Index needed_rows = std::min(n, chunk_rows);
      if (buffer.size() < needed_rows * widest) buffer.resize(needed_rows, widest);
      float* out = buffer.data();
      const Eigen::Index stride = padded(o.units);
      DenseRows(in, in_stride, rows, params.data() + o.weight, params.data() + o.bias, o.fan_in,
                o.units, out, stride);
      for (Eigen::Index r = 0; r < rows; ++r) {
        MatrixMap row(out + r * stride, 1, o.units);
        Activate(spec_.layers[l].activation, row);
      }
      in = out;
      in_stride = stride;
    }
    for (Eigen::Index r = 0; r < rows; ++r) {
      Y->row(first + r) = ConstMatrixMap(in + r * in_stride, 1, output_dim());
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Matrix> Mlp::Forward(absl::Span<const float> params,
                                    const Eigen::Ref<const Matrix>& X) const {
  Workspace ws;
  DELTASERVE_RETURN_IF_ERROR(Forward(params, X, ws));
  return std::move(ws.activations_.back());
}

// Backward, from the last layer down, with G_l = ∂l/∂Z_l:
//   G_L     = dY ⊙ act_L'(Z_L)
//   ∂l/∂W_l += G_lᵀ · A_{l-1}        [units × fan_in], row-major like W_l
//   ∂l/∂b_l += G_lᵀ · 1              (column sums of G_l)
//   ∂l/∂A_{l-1} = G_l · W_l,   G_{l-1} = ∂l/∂A_{l-1} ⊙ act_{l-1}'(Z_{l-1})
//   ∂l/∂X = G_1 · W_1                (only when asked for)
// G lives in grad_z_, ∂l/∂A_{l-1} is written to grad_a_, and the two buffers
// swap roles for the next layer down (the derivative is applied in place).
// Without grad (InputGradient) the ∂l/∂W_l and ∂l/∂b_l lines are skipped:
// the products that carry G down are the same, so ∂l/∂X is the same bits.
absl::Status Mlp::Backward(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                           Workspace& ws, const Eigen::Ref<const Matrix>& dY,
                           absl::Span<float> grad, Matrix* dX) const {
  DELTASERVE_RETURN_IF_ERROR(CheckSize("gradient", parameter_count_, grad.size()));
  return BackPropagate(params, X, ws, dY, grad.data(), dX);
}

absl::Status Mlp::InputGradient(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                                Workspace& ws, const Eigen::Ref<const Matrix>& dY,
                                Matrix* dX) const {
  if (dX == nullptr) return absl::InvalidArgumentError("input gradient: expected an output matrix");
  return BackPropagate(params, X, ws, dY, /*grad=*/nullptr, dX);
}

absl::Status Mlp::BackPropagate(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                                Workspace& ws, const Eigen::Ref<const Matrix>& dY, float* grad,
                                Matrix* dX) const {
  DELTASERVE_RETURN_IF_ERROR(CheckSize("parameters", parameter_count_, params.size()));
  DELTASERVE_RETURN_IF_ERROR(CheckBatch(spec_.input_dim, X));
  const Eigen::Index n = X.rows();
  if (dY.rows() != n || dY.cols() != output_dim()) {
    return absl::InvalidArgumentError(absl::StrCat("output gradient: expected [", n, " x ",
                                                   output_dim(), "], got [", dY.rows(), " x ",
                                                   dY.cols(), "]"));
  }
  if (ws.activations_.size() != offsets_.size() || ws.activations_.back().rows() != n) {
    return absl::FailedPreconditionError(
        absl::StrCat("workspace: expected the activations of a Forward of ", n,
                     " rows with this workspace before Backward"));
  }
  int widest = spec_.input_dim;
  for (const LayerOffsets& o : offsets_) widest = std::max(widest, o.units);
  const size_t capacity = static_cast<size_t>(n) * widest;
  if (ws.grad_a_.size() < capacity) ws.grad_a_.resize(capacity);
  if (ws.grad_z_.size() < capacity) ws.grad_z_.resize(capacity);

  const size_t last = offsets_.size() - 1;
  {
    MatrixMap g(ws.grad_z_.data(), n, offsets_[last].units);
    g = dY;
  }
  for (size_t l = last + 1; l-- > 0;) {
    const LayerOffsets& o = offsets_[l];
    const Matrix& a = ws.activations_[l];
    MatrixMap g(ws.grad_z_.data(), n, o.units);
    MultiplyByActivationDerivative(spec_.layers[l].activation, a, g);

    if (grad != nullptr) {
      MatrixMap dw(grad + o.weight, o.units, o.fan_in);
      if (l == 0) {
        dw.noalias() += g.transpose() * X;
      } else {
        dw.noalias() += g.transpose() * ws.activations_[l - 1];
      }
      RowVectorMap db(grad + o.bias, o.units);
      for (Eigen::Index i = 0; i < n; ++i) db += g.row(i);
    }

    ConstMatrixMap w(params.data() + o.weight, o.units, o.fan_in);
    if (l > 0) {
      MatrixMap da(ws.grad_a_.data(), n, o.fan_in);
      da.noalias() = g * w;
      std::swap(ws.grad_a_, ws.grad_z_);
    } else if (dX != nullptr) {
      dX->resize(n, o.fan_in);
      dX->noalias() = g * w;
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::model
