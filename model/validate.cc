#include "model/validate.h"

#include <cmath>
#include <cstddef>

#include "absl/strings/str_cat.h"

namespace deltaserve::model {

absl::Status CheckFinite(absl::string_view what, absl::Span<const float> values) {
  for (size_t i = 0; i < values.size(); ++i) {
    if (!std::isfinite(values[i])) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": expected finite values, got ", values[i], " at index ", i));
    }
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::model
