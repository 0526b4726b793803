// The page's files, built into the binary: server/web/embed_files.cmake turns
// server/web/{index.html,page.js,page.css} and Debian's libjs-dygraphs files
// (dygraph.min.js, dygraph.css) into a generated .cc at build time, so the
// page needs nothing from the network or the disk at run time.
#ifndef DELTASERVE_SERVER_WEB_ASSETS_H_
#define DELTASERVE_SERVER_WEB_ASSETS_H_

#include <cstddef>

#include "absl/strings/string_view.h"

namespace deltaserve::server::web {

// One embedded file: its base name ("dygraph.min.js") and bytes.
struct EmbeddedFile {
  const char* name;
  const unsigned char* data;
  size_t size;
};

// Defined by the generated file (embedded_files.cc in the build tree).
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kNumEmbeddedFiles;

struct Asset {
  absl::string_view content_type;
  absl::string_view bytes;
};

// The embedded file called `name` (a base name, e.g. "page.js"), or false.
bool FindAsset(absl::string_view name, Asset* asset);

}  // namespace deltaserve::server::web

#endif  // DELTASERVE_SERVER_WEB_ASSETS_H_
