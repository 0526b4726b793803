// Loading, defaulting and validating the server's configuration
// (deltaserve.v1.ServerConfig, protobuf text format).
#ifndef DELTASERVE_SERVER_CORE_CONFIG_H_
#define DELTASERVE_SERVER_CORE_CONFIG_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/v1/config.pb.h"
#include "server/core/forward_batcher.h"
#include "server/core/trainer.h"

namespace deltaserve::server {

// Used when ServerConfig.max_message_bytes is 0: 64 MiB, enough for a
// 10M-parameter ParameterUpdate (40 MB of float32 plus framing).
inline constexpr uint32_t kDefaultMaxMessageBytes = 64u << 20;
inline constexpr uint32_t kDefaultQueueCapacity = 1024;
inline constexpr uint32_t kDefaultMaxWatchersPerModel = 1024;
inline constexpr uint32_t kDefaultMaxRequestRows = 65536;
inline constexpr uint32_t kDefaultMaxConnectionIdleSeconds = 300;
inline constexpr uint32_t kDefaultMaxConnections = 4096;
inline constexpr uint32_t kDefaultHandshakeTimeoutSeconds = 20;
inline constexpr uint32_t kDefaultSyncIntervalMs = 100;
inline constexpr uint64_t kDefaultCheckpointEverySteps = 10000;
inline constexpr uint32_t kDefaultCheckpointEverySeconds = 300;
inline constexpr uint32_t kDefaultKeepCheckpoints = 3;
inline constexpr uint32_t kDefaultMaxBatchRows = 256;
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

// The wire defaults made explicit: learning_rate 0 → 0.01, momentum 0 → 0.9
// (MOMENTUM), beta1/beta2/epsilon 0 → 0.9/0.999/1e-8 (ADAM, ADAMW),
// delta_scale 0 → 1, samples_per_step 0 → 1, queue_capacity 0 → 1024, max_request_rows 0 → 65536,
// max_batch_rows 0 → 256, min_batch_macs 0 → 65536,
// max_message_bytes 0 → 64 MiB, max_watchers_per_model 0 → 1024,
// max_connection_idle_seconds 0 → 300, max_connections 0 → 4096,
// handshake_timeout_seconds 0 → 20, persistence: durability COMMIT,
// sync_interval_ms 100, checkpoint_every_steps 10000,
// checkpoint_every_seconds 300, keep_checkpoints 3; UNSPECIFIED kind/mode/reduction →
// SGD, CURRENT, SUM. max_staleness 0 stays 0: no limit. Fields that are set stay as they are.
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

// One line per model for the startup log: name, layer widths, optimizer.
std::string DescribeModel(const deltaserve::v1::ModelSpec& spec);

// Everything a Trainer needs, from a ModelSpec whose defaults are filled.
// INVALID_ARGUMENT for what proto/wire.h's conversions reject; the
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
