// Helpers for tests that read the trainer's Prometheus endpoint: an HTTP GET
// over a plain loopback socket and a lookup of one sample in the text format.
// Header-only, no gRPC or prometheus-cpp dependency (the binary test uses it).
#ifndef DELTASERVE_TESTS_SERVER_METRICS_SCRAPE_H_
#define DELTASERVE_TESTS_SERVER_METRICS_SCRAPE_H_

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <optional>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace deltaserve::server::testing {

// An HTTP/1.0 GET of http://127.0.0.1:port/path: {status line, body}, or
// nullopt if the connection fails. Reads until the server closes (10 s
// receive timeout so a broken server fails the test instead of hanging it).
inline std::optional<std::pair<std::string, std::string>> HttpGet(int port,
                                                                  absl::string_view path) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::nullopt;
  timeval timeout{/*tv_sec=*/10, /*tv_usec=*/0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return std::nullopt;
  }
  const std::string request = absl::StrCat("GET ", path, " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
  if (send(fd, request.data(), request.size(), 0) != static_cast<ssize_t>(request.size())) {
    close(fd);
    return std::nullopt;
  }
  std::string response;
  char buf[4096];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) response.append(buf, static_cast<size_t>(n));
  close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return std::nullopt;
  return std::make_pair(response.substr(0, response.find("\r\n")), response.substr(header_end + 4));
}

// The value of the sample `name{labels}` in Prometheus text format, matching
// the label set exactly (in any order); nullopt if there is no such sample.
inline std::optional<double> Sample(absl::string_view text, absl::string_view name,
                                    const std::map<std::string, std::string>& labels) {
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    if (line.empty() || line[0] == '#') continue;
    const size_t brace = line.find('{');
    const size_t close = line.rfind('}');
    absl::string_view metric = line.substr(0, std::min(brace, line.find(' ')));
    if (metric != name) continue;
    std::map<std::string, std::string> got;
    absl::string_view rest = line;
    if (brace != absl::string_view::npos && close != absl::string_view::npos) {
      for (absl::string_view pair :
           absl::StrSplit(line.substr(brace + 1, close - brace - 1), ',', absl::SkipEmpty())) {
        const size_t eq = pair.find('=');
        if (eq == absl::string_view::npos || pair.size() < eq + 3) continue;
        got[std::string(pair.substr(0, eq))] =
            std::string(pair.substr(eq + 2, pair.size() - eq - 3));  // Strip the quotes.
      }
      rest = line.substr(close + 1);
    } else {
      rest = line.substr(metric.size());
    }
    if (got != labels) continue;
    double value = 0;
    if (absl::SimpleAtod(absl::StripAsciiWhitespace(rest), &value)) return value;
  }
  return std::nullopt;
}

// Scrapes http://127.0.0.1:port/metrics until `name{labels}` equals `want`
// or `wait` passes; the last value seen (nullopt if never present). For
// effects the server records after the event a test can see.
inline std::optional<double> AwaitSample(int port, absl::string_view name,
                                         const std::map<std::string, std::string>& labels,
                                         double want, absl::Duration wait = absl::Seconds(10)) {
  const absl::Time deadline = absl::Now() + wait;
  while (true) {
    auto response = HttpGet(port, "/metrics");
    std::optional<double> value =
        response.has_value() ? Sample(response->second, name, labels) : std::nullopt;
    if (value == want || absl::Now() >= deadline) return value;
    absl::SleepFor(absl::Milliseconds(20));  // Polls the endpoint; not a synchronisation.
  }
}

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_METRICS_SCRAPE_H_
