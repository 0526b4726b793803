// Loading, defaulting and validating the server's configuration
// (deltaserve.v1.ServerConfig, protobuf text format).
#ifndef DELTASERVE_SERVER_CORE_CONFIG_H_
#define DELTASERVE_SERVER_CORE_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/proto/config_defaults.h"
#include "deltaserve/server/core/forward_batcher.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::server {

// ModelSpec.max_queue_delay_us above this is INVALID_ARGUMENT.
inline constexpr uint32_t kMaxQueueDelayMicros = 1'000'000;

// Any message from protobuf text format: INVALID_ARGUMENT "not a TYPE in text
// format: line L, column C: ..." for the first error. LoadTextMessage reads
// `path` first (NOT_FOUND if it cannot be opened) and prefixes errors with it.
absl::Status ParseTextMessage(absl::string_view text, google::protobuf::Message* message);
absl::Status LoadTextMessage(const std::string& path, google::protobuf::Message* message);

// Text format → message. INVALID_ARGUMENT with a one-line reason naming the
// line and column of the first error. Does not validate or fill defaults.
absl::StatusOr<deltaserve::v1::ServerConfig> ParseServerConfig(absl::string_view text);

// Reads `path` and parses it. NOT_FOUND / PERMISSION_DENIED-style errors name
// the file; parse errors are prefixed with it.
absl::StatusOr<deltaserve::v1::ServerConfig> LoadServerConfig(const std::string& path);

// The wire defaults made explicit: every field config.proto marks
// `(default: V)` that is 0 (or UNSPECIFIED) becomes V, the value defined in
// proto/config_defaults.h; momentum only for MOMENTUM, beta1/beta2/epsilon
// only for ADAM and ADAMW. max_staleness and max_queue_delay_us 0 stay 0
// (no limit, never wait). Fields that are set stay as they are.
void FillDefaults(deltaserve::v1::ServerConfig* config);
void FillModelDefaults(deltaserve::v1::ModelSpec* spec);

// OK if the config (defaults filled) describes servable models: at least
// one, unique non-empty names, and each model converts to TrainerOptions that
// pass ValidateTrainerOptions (network, optimizer, surrogate, queue). Otherwise INVALID_ARGUMENT
// with a one-line reason such as `model "cartpole": layers[0].units: expected > 0, got 0`.
absl::Status ValidateServerConfig(const deltaserve::v1::ServerConfig& config);

// FillDefaults then ValidateServerConfig.
absl::StatusOr<deltaserve::v1::ServerConfig> PrepareServerConfig(
    deltaserve::v1::ServerConfig config);

// What the server serves without --config: one model named "default" for
// CartPole-like control: input 4, hidden 64 tanh, output 2 identity, Adam
// lr 0.01, samples_per_step 1, max_staleness 1000000, seed 1; defaults filled.
deltaserve::v1::ServerConfig DefaultServerConfig();

// One line per model for the startup log: name, layer widths, optimizer
// (and its schedule's kind and warmup, unless constant without warmup).
std::string DescribeModel(const deltaserve::v1::ModelSpec& spec);

// Everything a Trainer needs, from a ModelSpec whose defaults are filled.
// INVALID_ARGUMENT for what proto/wire.h's conversions reject (e.g.
// "input_normalization.clip: ..."); the
// options' own checks are ValidateTrainerOptions' (server/core/trainer.h).
absl::StatusOr<TrainerOptions> TrainerOptionsFromProto(const deltaserve::v1::ModelSpec& spec);

// Where and how `spec`'s state is kept under `state_dir` (DIR/<model name>),
// from config.persistence (defaults filled). INVALID_ARGUMENT if the model's
// name cannot be a directory name (letters, digits, '.', '_', '-'; not "."
// or ".."). An empty state_dir gives options that keep nothing.
absl::StatusOr<PersistenceOptions> PersistenceOptionsFromProto(
    const deltaserve::v1::ServerConfig& config, const deltaserve::v1::ModelSpec& spec,
    const std::string& state_dir);
// The spec's Forward batching (max_batch_rows, max_queue_delay_us, min_batch_macs), defaults
// filled. INVALID_ARGUMENT if max_queue_delay_us exceeds kMaxQueueDelayMicros.
absl::StatusOr<ForwardBatchingOptions> ForwardBatchingOptionsFromProto(
    const deltaserve::v1::ModelSpec& spec);

}  // namespace deltaserve::server

#endif  // DELTASERVE_SERVER_CORE_CONFIG_H_
