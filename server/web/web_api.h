// The live page and its HTTP API, served by the metrics endpoint
// (ServerMetrics::SetHttpHandler; docs/operations.md "The live page"):
//
//   GET /                                  the page (server/web/index.html)
//   GET /static/NAME                       its script, style and dygraphs
//   GET /api/models                        {"models":["default",...]}
//   GET /api/history?model=M[&since=MS]    {"model":"M","now_ms":N,
//                                           "series":{"loss":[[ms,v],...],...}}
//   GET /api/history.csv?model=M           "unix_ms,series,value" rows
//
// The data is the server's History (server/core/history.h): points with
// unix_ms > since, oldest first; a value that is not finite is null in JSON
// and empty in CSV. A bad request gets 400 (malformed query, since not an
// integer, model missing), 404 (unknown model or path) or 405 (not GET),
// with a one-line text body that says what was expected; nothing from the
// request is echoed back.
//
// With an authorize function (the server has --auth_file), /api/* needs an
// OBSERVER token in "Authorization: Bearer <token>" and the page at / the
// same header or ?token=<token> (the page's script then sends the header);
// 401 without a valid token, 403 for a role below OBSERVER. /static/ is the
// same bytes for everyone, built into the binary, and needs no token.
//
// Everything runs on the caller's thread (civetweb's); nothing is cached.
#ifndef DELTASERVE_SERVER_WEB_WEB_API_H_
#define DELTASERVE_SERVER_WEB_WEB_API_H_

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/server/core/history.h"
#include "deltaserve/server/core/metrics.h"

namespace deltaserve::server::web {

struct WebOptions {
  const History* history = nullptr;  // Not null; must outlive the handler.
  // OK if the Authorization value (nullopt: none) grants OBSERVER;
  // UNAUTHENTICATED or PERMISSION_DENIED otherwise. Empty: no auth.
  std::function<absl::Status(std::optional<absl::string_view>)> authorize;
  // The clock for "now_ms" (tests fix it). Empty: the system clock.
  std::function<int64_t()> now_ms;
};

// Answers one request (see above). Thread-safe; never throws.
HttpResponse HandleWebRequest(const WebOptions& options, const HttpRequest& request);

// A handler for ServerMetrics::SetHttpHandler.
HttpHandler MakeWebHandler(WebOptions options);

// The pieces, for tests.

// The query string's parameters, percent-decoded ('+' is a space).
// INVALID_ARGUMENT for a bad escape, a parameter given twice or one not in
// `allowed`, or a query longer than 4096 bytes.
absl::StatusOr<std::map<std::string, std::string>> ParseQuery(
    absl::string_view query, const std::vector<absl::string_view>& allowed);

std::string ModelsJson(const std::vector<std::string>& models);
std::string HistoryJson(absl::string_view model, int64_t now_ms,
                        const std::map<std::string, std::vector<HistoryPoint>>& series);
std::string HistoryCsv(const std::map<std::string, std::vector<HistoryPoint>>& series);

}  // namespace deltaserve::server::web

#endif  // DELTASERVE_SERVER_WEB_WEB_API_H_
