// The squared-loss surrogate that turns a client's δ into ∂l_s/∂y.
//
// For a submission (X, ỹ, δ) with the server's current output y = f(X; Θ):
//
//   δ' = −δ if objective is kMaximize, else δ
//   t  = ỹ − ε·δ'   (kAnchored)      t = y − ε·δ'   (kCurrent)
//   l_s = ½‖y − t‖²  (kSum)          ½‖y − t‖² / (n·m)   (kMean)
//   ∂l_s/∂y = y − t = (y − ỹ) + ε·δ'  (kAnchored)   ε·δ'  (kCurrent)
//                                     (÷ n·m for kMean)
//
// Descending l_s therefore descends the client's loss: the published form
// t = ỹ + δ would ascend it.
#ifndef DELTASERVE_MODEL_SURROGATE_H_
#define DELTASERVE_MODEL_SURROGATE_H_

#include "absl/status/statusor.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::model {

// Returns l_s and writes ∂l_s/∂y into *grad_y (resized to y's shape).
// y and delta must have the same shape; `acted` (ỹ) must too, or have 0 rows,
// which means ỹ = y. INVALID_ARGUMENT on a shape mismatch.
absl::StatusOr<double> Surrogate(const SurrogateConfig& config, Objective objective,
                                 const Eigen::Ref<const Matrix>& y,
                                 const Eigen::Ref<const Matrix>& acted,
                                 const Eigen::Ref<const Matrix>& delta, Matrix* grad_y);

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_SURROGATE_H_
