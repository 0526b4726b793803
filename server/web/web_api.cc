#include "deltaserve/server/web/web_api.h"

#include <charconv>
#include <cmath>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "deltaserve/server/web/assets.h"

namespace deltaserve::server::web {
namespace {

constexpr size_t kMaxQueryBytes = 4096;
constexpr absl::string_view kText = "text/plain; charset=utf-8";

HttpResponse Text(int status, absl::string_view line) {
  return {status, std::string(kText), absl::StrCat(line, "\n")};
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes `in` ('+' is a space); false for a bad escape.
bool Decode(absl::string_view in, std::string* out) {
  out->clear();
  out->reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    const char c = in[i];
    if (c == '+') {
      out->push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= in.size()) return false;
      const int hi = HexDigit(in[i + 1]);
      const int lo = HexDigit(in[i + 2]);
      if (hi < 0 || lo < 0) return false;
      out->push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out->push_back(c);
    }
  }
  return true;
}

// JSON string literal of `s` (control characters and non-ASCII bytes as
// \u00XX, so the output is ASCII whatever the input).
void AppendJsonString(std::string* out, absl::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out->push_back('"');
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (u < 0x20 || u >= 0x7f) {
      out->append("\\u00");
      out->push_back(kHex[u >> 4]);
      out->push_back(kHex[u & 15]);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

// The shortest text that reads back as `value`; `non_finite` for NaN / inf.
void AppendNumber(std::string* out, double value, absl::string_view non_finite) {
  if (!std::isfinite(value)) {
    out->append(non_finite.data(), non_finite.size());
    return;
  }
  char buf[32];
  const std::to_chars_result result = std::to_chars(buf, buf + sizeof(buf), value);
  out->append(buf, result.ptr);
}

// A CSV field: quoted (quotes doubled) if it holds a comma, quote or line break.
void AppendCsvField(std::string* out, absl::string_view s) {
  if (s.find_first_of(",\"\r\n") == absl::string_view::npos) {
    out->append(s.data(), s.size());
    return;
  }
  out->push_back('"');
  for (const char c : s) {
    if (c == '"') out->push_back('"');
    out->push_back(c);
  }
  out->push_back('"');
}

bool KnownModel(const History& history, absl::string_view model) {
  for (const std::string& known : history.Models()) {
    if (known == model) return true;
  }
  return false;
}

// OK, or the response refusing the request (401 / 403).
std::optional<HttpResponse> Refuse(const WebOptions& options,
                                   std::optional<absl::string_view> authorization) {
  if (!options.authorize) return std::nullopt;
  const absl::Status status = options.authorize(authorization);
  if (status.ok()) return std::nullopt;
  if (status.code() == absl::StatusCode::kPermissionDenied) {
    return Text(403, "forbidden: expected a token whose role is OBSERVER or above");
  }
  return Text(401,
              "unauthorized: expected an OBSERVER token (Authorization: Bearer <token>, or "
              "?token=<token> on the page's address)");
}

HttpResponse HistoryResponse(const WebOptions& options, const HttpRequest& request, bool csv) {
  const absl::StatusOr<std::map<std::string, std::string>> params =
      csv ? ParseQuery(request.query, {"model"}) : ParseQuery(request.query, {"model", "since"});
  if (!params.ok()) return Text(400, params.status().message());
  const auto model = params->find("model");
  if (model == params->end() || model->second.empty()) {
    return Text(400, csv ? "expected ?model=NAME (a model /api/models lists)"
                         : "expected ?model=NAME[&since=UNIX_MS] (a model /api/models lists)");
  }
  int64_t since = -1;
  if (const auto it = params->find("since"); it != params->end()) {
    if (!absl::SimpleAtoi(it->second, &since)) {
      return Text(400, "expected since=UNIX_MS, an integer (milliseconds since 1970)");
    }
  }
  if (!KnownModel(*options.history, model->second)) {
    return Text(404, "unknown model: expected a name /api/models lists");
  }
  const std::map<std::string, std::vector<HistoryPoint>> series =
      options.history->Read(model->second, since);
  if (csv) return {200, "text/csv; charset=utf-8", HistoryCsv(series)};
  const int64_t now = options.now_ms ? options.now_ms() : absl::ToUnixMillis(absl::Now());
  return {200, "application/json", HistoryJson(model->second, now, series)};
}

HttpResponse Page(const WebOptions& options, const HttpRequest& request) {
  const absl::StatusOr<std::map<std::string, std::string>> params =
      ParseQuery(request.query, {"token", "model"});
  if (!params.ok()) return Text(400, params.status().message());
  std::optional<absl::string_view> authorization = request.authorization;
  std::string from_query;
  if (!authorization.has_value()) {
    if (const auto it = params->find("token"); it != params->end()) {
      from_query = absl::StrCat("Bearer ", it->second);
      authorization = from_query;
    }
  }
  if (std::optional<HttpResponse> refused = Refuse(options, authorization)) return *refused;
  Asset asset;
  if (!FindAsset("index.html", &asset)) return Text(404, "the page is not built in");
  return {200, std::string(asset.content_type), std::string(asset.bytes)};
}

}  // namespace

absl::StatusOr<std::map<std::string, std::string>> ParseQuery(
    absl::string_view query, const std::vector<absl::string_view>& allowed) {
  std::map<std::string, std::string> params;
  if (query.size() > kMaxQueryBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("query too long: expected at most ", kMaxQueryBytes, " bytes"));
  }
  std::string key;
  std::string value;
  for (absl::string_view pair : absl::StrSplit(query, '&', absl::SkipEmpty())) {
    const size_t eq = pair.find('=');
    if (!Decode(pair.substr(0, eq), &key) ||
        !Decode(eq == absl::string_view::npos ? absl::string_view() : pair.substr(eq + 1),
                &value)) {
      return absl::InvalidArgumentError("malformed query: expected %XX escapes of two hex digits");
    }
    bool ok = false;
    for (absl::string_view name : allowed) ok = ok || key == name;
    if (!ok) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown query parameter: expected ", absl::StrJoin(allowed, ", ")));
    }
    if (!params.emplace(key, value).second) {
      return absl::InvalidArgumentError("query parameter given twice: expected each at most once");
    }
  }
  return params;
}

