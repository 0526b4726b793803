#include "deltaserve/bench/load/report.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace deltaserve::load {
namespace {

constexpr double kKibPerMib = 1024.0;

double PerSecond(uint64_t count, double seconds) {
  return seconds > 0 ? static_cast<double>(count) / seconds : 0.0;
}

std::string Mib(int64_t kib) { return absl::StrFormat("%.1f", kib / kKibPerMib); }

// "forward 1523.4/s p50 1.02 p99 4.88 ms".
std::string RateAndLatency(absl::string_view name, const RpcStats::Snapshot& s, double seconds) {
  return absl::StrFormat("%s %.1f/s p50 %.2f p99 %.2f ms", name, PerSecond(s.Calls(), seconds),
                         s.latency.QuantileMs(0.5), s.latency.QuantileMs(0.99));
}

// One table row of the summary.
std::string SummaryRow(absl::string_view name, const RpcStats::Snapshot& s, double seconds) {
  return absl::StrFormat("%-12s %10d %10.1f %10d %8.2f %8.2f %8.2f  %s\n", name, s.Calls(),
                         PerSecond(s.Calls(), seconds), s.Count(absl::StatusCode::kOk),
                         s.latency.QuantileMs(0.5), s.latency.QuantileMs(0.99), s.max_ms,
                         FormatCodes(s));
}

// {"calls":N,"ok":N,"per_s":X,"p50_ms":X,"p99_ms":X,"codes":{"ABORTED":N},"bad_responses":N}
std::string RpcJson(const RpcStats::Snapshot& s, double seconds) {
  std::string codes;
  for (int i = 1; i < kStatusCodes; ++i) {
    if (s.codes[i] == 0) continue;
    absl::StrAppend(&codes, codes.empty() ? "" : ",", "\"",
                    absl::StatusCodeToString(static_cast<absl::StatusCode>(i)), "\":", s.codes[i]);
  }
  return absl::StrFormat(
      "{\"calls\":%d,\"ok\":%d,\"per_s\":%.2f,\"p50_ms\":%.3f,\"p99_ms\":%.3f,"
      "\"max_ms\":%.3f,\"codes\":{%s},\"bad_responses\":%d}",
      s.Calls(), s.Count(absl::StatusCode::kOk), PerSecond(s.Calls(), seconds),
      s.latency.QuantileMs(0.5), s.latency.QuantileMs(0.99), s.max_ms, codes, s.bad_responses);
}

std::string JsonString(absl::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) out.push_back(c);
  }
  return out + "\"";
}

std::string RssJson(const RssSummary& rss) {
  const std::string within = !rss.within_band.has_value() ? "null"
                             : *rss.within_band           ? "true"
                                                          : "false";
  return absl::StrFormat(
      "{\"first\":%d,\"last\":%d,\"min\":%d,\"max\":%d,\"warmup_s\":%.0f,"
      "\"samples_after_warmup\":%d,\"after_warmup_min\":%d,\"after_warmup_max\":%d,"
      "\"after_warmup_mean\":%.0f,\"band_low_pct\":%.2f,\"band_high_pct\":%.2f,"
      "\"criterion_pct\":%.1f,\"within_band\":%s}",
      rss.first ? rss.first->kib : -1, rss.last ? rss.last->kib : -1, rss.min_kib, rss.max_kib,
      rss.warmup_seconds, rss.samples_after_warmup, rss.warm_min_kib, rss.warm_max_kib,
      rss.warm_mean_kib, rss.band_low_pct, rss.band_high_pct, rss.criterion_pct, within);
}

