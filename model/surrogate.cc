#include "deltaserve/model/surrogate.h"

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model {
namespace {

absl::Status CheckShape(const char* what, const Eigen::Ref<const Matrix>& m, Eigen::Index rows,
                        Eigen::Index cols) {
  if (m.rows() != rows || m.cols() != cols) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": expected [", rows, " x ", cols,
                                                   "] like the outputs, got [", m.rows(), " x ",
                                                   m.cols(), "]"));
  }
  return absl::OkStatus();
}

}  // namespace

// ∂l_s/∂y = y − t = s·((y − ỹ) + ε·δ')  (kAnchored)   s·ε·δ'  (kCurrent)
// with δ' = ±δ by objective and s = 1 (kSum) or 1/(n·m) (kMean);
// l_s = ½‖y − t‖²·s, accumulated in double.
absl::StatusOr<double> Surrogate(const SurrogateConfig& config, Objective objective,
                                 const Eigen::Ref<const Matrix>& y,
                                 const Eigen::Ref<const Matrix>& acted,
                                 const Eigen::Ref<const Matrix>& delta, Matrix* grad_y) {
  DELTASERVE_RETURN_IF_ERROR(ValidateSurrogateConfig(config));
  if (objective != Objective::kMinimize && objective != Objective::kMaximize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "objective: expected MINIMIZE or MAXIMIZE, got enum value ", static_cast<int>(objective)));
  }
  DELTASERVE_RETURN_IF_ERROR(CheckShape("deltas", delta, y.rows(), y.cols()));
  const bool anchored = config.mode == SurrogateConfig::Mode::kAnchored && acted.rows() != 0;
  if (acted.rows() != 0)
    DELTASERVE_RETURN_IF_ERROR(CheckShape("acted outputs", acted, y.rows(), y.cols()));

  const float signed_scale =
      objective == Objective::kMaximize ? -config.delta_scale : config.delta_scale;
  grad_y->resize(y.rows(), y.cols());
  if (anchored) {
    grad_y->array() = (y.array() - acted.array()) + signed_scale * delta.array();
  } else {
    grad_y->array() = signed_scale * delta.array();
  }
  double loss = 0.5 * grad_y->cast<double>().squaredNorm();
  if (config.reduction == SurrogateConfig::Reduction::kMean && y.size() > 0) {
    const double count = static_cast<double>(y.size());
    loss /= count;
    *grad_y /= static_cast<float>(count);
  }
  return loss;
}

}  // namespace deltaserve::model
