// libFuzzer target: the server configuration path (what --config=FILE reads).
//
//   bytes as text → server::ParseServerConfig → PrepareServerConfig → for
//   each of the first kMaxModels models with at most kMaxParameters
//   parameters: TrainerOptionsFromProto → Trainer::Create → one Forward and
//   one Submit.
//
// Invariant: no crash or sanitizer report; parse and validation failures are
// INVALID_ARGUMENT; a config PrepareServerConfig accepts converts to
// TrainerOptions and a Trainer without error; Forward of a small finite
// batch succeeds at version 0; a small finite submission of
// min(samples_per_step, kMaxRows) rows is either applied (stepping exactly
// when it fills samples_per_step, version 0 → 1) or — when the config's
// hyper-parameters make its loss or gradient overflow — rejected with
// INVALID_ARGUMENT leaving the parameters bit-identical.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/fuzz/fuzz_util.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::fuzz {
namespace {

// Keep each input fast: models above this size are validated but not built.
constexpr uint64_t kMaxParameters = 100000;
constexpr int kMaxModels = 4;
constexpr uint32_t kMaxRows = 8;

// Σ units·(fan_in + 1), in 64 bits (no overflow for uint32 widths and a
// bounded layer count: PrepareServerConfig already rejected > INT32_MAX).
uint64_t ParameterCount(const deltaserve::v1::ModelSpec& spec) {
  uint64_t count = 0;
  uint64_t fan_in = spec.input_dim();
  for (const deltaserve::v1::LayerSpec& layer : spec.layers()) {
    count += static_cast<uint64_t>(layer.units()) * (fan_in + 1);
    fan_in = layer.units();
  }
  return count;
}

void RunModel(const deltaserve::v1::ModelSpec& spec) {
  const std::string why = absl::StrCat("model \"", spec.name(), "\"");
  absl::StatusOr<server::TrainerOptions> options = server::TrainerOptionsFromProto(spec);
  Check(options.ok(), absl::StrCat(why,
                                   ": PrepareServerConfig accepted it but "
                                   "TrainerOptionsFromProto says ",
                                   options.status().ToString()));
  std::unique_ptr<server::Trainer> trainer = MustCreate(*std::move(options));
  const std::vector<float> initial = trainer->snapshot()->parameters;

  server::Submission batch = KnownGood(*trainer, 2, 0);
  absl::StatusOr<server::ForwardResult> forward = trainer->Forward(batch.inputs);
  Check(forward.ok(),
        absl::StrCat(why, ": Forward of a finite batch failed: ", forward.status().ToString()));
  Check(forward->version == 0 && forward->outputs.rows() == 2 &&
            forward->outputs.cols() == trainer->mlp().output_dim(),
        absl::StrCat(why, ": Forward returned the wrong shape or version"));

  const uint32_t sps = trainer->options().samples_per_step;
  const uint32_t rows = sps < kMaxRows ? sps : kMaxRows;
  SubmitOutcome outcome = SubmitAndWait(*trainer, KnownGood(*trainer, static_cast<int>(rows), 0));
  if (!outcome.accepted()) {
    CheckBounded(outcome.status(), why);
    Check(outcome.status().code() == absl::StatusCode::kInvalidArgument,
          absl::StrCat(why,
                       ": a small finite submission failed with a code other than "
                       "INVALID_ARGUMENT: ",
                       outcome.status().ToString()));
    ExpectUnchanged(*trainer, initial, 0, absl::StrCat(why, ": rejected submission"));
    return;
  }
  const bool fills = rows >= sps;
  Check(outcome.result->stepped == fills && outcome.result->version == (fills ? 1u : 0u) &&
            trainer->snapshot()->version == outcome.result->version,
        absl::StrCat(why, ": ", rows, " rows with samples_per_step ", sps, " answered version ",
                     outcome.result->version, " stepped=", outcome.result->stepped));
  if (!fills) ExpectUnchanged(*trainer, initial, 0, absl::StrCat(why, ": accepted without a step"));
}

}  // namespace
}  // namespace deltaserve::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using deltaserve::fuzz::Check;
  const absl::string_view text(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<deltaserve::v1::ServerConfig> parsed = deltaserve::server::ParseServerConfig(text);
  if (!parsed.ok()) {
    deltaserve::fuzz::CheckBounded(parsed.status(), "ParseServerConfig");
    Check(parsed.status().code() == absl::StatusCode::kInvalidArgument,
          absl::StrCat("ParseServerConfig: ", parsed.status().ToString()));
    return 0;
  }
  absl::StatusOr<deltaserve::v1::ServerConfig> config =
      deltaserve::server::PrepareServerConfig(*std::move(parsed));
  if (!config.ok()) {
    deltaserve::fuzz::CheckBounded(config.status(), "PrepareServerConfig");
    Check(config.status().code() == absl::StatusCode::kInvalidArgument,
          absl::StrCat("PrepareServerConfig: ", config.status().ToString()));
    return 0;
  }
  Check(config->max_message_bytes() > 0, "PrepareServerConfig left max_message_bytes 0");
  int built = 0;
  for (const deltaserve::v1::ModelSpec& spec : config->models()) {
    Check(spec.samples_per_step() > 0 && spec.queue_capacity() > 0,
          "PrepareServerConfig left samples_per_step or queue_capacity 0");
    if (built == deltaserve::fuzz::kMaxModels) break;
    if (deltaserve::fuzz::ParameterCount(spec) > deltaserve::fuzz::kMaxParameters) continue;
    deltaserve::fuzz::RunModel(spec);
    ++built;
  }
  return 0;
}
