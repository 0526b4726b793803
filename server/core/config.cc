#include "deltaserve/server/core/config.h"

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/core/errors.h"
#include "deltaserve/server/core/trainer.h"
#include "google/protobuf/io/tokenizer.h"
#include "google/protobuf/text_format.h"

namespace deltaserve::server {
namespace v1 = ::deltaserve::v1;
namespace {

// Keeps the first parse error as "line L, column C: message" (1-based), the
// message cut to 256 bytes (it may quote a token of the text whole).
class FirstErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    constexpr size_t kKept = 256;
    if (!first_.empty()) return;
    first_ = absl::StrCat("line ", line + 1, ", column ", column + 1, ": ",
                          absl::string_view(message).substr(0, kKept));
    if (message.size() > kKept) absl::StrAppend(&first_, "... (", message.size(), " bytes)");
  }
  const std::string& first() const { return first_; }

 private:
  std::string first_;
};

void FillOptimizerDefaults(v1::OptimizerConfig* o) {
  if (o->kind() == v1::OptimizerConfig::KIND_UNSPECIFIED) o->set_kind(wire::kDefaultOptimizerKind);
  if (o->learning_rate() == 0) o->set_learning_rate(wire::kDefaultLearningRate);
  if (o->kind() == v1::OptimizerConfig::MOMENTUM && o->momentum() == 0) {
    o->set_momentum(wire::kDefaultMomentum);
  }
  if (o->kind() == v1::OptimizerConfig::ADAM || o->kind() == v1::OptimizerConfig::ADAMW) {
    if (o->beta1() == 0) o->set_beta1(wire::kDefaultBeta1);
    if (o->beta2() == 0) o->set_beta2(wire::kDefaultBeta2);
    if (o->epsilon() == 0) o->set_epsilon(wire::kDefaultEpsilon);
  }
}

void FillSurrogateDefaults(v1::SurrogateConfig* s) {
  if (s->mode() == v1::SurrogateConfig::MODE_UNSPECIFIED) s->set_mode(wire::kDefaultSurrogateMode);
  if (s->reduction() == v1::SurrogateConfig::REDUCTION_UNSPECIFIED) {
    s->set_reduction(wire::kDefaultSurrogateReduction);
  }
  if (s->delta_scale() == 0) s->set_delta_scale(wire::kDefaultDeltaScale);
}

absl::Status ValidateModel(const v1::ModelSpec& spec) {
  DELTASERVE_ASSIGN_OR_RETURN(TrainerOptions options, TrainerOptionsFromProto(spec));
  DELTASERVE_RETURN_IF_ERROR(ForwardBatchingOptionsFromProto(spec).status());
  return ValidateTrainerOptions(options);
}

const char* OptimizerName(v1::OptimizerConfig::Kind kind) {
  switch (kind) {
    case v1::OptimizerConfig::MOMENTUM:
      return "momentum";
    case v1::OptimizerConfig::ADAM:
      return "adam";
    case v1::OptimizerConfig::ADAMW:
      return "adamw";
    default:
      return "sgd";
  }
}

}  // namespace

absl::Status ParseTextMessage(absl::string_view text, google::protobuf::Message* message) {
  FirstErrorCollector errors;
  google::protobuf::TextFormat::Parser parser;
  parser.RecordErrorsTo(&errors);
  if (!parser.ParseFromString(std::string(text), message)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "not a ", message->GetTypeName(),
        " in text format: ", errors.first().empty() ? std::string("parse error") : errors.first()));
  }
  return absl::OkStatus();
}

absl::Status LoadTextMessage(const std::string& path, google::protobuf::Message* message) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat(path, ": cannot open for reading"));
  std::stringstream text;
  text << file.rdbuf();
  if (file.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  const absl::Status parsed = ParseTextMessage(text.str(), message);
  if (!parsed.ok()) return absl::Status(parsed.code(), absl::StrCat(path, ": ", parsed.message()));
  return absl::OkStatus();
}

absl::StatusOr<v1::ServerConfig> ParseServerConfig(absl::string_view text) {
  v1::ServerConfig config;
  DELTASERVE_RETURN_IF_ERROR(ParseTextMessage(text, &config));
  return config;
}

absl::StatusOr<v1::ServerConfig> LoadServerConfig(const std::string& path) {
  v1::ServerConfig config;
  DELTASERVE_RETURN_IF_ERROR(LoadTextMessage(path, &config));
  return config;
}

void FillModelDefaults(v1::ModelSpec* spec) {
  FillOptimizerDefaults(spec->mutable_optimizer());
  FillSurrogateDefaults(spec->mutable_surrogate());
  if (spec->input_normalization().kind() == v1::InputNormalization::RUNNING_MEAN_STD) {
    v1::InputNormalization* n = spec->mutable_input_normalization();
    if (n->clip() == 0) n->set_clip(wire::kDefaultNormalizationClip);
    if (n->epsilon() == 0) n->set_epsilon(wire::kDefaultNormalizationEpsilon);
  }
  if (spec->samples_per_step() == 0) spec->set_samples_per_step(wire::kDefaultSamplesPerStep);
  if (spec->queue_capacity() == 0) spec->set_queue_capacity(wire::kDefaultQueueCapacity);
  if (spec->max_request_rows() == 0) spec->set_max_request_rows(wire::kDefaultMaxRequestRows);
  if (spec->max_batch_rows() == 0) spec->set_max_batch_rows(wire::kDefaultMaxBatchRows);
  if (spec->min_batch_macs() == 0) spec->set_min_batch_macs(wire::kDefaultMinBatchMacs);
}

