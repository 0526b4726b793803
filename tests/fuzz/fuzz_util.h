// Helpers shared by the libFuzzer targets (tests/fuzz/*_fuzzer.cc).
//
// Every target checks the same invariant as the unit tests: no crash, no
// sanitizer report, a rejected input changes no parameter (bit-identical) and
// the Trainer can still take a valid step afterwards. A violated invariant
// prints "INVARIANT VIOLATED: ..." and abort()s, which libFuzzer reports as a
// crash and saves the input (crash-<sha1>) for reproduction.
#ifndef DELTASERVE_TESTS_FUZZ_FUZZ_UTIL_H_
#define DELTASERVE_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/core/model_registry.h"
#include "deltaserve/server/core/trainer.h"
#include "google/protobuf/message.h"
#include "google/protobuf/text_format.h"

namespace deltaserve::fuzz {

// How long a queued submission may take to get its callback. The learner of
// a small model answers in microseconds; a callback that has not come after
// this long never will (a lost submission is a finding, not a slow run).
inline constexpr absl::Duration kCallbackTimeout = absl::Seconds(20);

[[noreturn]] inline void Fail(const std::string& what) {
  std::fprintf(stderr, "INVARIANT VIOLATED: %s\n", what.c_str());
  std::fflush(stderr);
  std::abort();
}

inline void Check(bool condition, const std::string& what) {
  if (!condition) Fail(what);
}

// Every error message an input provokes is at most this long: a client's
// string is quoted as a bounded slice (server::ClientString), never whole.
inline constexpr size_t kMaxErrorMessageBytes = 1024;

// `status` (an error) has a message of at most kMaxErrorMessageBytes.
inline void CheckBounded(const absl::Status& status, absl::string_view where) {
  Check(status.message().size() <= kMaxErrorMessageBytes,
        absl::StrCat(where, ": an error message of ", status.message().size(),
                     " bytes: ", status.message().substr(0, 200), "..."));
}

// The lookup every request's `model` goes through (ModelRegistry::Find, on a
// registry serving "m"): "" and "m" are found; any other name is
// INVALID_ARGUMENT (over kMaxModelNameBytes) or NOT_FOUND, with a bounded
// message.
inline void CheckModelLookup(const std::string& name) {
  static server::ModelRegistry* const registry = [] {
    auto created_metrics = server::ServerMetrics::Create({});
    Check(created_metrics.ok(), "ServerMetrics::Create failed");
    // Held by a static, like the registry, so LeakSanitizer sees them reachable.
    static server::ServerMetrics* const metrics = created_metrics->release();
    auto config = server::PrepareServerConfig(
        *server::ParseServerConfig(R"pb(models {
                                          name: "m"
                                          input_dim: 1
                                          layers { units: 1 activation: ACTIVATION_IDENTITY }
                                        })pb"));
    Check(config.ok(), "the lookup registry's config does not validate");
    auto created = server::ModelRegistry::Create(*config, metrics);
    Check(created.ok(), "ModelRegistry::Create failed");
    return created->release();  // Lives as long as the process.
  }();
  absl::StatusOr<server::ServedModel*> found = registry->Find(name);
  if (name.empty() || name == "m") {
    Check(found.ok(), absl::StrCat("model \"", name, "\" not found"));
    return;
  }
  Check(!found.ok(), "an unknown model was found");
  const absl::StatusCode want = name.size() > server::kMaxModelNameBytes
                                    ? absl::StatusCode::kInvalidArgument
                                    : absl::StatusCode::kNotFound;
  Check(found.status().code() == want,
        absl::StrCat("lookup of a name of ", name.size(), " bytes: ", found.status().code()));
  CheckBounded(found.status(), "model lookup");
}

// Input bytes as a message: protobuf text format when the first byte is '#'
// (a comment line, so the text seeds document themselves), binary wire format
// otherwise. False when the bytes do not parse (an input the server's gRPC
// layer would never hand to the service).
inline bool ParseInput(const uint8_t* data, size_t size, google::protobuf::Message* message) {
  if (size > 0 && data[0] == '#') {
    google::protobuf::TextFormat::Parser parser;
    parser.AllowPartialMessage(true);
    return parser.ParseFromString(std::string(reinterpret_cast<const char*>(data), size), message);
  }
  return message->ParseFromArray(data, static_cast<int>(size));
}

// Bit-for-bit equality of two parameter vectors (NaN == NaN, -0 != +0).
inline bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() &&
         (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

inline std::unique_ptr<server::Trainer> MustCreate(server::TrainerOptions options) {
  absl::StatusOr<std::unique_ptr<server::Trainer>> trainer =
      server::Trainer::Create(std::move(options));
  Check(trainer.ok(), absl::StrCat("Trainer::Create: ", trainer.status().ToString()));
  return *std::move(trainer);
}

// What became of one Submit: `queued` is Submit's own status; `result` the
// callback's (only when queued is OK).
struct SubmitOutcome {
  absl::Status queued;
  absl::StatusOr<server::SubmitResult> result = absl::UnknownError("not queued");
  bool accepted() const { return queued.ok() && result.ok(); }
  absl::Status status() const { return queued.ok() ? result.status() : queued; }
};

// Submits and waits for the callback. A queued submission whose callback
// does not come within kCallbackTimeout fails the run.
inline SubmitOutcome SubmitAndWait(server::Trainer& trainer, server::Submission submission) {
  // Shared with the callback, so that a late callback (after a failed wait
  // has aborted) never touches a dead stack frame.
  struct Slot {
    absl::Notification done;
    absl::StatusOr<server::SubmitResult> result;
  };
  auto slot = std::make_shared<Slot>();
  SubmitOutcome outcome;
  outcome.queued =
      trainer.Submit(std::move(submission), [slot](absl::StatusOr<server::SubmitResult> r) {
        slot->result = std::move(r);
        slot->done.Notify();
      });
  if (!outcome.queued.ok()) return outcome;
  Check(slot->done.WaitForNotificationWithTimeout(kCallbackTimeout),
        absl::StrCat("a queued submission got no callback within ",
                     absl::FormatDuration(kCallbackTimeout)));
  outcome.result = std::move(slot->result);
  return outcome;
}

// A submission the Trainer must accept: `rows` rows of small finite inputs
// and deltas (values depend on `salt`, so that successive ones differ), ỹ
// omitted, at `version`.
inline server::Submission KnownGood(const server::Trainer& trainer, int rows, uint64_t version,
                                    int salt = 0) {
  const int in = trainer.mlp().input_dim();
  const int out = trainer.mlp().output_dim();
  server::Submission s;
  s.inputs.resize(rows, in);
  s.deltas.resize(rows, out);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < in; ++c)
      s.inputs(r, c) = 0.1f * static_cast<float>((r + c + salt) % 7) - 0.3f;
    for (int c = 0; c < out; ++c) {
      s.deltas(r, c) = 0.05f * static_cast<float>((2 * r + c + salt) % 5) - 0.1f;
    }
  }
  s.version = version;
  return s;
}

