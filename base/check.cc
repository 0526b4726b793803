#include "deltaserve/base/check.h"

#include <cstdio>
#include <cstdlib>

namespace deltaserve::internal {

void CheckFailed(const char* condition, const char* file, int line, absl::string_view message) {
  std::fprintf(stderr, "deltaserve: CHECK failed: %s at %s:%d%s%.*s\n", condition, file, line,
               message.empty() ? "" : ": ", static_cast<int>(message.size()), message.data());
  std::fflush(stderr);
  std::abort();
}

}  // namespace deltaserve::internal