void FillDefaults(v1::ServerConfig* config) {
  for (v1::ModelSpec& spec : *config->mutable_models()) FillModelDefaults(&spec);
  if (config->max_message_bytes() == 0)
    config->set_max_message_bytes(wire::kDefaultMaxMessageBytes);
  if (config->max_watchers_per_model() == 0) {
    config->set_max_watchers_per_model(wire::kDefaultMaxWatchersPerModel);
  }
  if (config->max_parameter_waiters_per_model() == 0) {
    config->set_max_parameter_waiters_per_model(wire::kDefaultMaxParameterWaitersPerModel);
  }
  if (config->max_connection_idle_seconds() == 0) {
    config->set_max_connection_idle_seconds(wire::kDefaultMaxConnectionIdleSeconds);
  }
  if (config->max_connections() == 0) config->set_max_connections(wire::kDefaultMaxConnections);
  if (config->handshake_timeout_seconds() == 0) {
    config->set_handshake_timeout_seconds(wire::kDefaultHandshakeTimeoutSeconds);
  }
  if (config->keepalive_seconds() == 0) {
    config->set_keepalive_seconds(wire::kDefaultKeepaliveSeconds);
  }
  if (config->keepalive_timeout_seconds() == 0) {
    config->set_keepalive_timeout_seconds(wire::kDefaultKeepaliveTimeoutSeconds);
  }
  v1::PersistenceConfig* p = config->mutable_persistence();
  if (p->durability() == v1::PersistenceConfig::DURABILITY_UNSPECIFIED) {
    p->set_durability(wire::kDefaultDurability);
  }
  if (p->sync_interval_ms() == 0) p->set_sync_interval_ms(wire::kDefaultSyncIntervalMs);
  if (p->checkpoint_every_steps() == 0)
    p->set_checkpoint_every_steps(wire::kDefaultCheckpointEverySteps);
  if (p->checkpoint_every_seconds() == 0) {
    p->set_checkpoint_every_seconds(wire::kDefaultCheckpointEverySeconds);
  }
  if (p->keep_checkpoints() == 0) p->set_keep_checkpoints(wire::kDefaultKeepCheckpoints);
}

absl::Status ValidateServerConfig(const v1::ServerConfig& config) {
  if (config.models_size() == 0) {
    return absl::InvalidArgumentError("models: expected at least one model, got none");
  }
  // gRPC takes the limit as an int.
  if (config.max_message_bytes() > static_cast<uint32_t>(INT32_MAX)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "max_message_bytes: expected at most ", INT32_MAX, ", got ", config.max_message_bytes()));
  }
  std::set<std::string> names;
  for (int i = 0; i < config.models_size(); ++i) {
    const v1::ModelSpec& spec = config.models(i);
    if (spec.name().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("models[", i, "].name: expected a non-empty name"));
    }
    if (spec.name().size() > kMaxModelNameBytes) {
      return absl::InvalidArgumentError(absl::StrCat("models[", i, "].name: expected at most ",
                                                     kMaxModelNameBytes, " bytes, got ",
                                                     ClientString(spec.name())));
    }
    if (!names.insert(spec.name()).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "models[", i, "].name: expected a unique name, got \"", spec.name(), "\" again"));
    }
    absl::Status status = ValidateModel(spec);
    if (!status.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("model \"", spec.name(), "\": ", status.message()));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ServerConfig> PrepareServerConfig(v1::ServerConfig config) {
  FillDefaults(&config);
  DELTASERVE_RETURN_IF_ERROR(ValidateServerConfig(config));
  return config;
}

v1::ServerConfig DefaultServerConfig() {
  v1::ServerConfig config;
  v1::ModelSpec* spec = config.add_models();
  spec->set_name("default");
  spec->set_input_dim(4);
  spec->set_seed(1);
  v1::LayerSpec* hidden = spec->add_layers();
  hidden->set_units(64);
  hidden->set_activation(v1::ACTIVATION_TANH);
  v1::LayerSpec* output = spec->add_layers();
  output->set_units(2);
  output->set_activation(v1::ACTIVATION_IDENTITY);
  spec->mutable_optimizer()->set_kind(v1::OptimizerConfig::ADAM);
  spec->mutable_optimizer()->set_learning_rate(0.01f);
  spec->set_samples_per_step(1);
  spec->set_max_staleness(1000000);
  FillDefaults(&config);
  return config;
}

