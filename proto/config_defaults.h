// The defaults of deltaserve.v1.ServerConfig (config.proto): the value a
// field left at 0 (or UNSPECIFIED) stands for. This is their one definition:
// FillDefaults (server/core/config.h) fills them in, TrainerOptions,
// PersistenceOptions and ForwardBatchingOptions start from them, and the
// client library sizes its messages by kDefaultMaxMessageBytes.
//
// config.proto states each on its field as `(default: V)`;
// tests/server/config_defaults_test.cc fails if a comment and what
// FillDefaults fills in disagree. Change a default here and in that comment.
#ifndef DELTASERVE_PROTO_CONFIG_DEFAULTS_H_
#define DELTASERVE_PROTO_CONFIG_DEFAULTS_H_

#include <cstdint>

#include "deltaserve/model/spec.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::wire {

// OptimizerConfig: the math core's defaults (model/spec.h).
inline constexpr deltaserve::v1::OptimizerConfig::Kind kDefaultOptimizerKind =
    deltaserve::v1::OptimizerConfig::SGD;
inline constexpr float kDefaultLearningRate = model::kDefaultLearningRate;
inline constexpr float kDefaultMomentum = model::kDefaultMomentum;  // MOMENTUM only.
inline constexpr float kDefaultBeta1 = model::kDefaultBeta1;        // ADAM, ADAMW.
inline constexpr float kDefaultBeta2 = model::kDefaultBeta2;        // ADAM, ADAMW.
inline constexpr float kDefaultEpsilon = model::kDefaultEpsilon;    // ADAM, ADAMW.

// SurrogateConfig (CURRENT: docs/surrogate.md).
inline constexpr deltaserve::v1::SurrogateConfig::Mode kDefaultSurrogateMode =
    deltaserve::v1::SurrogateConfig::CURRENT;
inline constexpr deltaserve::v1::SurrogateConfig::Reduction kDefaultSurrogateReduction =
    deltaserve::v1::SurrogateConfig::SUM;
inline constexpr float kDefaultDeltaScale = model::kDefaultDeltaScale;
// InputNormalization (RUNNING_MEAN_STD): clip 0 -> 10, epsilon 0 -> 1e-8.
inline constexpr float kDefaultNormalizationClip = 10.0f;
inline constexpr float kDefaultNormalizationEpsilon = 1e-8f;

// ModelSpec.
inline constexpr uint32_t kDefaultSamplesPerStep = 1;
inline constexpr uint32_t kDefaultQueueCapacity = 1024;
inline constexpr uint32_t kDefaultMaxRequestRows = 65536;
inline constexpr uint32_t kDefaultMaxBatchRows = 256;
// One row of a 64 → 256 → 256 → 64 model (98,304 multiply-adds) is batched,
// one row of CartPole's 4 → 32 → 2 (192) is computed inline; the measurements
// behind the choice are in docs/benchmarks.md.
inline constexpr uint64_t kDefaultMinBatchMacs = 65536;

// ServerConfig. 64 MiB is enough for a 10M-parameter ParameterUpdate (40 MB
// of float32 plus framing).
inline constexpr uint32_t kDefaultMaxMessageBytes = 64u << 20;
inline constexpr uint32_t kDefaultMaxWatchersPerModel = 1024;
inline constexpr uint32_t kDefaultMaxParameterWaitersPerModel = 1024;
inline constexpr uint32_t kDefaultMaxConnectionIdleSeconds = 300;
inline constexpr uint32_t kDefaultMaxConnections = 4096;
inline constexpr uint32_t kDefaultHandshakeTimeoutSeconds = 20;
inline constexpr uint32_t kDefaultKeepaliveSeconds = 60;
inline constexpr uint32_t kDefaultKeepaliveTimeoutSeconds = 20;

// PersistenceConfig.
inline constexpr deltaserve::v1::PersistenceConfig::Durability kDefaultDurability =
    deltaserve::v1::PersistenceConfig::COMMIT;
inline constexpr uint32_t kDefaultSyncIntervalMs = 100;
inline constexpr uint64_t kDefaultCheckpointEverySteps = 10000;
inline constexpr uint32_t kDefaultCheckpointEverySeconds = 300;
inline constexpr uint32_t kDefaultKeepCheckpoints = 3;

}  // namespace deltaserve::wire

#endif  // DELTASERVE_PROTO_CONFIG_DEFAULTS_H_