std::string RssText(const RssSummary& rss) {
  if (!rss.first.has_value()) return "rss: n/a (no server pid)\n";
  std::string out =
      absl::StrFormat("rss MiB: first %s (t=%.0fs), last %s (t=%.0fs), min %s, max %s\n",
                      Mib(rss.first->kib), rss.first->seconds, Mib(rss.last->kib),
                      rss.last->seconds, Mib(rss.min_kib), Mib(rss.max_kib));
  if (rss.samples_after_warmup == 0) {
    return absl::StrCat(
        out, absl::StrFormat("rss after warm-up (%.0f s): no samples\n", rss.warmup_seconds));
  }
  const std::string verdict = !rss.within_band.has_value() ? "not checked"
                              : *rss.within_band           ? "within"
                                                           : "OUTSIDE";
  absl::StrAppend(
      &out, absl::StrFormat("rss after warm-up (t >= %.0f s, %d samples): min %s, "
                            "max %s, mean %s MiB; band %+.2f%% / %+.2f%% of mean "
                            "(criterion +/-%.1f%%: %s)\n",
                            rss.warmup_seconds, rss.samples_after_warmup, Mib(rss.warm_min_kib),
                            Mib(rss.warm_max_kib), Mib(static_cast<int64_t>(rss.warm_mean_kib)),
                            rss.band_low_pct, rss.band_high_pct, rss.criterion_pct, verdict));
  return out;
}

}  // namespace

Totals Totals::Minus(const Totals& earlier) const {
  return {forward.Minus(earlier.forward), submit.Minus(earlier.submit), watch.Minus(earlier.watch),
          watch_streams - earlier.watch_streams, duplicates - earlier.duplicates};
}

uint64_t Totals::UnexpectedErrors(const ExpectedCodes& expected) const {
  return load::UnexpectedErrors(forward, expected) + load::UnexpectedErrors(submit, expected) +
         load::UnexpectedErrors(watch, expected);
}

Totals TakeTotals(const LoadStats& stats) {
  return {stats.forward.Take(), stats.submit.Take(), stats.watch.Take(), stats.watch_streams.load(),
          stats.duplicates.load()};
}

RssSummary SummarizeRss(const std::vector<RssSample>& samples, double warmup_seconds,
                        double criterion_pct) {
  RssSummary rss;
  rss.warmup_seconds = warmup_seconds;
  rss.criterion_pct = criterion_pct;
  if (samples.empty()) return rss;
  rss.first = samples.front();
  rss.last = samples.back();
  rss.min_kib = rss.max_kib = samples.front().kib;
  double sum = 0;
  for (const RssSample& s : samples) {
    rss.min_kib = std::min(rss.min_kib, s.kib);
    rss.max_kib = std::max(rss.max_kib, s.kib);
    if (s.seconds < warmup_seconds) continue;
    if (rss.samples_after_warmup++ == 0) rss.warm_min_kib = rss.warm_max_kib = s.kib;
    rss.warm_min_kib = std::min(rss.warm_min_kib, s.kib);
    rss.warm_max_kib = std::max(rss.warm_max_kib, s.kib);
    sum += static_cast<double>(s.kib);
  }
  if (rss.samples_after_warmup == 0) return rss;
  rss.warm_mean_kib = sum / rss.samples_after_warmup;
  rss.band_low_pct = 100.0 * (rss.warm_min_kib - rss.warm_mean_kib) / rss.warm_mean_kib;
  rss.band_high_pct = 100.0 * (rss.warm_max_kib - rss.warm_mean_kib) / rss.warm_mean_kib;
  if (criterion_pct > 0) {
    rss.within_band = -rss.band_low_pct <= criterion_pct && rss.band_high_pct <= criterion_pct;
  }
  return rss;
}

