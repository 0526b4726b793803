#include "deltaserve/server/web/assets.h"

#include "absl/strings/match.h"

namespace deltaserve::server::web {

bool FindAsset(absl::string_view name, Asset* asset) {
  for (size_t i = 0; i < kNumEmbeddedFiles; ++i) {
    const EmbeddedFile& file = kEmbeddedFiles[i];
    if (name != file.name) continue;
    asset->bytes = absl::string_view(reinterpret_cast<const char*>(file.data), file.size);
    if (absl::EndsWith(name, ".html")) {
      asset->content_type = "text/html; charset=utf-8";
    } else if (absl::EndsWith(name, ".js")) {
      asset->content_type = "text/javascript; charset=utf-8";
    } else if (absl::EndsWith(name, ".css")) {
      asset->content_type = "text/css; charset=utf-8";
    } else {
      asset->content_type = "application/octet-stream";
    }
    return true;
  }
  return false;
}

}  // namespace deltaserve::server::web