std::string ModelsJson(const std::vector<std::string>& models) {
  std::string out = "{\"models\":[";
  for (size_t i = 0; i < models.size(); ++i) {
    if (i > 0) out.push_back(',');
    AppendJsonString(&out, models[i]);
  }
  out.append("]}");
  return out;
}

std::string HistoryJson(absl::string_view model, int64_t now_ms,
                        const std::map<std::string, std::vector<HistoryPoint>>& series) {
  size_t points = 0;
  for (const auto& [name, values] : series) points += values.size();
  std::string out;
  out.reserve(64 + 32 * points);
  out.append("{\"model\":");
  AppendJsonString(&out, model);
  absl::StrAppend(&out, ",\"now_ms\":", now_ms, ",\"series\":{");
  bool first_series = true;
  for (const auto& [name, values] : series) {
    if (!first_series) out.push_back(',');
    first_series = false;
    AppendJsonString(&out, name);
    out.append(":[");
    for (size_t i = 0; i < values.size(); ++i) {
      if (i > 0) out.push_back(',');
      absl::StrAppend(&out, "[", values[i].unix_ms, ",");
      AppendNumber(&out, values[i].value, "null");
      out.push_back(']');
    }
    out.push_back(']');
  }
  out.append("}}");
  return out;
}

std::string HistoryCsv(const std::map<std::string, std::vector<HistoryPoint>>& series) {
  std::string out = "unix_ms,series,value\n";
  for (const auto& [name, values] : series) {
    for (const HistoryPoint& point : values) {
      absl::StrAppend(&out, point.unix_ms, ",");
      AppendCsvField(&out, name);
      out.push_back(',');
      AppendNumber(&out, point.value, "");
      out.push_back('\n');
    }
  }
  return out;
}

HttpResponse HandleWebRequest(const WebOptions& options, const HttpRequest& request) {
  if (request.method != "GET") return Text(405, "method not allowed: expected GET");
  const absl::string_view path = request.path;
  if (path == "/" || path == "/index.html") return Page(options, request);
  if (absl::StartsWith(path, "/static/")) {
    Asset asset;
    const absl::string_view name = path.substr(8);
    if (name == "index.html" || !FindAsset(name, &asset)) {
      return Text(404, "not found: expected /static/ and a file the page names");
    }
    return {200, std::string(asset.content_type), std::string(asset.bytes)};
  }
  if (absl::StartsWith(path, "/api/")) {
    if (std::optional<HttpResponse> refused = Refuse(options, request.authorization)) {
      return *refused;
    }
    if (path == "/api/models") {
      if (!request.query.empty()) return Text(400, "expected no query for /api/models");
      return {200, "application/json", ModelsJson(options.history->Models())};
    }
    if (path == "/api/history") return HistoryResponse(options, request, /*csv=*/false);
    if (path == "/api/history.csv") return HistoryResponse(options, request, /*csv=*/true);
  }
  return Text(404,
              "not found: expected /, /metrics, /api/models, /api/history?model=M[&since=MS] "
              "or /api/history.csv?model=M");
}

HttpHandler MakeWebHandler(WebOptions options) {
  return [options = std::move(options)](const HttpRequest& request) {
    return HandleWebRequest(options, request);
  };
}

}  // namespace deltaserve::server::web