std::string IntervalLine(double at_seconds, double interval_seconds, const Totals& delta,
                         const ExpectedCodes& expected, int64_t rss_kib) {
  const uint64_t aborted = delta.forward.Count(absl::StatusCode::kAborted) +
                           delta.submit.Count(absl::StatusCode::kAborted);
  return absl::StrFormat(
      "[%7.1fs] %s | %s | watch %.1f upd/s lag p50 %.2f p99 %.2f ms | aborted %d | "
      "errors %d | rss %s\n",
      at_seconds, RateAndLatency("forward", delta.forward, interval_seconds),
      RateAndLatency("submit", delta.submit, interval_seconds),
      PerSecond(delta.watch.Count(absl::StatusCode::kOk), interval_seconds),
      delta.watch.latency.QuantileMs(0.5), delta.watch.latency.QuantileMs(0.99), aborted,
      delta.UnexpectedErrors(expected), rss_kib < 0 ? "n/a" : Mib(rss_kib) + " MiB");
}

std::string SummaryText(const RunInfo& run, const Totals& totals, const ExpectedCodes& expected,
                        const RssSummary& rss, const std::string& result) {
  std::string out = absl::StrFormat(
      "== deltaserve_load summary: %.1f s%s, %d clients, %d watchers, rows %d, submit_every %d, "
      "target %s, model \"%s\", request_id %s ==\n",
      run.seconds, run.interrupted ? " (interrupted)" : "", run.clients, run.watchers, run.rows,
      run.submit_every, run.target, run.model, run.request_ids ? "set" : "not in proto");
  absl::StrAppend(
      &out, absl::StrFormat("%-12s %10s %10s %10s %8s %8s %8s  %s\n", "rpc", "calls", "calls/s",
                            "ok", "p50 ms", "p99 ms", "max ms", "non-OK codes"));
  absl::StrAppend(&out, SummaryRow("Forward", totals.forward, run.seconds),
                  SummaryRow("SubmitDelta", totals.submit, run.seconds),
                  SummaryRow("Watch", totals.watch, run.seconds));
  absl::StrAppend(&out,
                  absl::StrFormat("watch: %d streams opened, %d updates; latency column = lag from "
                                  "the SubmitDelta response that stepped to the push\n",
                                  totals.watch_streams, totals.watch.Count(absl::StatusCode::kOk)));
  absl::StrAppend(
      &out,
      absl::StrFormat("expected: ABORTED %d%s; duplicates %d\n",
                      totals.submit.Count(absl::StatusCode::kAborted),
                      expected.resource_exhausted
                          ? absl::StrCat(", RESOURCE_EXHAUSTED ",
                                         totals.submit.Count(absl::StatusCode::kResourceExhausted))
                          : "",
                      totals.duplicates));
  absl::StrAppend(&out, "unexpected errors: ", totals.UnexpectedErrors(expected), "\n");
  absl::StrAppend(&out, RssText(rss), "server: ", run.server, "\n", "result: ", result, "\n");
  return out;
}

std::string SummaryJson(const RunInfo& run, const Totals& totals, const ExpectedCodes& expected,
                        const RssSummary& rss, const std::string& result) {
  return absl::StrFormat(
      "DELTASERVE_LOAD_SUMMARY {\"seconds\":%.1f,\"interrupted\":%s,\"clients\":%d,"
      "\"watchers\":%d,\"rows\":%d,\"submit_every\":%d,\"target\":%s,\"model\":%s,"
      "\"forward\":%s,\"submit\":%s,\"watch\":%s,\"watch_streams\":%d,\"duplicates\":%d,"
      "\"aborted\":%d,\"unexpected_errors\":%d,\"rss_kib\":%s,\"server\":%s,"
      "\"server_ok\":%s,\"result\":%s}\n",
      run.seconds, run.interrupted ? "true" : "false", run.clients, run.watchers, run.rows,
      run.submit_every, JsonString(run.target), JsonString(run.model),
      RpcJson(totals.forward, run.seconds), RpcJson(totals.submit, run.seconds),
      RpcJson(totals.watch, run.seconds), totals.watch_streams, totals.duplicates,
      totals.submit.Count(absl::StatusCode::kAborted), totals.UnexpectedErrors(expected),
      RssJson(rss), JsonString(run.server), run.server_ok ? "true" : "false", JsonString(result));
}

}  // namespace deltaserve::load
