// A dense multi-layer perceptron over one flat float32 parameter buffer.
//
// Layout (fixed by the wire contract): for each layer l in order, its weight
// W_l [units × fan_in] row-major, then its bias b_l [units] — exactly
// torch.nn.Linear's weight and bias. Rows of X are samples:
//
//   A_0 = X [n × input_dim]
//   Z_l = A_{l-1} · W_lᵀ + 1·b_lᵀ,   A_l = act_l(Z_l)
//   Y   = A_L [n × output_dim]
//
// Mlp holds only the spec and derived offsets; it never owns parameters, so
// one Mlp serves every snapshot and every thread. Nothing here throws or
// aborts on user input: shape errors are INVALID_ARGUMENT.
#ifndef DELTASERVE_MODEL_MLP_H_
#define DELTASERVE_MODEL_MLP_H_

#include <cstddef>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::model {

class Mlp {
 public:
  // Caller-owned scratch for Forward/Backward: one per thread. Holds every
  // layer's activations from the last Forward, which Backward reuses.
  class Workspace {
   public:
    // Output Y of the last successful Forward with this workspace.
    const Matrix& output() const { return activations_.back(); }

   private:
    friend class Mlp;
    std::vector<Matrix> activations_;  // A_1 .. A_L of the last Forward
    // Backward's scratch, grown to n·(widest layer) and then reused, so a
    // steady batch size allocates nothing: ∂l/∂Z_l, then ∂l/∂A_{l-1}.
    std::vector<float> grad_a_;
    std::vector<float> grad_z_;
    // ForwardRowInvariant's layer outputs, alternately (rows padded; storage
    // for a chunk of rows of the widest layer).
    Matrix row_invariant_a_;
    Matrix row_invariant_b_;
  };

  // INVALID_ARGUMENT if ValidateMlpSpec(spec) fails.
  static absl::StatusOr<Mlp> Create(MlpSpec spec);

  const MlpSpec& spec() const { return spec_; }
  int input_dim() const { return spec_.input_dim; }
  int output_dim() const { return spec_.layers.back().units; }
  size_t parameter_count() const { return parameter_count_; }

  // Deterministic initial parameters from spec().seed, bit-identical on every
  // machine: Glorot-uniform weights for identity/tanh/sigmoid layers,
  // He-uniform for relu layers, zero biases. Uses std::mt19937_64 (whose
  // output the C++ standard fixes) with our own mapping to floats.
  std::vector<float> InitialParameters() const;

  // Y = f(X; params) into ws.output(). params.size() must equal
  // parameter_count(), X must be [n × input_dim()] with n ≥ 1, else
  // INVALID_ARGUMENT. Does not check finiteness. Thread-safe for distinct
  // workspaces (const, no shared mutable state).
  absl::Status Forward(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                       Workspace& ws) const;

  // Y = f(X; params) into *Y ([n × output_dim()], resized), each row of Y
  // bit-identical for the same input row and parameters whatever other rows X
  // holds and wherever in X the row is — which a plain Forward is not (Eigen
  // picks a matrix–vector kernel for 1 row and blocks a matrix product by its
  // size). A batch of several callers' rows thus gives each caller exactly
  // what it would get alone. The products run in tiles of rows that share
  // each load of the weights (model/dense_rows.h), so a batch of rows costs
  // less per row than rows one at a time once the weights outgrow the cache
  // (docs/benchmarks.md). The values equal Forward's up to float rounding.
  // Errors as Forward; does not check finiteness. `ws` is caller-owned
  // scratch (one per thread).
  absl::Status ForwardRowInvariant(absl::Span<const float> params,
                                   const Eigen::Ref<const Matrix>& X, Matrix* Y,
                                   Workspace& ws) const;

  // Convenience: Forward with a temporary workspace, returning a copy of Y.
  absl::StatusOr<Matrix> Forward(absl::Span<const float> params,
                                 const Eigen::Ref<const Matrix>& X) const;

  // Backpropagates dY = ∂l/∂Y [n × output_dim()] through the batch of the last
  // Forward(params, X, ws) (same params and X) and ADDS ∂l/∂Θ into grad (flat,
  // parameter layout) so gradients accumulate across calls. If dX is not null
  // it receives ∂l/∂X [n × input_dim()]. INVALID_ARGUMENT on shape mismatch;
  // FAILED_PRECONDITION if ws holds no Forward of an n-row batch. Allocates
  // only when the batch grows (and when *dX must be resized).
  absl::Status Backward(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                        Workspace& ws, const Eigen::Ref<const Matrix>& dY, absl::Span<float> grad,
                        Matrix* dX = nullptr) const;

  // The read-only vector-Jacobian product of the last Forward(params, X, ws)
  // (same params and X): *dX = ∂(Σ dY ⊙ Y)/∂X = dYᵀ·∂Y/∂X [n × input_dim()]
  // (resized), the ∂l/∂X that Backward gives for the same dY, without
  // computing or touching any parameter gradient. dY [n × output_dim()].
  // INVALID_ARGUMENT on shape mismatch; FAILED_PRECONDITION if ws holds no
  // Forward of an n-row batch. Leaves ws's activations as they were, so
  // several VJPs may follow one Forward. Allocates only when the batch grows
  // (and when *dX must be resized).
  absl::Status InputGradient(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                             Workspace& ws, const Eigen::Ref<const Matrix>& dY, Matrix* dX) const;

 private:
  struct LayerOffsets {
    size_t weight;  // index of W_l[0,0] in the flat buffer
    size_t bias;    // index of b_l[0]
    int fan_in;
    int units;
  };

  // Backward and InputGradient: grad == nullptr skips every parameter
  // gradient (∂l/∂W_l, ∂l/∂b_l); dX == nullptr skips ∂l/∂X.
  absl::Status BackPropagate(absl::Span<const float> params, const Eigen::Ref<const Matrix>& X,
                             Workspace& ws, const Eigen::Ref<const Matrix>& dY, float* grad,
                             Matrix* dX) const;

  Mlp(MlpSpec spec, std::vector<LayerOffsets> offsets, size_t parameter_count)
      : spec_(std::move(spec)), offsets_(std::move(offsets)), parameter_count_(parameter_count) {}

  MlpSpec spec_;
  std::vector<LayerOffsets> offsets_;
  size_t parameter_count_;
};

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_MLP_H_