// Submits a KnownGood submission with exactly samples_per_step rows at the
// current version and checks it is applied, completes a step and advances
// the version by one: the Trainer still works after whatever came before.
inline void ExpectValidStep(server::Trainer& trainer, absl::string_view after) {
  const uint64_t before = trainer.snapshot()->version;
  const int rows = static_cast<int>(trainer.options().samples_per_step);
  SubmitOutcome outcome = SubmitAndWait(trainer, KnownGood(trainer, rows, before, /*salt=*/3));
  Check(outcome.accepted(), absl::StrCat("after ", after, ": a valid submission was rejected: ",
                                         outcome.status().ToString()));
  Check(outcome.result->stepped && outcome.result->version == before + 1,
        absl::StrCat("after ", after, ": a valid samples_per_step submission at version ", before,
                     " answered version ", outcome.result->version,
                     " stepped=", outcome.result->stepped));
  Check(trainer.snapshot()->version == before + 1,
        absl::StrCat("after ", after, ": the snapshot is at version ", trainer.snapshot()->version,
                     ", expected ", before + 1));
}

// Parameters and version of the latest snapshot are exactly `params`/`version`.
inline void ExpectUnchanged(const server::Trainer& trainer, const std::vector<float>& params,
                            uint64_t version, absl::string_view why) {
  std::shared_ptr<const server::Snapshot> now = trainer.snapshot();
  Check(now->version == version,
        absl::StrCat(why, ": version moved from ", version, " to ", now->version));
  Check(BitIdentical(now->parameters, params),
        absl::StrCat(why, ": parameters are not bit-identical to before"));
}

}  // namespace deltaserve::fuzz

#endif  // DELTASERVE_TESTS_FUZZ_FUZZ_UTIL_H_