std::string DescribeModel(const v1::ModelSpec& spec) {
  std::vector<std::string> widths = {absl::StrCat(spec.input_dim())};
  absl::StatusOr<model::MlpSpec> mlp = wire::MlpSpecFromProto(spec);
  for (int l = 0; l < spec.layers_size(); ++l) {
    widths.push_back(
        absl::StrCat(spec.layers(l).units(), " ",
                     mlp.ok() ? model::ActivationName(mlp->layers[l].activation) : "(invalid)"));
  }
  const v1::LearningRateSchedule& schedule = spec.optimizer().schedule();
  const bool constant = schedule.kind() == v1::LearningRateSchedule::KIND_UNSPECIFIED ||
                        schedule.kind() == v1::LearningRateSchedule::CONSTANT;
  const std::string scheduled =
      !constant || schedule.warmup_steps() > 0
          ? absl::StrCat(
                " (", constant ? "CONSTANT" : v1::LearningRateSchedule::Kind_Name(schedule.kind()),
                " schedule, warmup ", schedule.warmup_steps(), ")")
          : "";
  return absl::StrCat("model \"", spec.name(), "\": ", absl::StrJoin(widths, " -> "), ", ",
                      OptimizerName(spec.optimizer().kind()), " lr ",
                      spec.optimizer().learning_rate(), scheduled, ", samples_per_step ",
                      spec.samples_per_step(), ", max_staleness ", spec.max_staleness(),
                      ", queue_capacity ", spec.queue_capacity());
}

absl::StatusOr<TrainerOptions> TrainerOptionsFromProto(const v1::ModelSpec& spec) {
  TrainerOptions options;
  options.name = spec.name();
  DELTASERVE_ASSIGN_OR_RETURN(options.mlp, wire::MlpSpecFromProto(spec));
  DELTASERVE_ASSIGN_OR_RETURN(options.optimizer, wire::OptimizerConfigFromProto(spec.optimizer()));
  DELTASERVE_ASSIGN_OR_RETURN(options.surrogate, wire::SurrogateConfigFromProto(spec.surrogate()));
  DELTASERVE_ASSIGN_OR_RETURN(options.normalization,
                              wire::InputNormalizationFromProto(spec.input_normalization()));
  options.samples_per_step = spec.samples_per_step();
  options.max_staleness = spec.max_staleness();
  options.staleness_scaled_lr = spec.staleness_scaled_lr();
  options.queue_capacity = spec.queue_capacity();
  options.max_request_rows = spec.max_request_rows();
  return options;
}

absl::StatusOr<PersistenceOptions> PersistenceOptionsFromProto(const v1::ServerConfig& config,
                                                               const v1::ModelSpec& spec,
                                                               const std::string& state_dir) {
  PersistenceOptions options;
  if (state_dir.empty()) return options;
  const std::string& name = spec.name();
  const bool safe = !name.empty() && name != "." && name != ".." &&
                    std::all_of(name.begin(), name.end(), [](char c) {
                      return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' ||
                             c == '_' || c == '-';
                    });
  if (!safe) {
    return absl::InvalidArgumentError(
        absl::StrCat("model \"", name,
                     "\": with --state_dir a model name is a directory name: expected "
                     "letters, digits, '.', '_' and '-' only"));
  }
  const v1::PersistenceConfig& p = config.persistence();
  options.dir = absl::StrCat(state_dir, "/", name);
  switch (p.durability()) {
    case v1::PersistenceConfig::INTERVAL:
      options.durability = Durability::kInterval;
      break;
    case v1::PersistenceConfig::NONE:
      options.durability = Durability::kNone;
      break;
    case v1::PersistenceConfig::COMMIT:
    case v1::PersistenceConfig::DURABILITY_UNSPECIFIED:
      options.durability = Durability::kCommit;
      break;
    default:
      return absl::InvalidArgumentError(absl::StrCat(
          "persistence.durability: expected COMMIT, INTERVAL or NONE, got ", p.durability()));
  }
  options.sync_interval = absl::Milliseconds(p.sync_interval_ms());
  options.checkpoint_every_steps = p.checkpoint_every_steps();
  options.checkpoint_every = absl::Seconds(p.checkpoint_every_seconds());
  options.keep_checkpoints = p.keep_checkpoints();
  options.spec = spec;
  return options;
}

absl::StatusOr<ForwardBatchingOptions> ForwardBatchingOptionsFromProto(const v1::ModelSpec& spec) {
  if (spec.max_queue_delay_us() > kMaxQueueDelayMicros) {
    return absl::InvalidArgumentError(absl::StrCat("max_queue_delay_us: expected at most ",
                                                   kMaxQueueDelayMicros, ", got ",
                                                   spec.max_queue_delay_us()));
  }
  ForwardBatchingOptions options;
  options.max_batch_rows =
      spec.max_batch_rows() == 0 ? wire::kDefaultMaxBatchRows : spec.max_batch_rows();
  options.max_queue_delay = absl::Microseconds(spec.max_queue_delay_us());
  options.min_batch_macs =
      spec.min_batch_macs() == 0 ? wire::kDefaultMinBatchMacs : spec.min_batch_macs();
  return options;
}

}  // namespace deltaserve::server
