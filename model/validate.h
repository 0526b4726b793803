// Input checks shared by model/ and the server.
#ifndef DELTASERVE_MODEL_VALIDATE_H_
#define DELTASERVE_MODEL_VALIDATE_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace deltaserve::model {

// OK if every value is finite; otherwise INVALID_ARGUMENT naming `what`, the
// first bad index and its value, e.g. "deltas: expected finite values, got nan
// at index 7". An empty span is OK.
absl::Status CheckFinite(absl::string_view what, absl::Span<const float> values);

}  // namespace deltaserve::model

#endif  // DELTASERVE_MODEL_VALIDATE_H_
