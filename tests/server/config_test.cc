#include "deltaserve/server/core/config.h"

#include <fstream>
#include <string>

#include "deltaserve/tests/server/test_util.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
namespace v1 = ::deltaserve::v1;

constexpr char kGoodModel[] = R"pb(
  models {
    name: "m"
    input_dim: 3
    layers { units: 4 activation: ACTIVATION_TANH }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
  }
)pb";

// Fills defaults and validates; returns the error message ("" if OK).
std::string Problem(const std::string& text) {
  absl::StatusOr<v1::ServerConfig> parsed = ParseServerConfig(text);
  if (!parsed.ok()) return std::string(parsed.status().message());
  absl::StatusOr<v1::ServerConfig> prepared = PrepareServerConfig(*parsed);
  if (prepared.ok()) return "";
  EXPECT_EQ(prepared.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(prepared.status().message());
}

TEST(Config, DefaultServerConfigIsValidCartPoleModel) {
  v1::ServerConfig config = DefaultServerConfig();
  ASSERT_TRUE(ValidateServerConfig(config).ok());
  ASSERT_EQ(config.models_size(), 1);
  const v1::ModelSpec& spec = config.models(0);
  EXPECT_EQ(spec.name(), "default");
  EXPECT_EQ(spec.input_dim(), 4u);
  ASSERT_EQ(spec.layers_size(), 2);
  EXPECT_EQ(spec.layers(0).units(), 64u);
  EXPECT_EQ(spec.layers(0).activation(), v1::ACTIVATION_TANH);
  EXPECT_EQ(spec.layers(1).units(), 2u);
  EXPECT_EQ(spec.layers(1).activation(), v1::ACTIVATION_IDENTITY);
  EXPECT_EQ(spec.optimizer().kind(), v1::OptimizerConfig::ADAM);
  EXPECT_FLOAT_EQ(spec.optimizer().learning_rate(), 0.01f);
  EXPECT_EQ(spec.samples_per_step(), 1u);
  EXPECT_EQ(config.max_message_bytes(), 64u << 20);
}

TEST(Config, FillDefaultsUsesTheDocumentedValues) {
  v1::ServerConfig config = testing::ParseText<v1::ServerConfig>(
      R"pb(models { optimizer { kind: MOMENTUM } }
           models { optimizer { kind: ADAMW learning_rate: 0.5 } })pb");
  FillDefaults(&config);
  const v1::ModelSpec& a = config.models(0);
  EXPECT_FLOAT_EQ(a.optimizer().learning_rate(), 0.01f);
  EXPECT_FLOAT_EQ(a.optimizer().momentum(), 0.9f);
  EXPECT_EQ(a.surrogate().mode(), v1::SurrogateConfig::CURRENT);
  EXPECT_EQ(a.surrogate().reduction(), v1::SurrogateConfig::SUM);
  EXPECT_FLOAT_EQ(a.surrogate().delta_scale(), 1.0f);
  EXPECT_EQ(a.samples_per_step(), 1u);
  EXPECT_EQ(a.queue_capacity(), 1024u);
  EXPECT_EQ(a.max_batch_rows(), 256u);
  EXPECT_EQ(a.min_batch_macs(), 65536u);
  const v1::ModelSpec& b = config.models(1);
  EXPECT_FLOAT_EQ(b.optimizer().learning_rate(), 0.5f);  // Set values stay.
  EXPECT_FLOAT_EQ(b.optimizer().beta1(), 0.9f);
  EXPECT_FLOAT_EQ(b.optimizer().beta2(), 0.999f);
  EXPECT_FLOAT_EQ(b.optimizer().epsilon(), 1e-8f);
  EXPECT_EQ(config.max_message_bytes(), wire::kDefaultMaxMessageBytes);
}

TEST(Config, ForwardBatchingOptionsComeFromTheSpec) {
  v1::ModelSpec spec = testing::ParseText<v1::ModelSpec>(R"pb(max_batch_rows: 32
                                                              max_queue_delay_us: 250
                                                              min_batch_macs: 1)pb");
  absl::StatusOr<ForwardBatchingOptions> options = ForwardBatchingOptionsFromProto(spec);
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->max_batch_rows, 32u);
  EXPECT_EQ(options->max_queue_delay, absl::Microseconds(250));
  EXPECT_EQ(options->min_batch_macs, 1u);
  options = ForwardBatchingOptionsFromProto(v1::ModelSpec());  // Unset: the defaults.
  ASSERT_TRUE(options.ok()) << options.status();
  EXPECT_EQ(options->max_batch_rows, wire::kDefaultMaxBatchRows);
  EXPECT_EQ(options->max_queue_delay, absl::ZeroDuration());
  EXPECT_EQ(options->min_batch_macs, wire::kDefaultMinBatchMacs);
}

TEST(Config, UnspecifiedOptimizerKindIsSgd) {
  v1::ServerConfig config = testing::ParseText<v1::ServerConfig>("models {}");
  FillDefaults(&config);
  EXPECT_EQ(config.models(0).optimizer().kind(), v1::OptimizerConfig::SGD);
}

TEST(Config, GoodConfigHasNoProblem) { EXPECT_EQ(Problem(kGoodModel), ""); }

TEST(Config, ParseErrorNamesLineAndColumn) {
  EXPECT_THAT(Problem("models {\n  nme: \"x\"\n}"), HasSubstr("line 2, column "));
}

TEST(Config, InvalidConfigsAreRejectedWithOneLineReasons) {
  struct Case {
    std::string text;
    std::string reason;
  };
  const std::string layer = "layers { units: 2 activation: ACTIVATION_IDENTITY }";
  const Case cases[] = {
      {"", "expected at least one model"},
      {"models { input_dim: 1 " + layer + " }", "name: expected a non-empty name"},
      {"models { name: \"a\" input_dim: 1 " + layer + " } models { name: \"a\" input_dim: 1 " +
           layer + " }",
       "expected a unique name, got \"a\" again"},
      {"models { name: \"a\" input_dim: 0 " + layer + " }", "model \"a\": input_dim"},
      {"models { name: \"a\" input_dim: 1 }", "model \"a\": layers"},
      {"models { name: \"a\" input_dim: 1 layers { units: 2 } }", "ACTIVATION_UNSPECIFIED"},
      {"models { name: \"a\" input_dim: 1 layers { units: 0 activation: ACTIVATION_TANH } }",
       "layers[0].units"},
      {"models { name: \"a\" input_dim: 1 " + layer + " optimizer { learning_rate: -1 } }",
       "learning_rate"},
      {"models { name: \"a\" input_dim: 1 " + layer + " optimizer { kind: 9 } }", "optimizer.kind"},
      {"models { name: \"a\" input_dim: 1 " + layer + " surrogate { delta_scale: -2 } }",
       "delta_scale"},
      {"models { name: \"a\" input_dim: 1 " + layer + " surrogate { mode: 7 } }", "surrogate.mode"},
      {"max_message_bytes: 3000000000 models { name: \"a\" input_dim: 1 " + layer + " }",
       "max_message_bytes: expected at most 2147483647"},
      {"models { name: \"a\" input_dim: 1 " + layer + " optimizer { schedule { kind: COSINE } } }",
       "model \"a\": optimizer.schedule.total_steps: expected > 0 for COSINE, got 0"},
      {"models { name: \"a\" input_dim: 1 " + layer + " optimizer { schedule { kind: 9 } } }",
       "model \"a\": optimizer.schedule.kind"},
      {"models { name: \"a\" input_dim: 1 " + layer +
           " input_normalization { kind: RUNNING_MEAN_STD clip: -1 } }",
       "model \"a\": input_normalization.clip: expected a finite value > 0"},
      {"models { name: \"a\" input_dim: 1 " + layer +
           " input_normalization { kind: RUNNING_MEAN_STD clip: inf } }",
       "model \"a\": input_normalization.clip: expected a finite value > 0"},
      {"models { name: \"a\" input_dim: 1 " + layer +
           " input_normalization { kind: RUNNING_MEAN_STD epsilon: nan } }",
       "model \"a\": input_normalization.epsilon: expected a finite value > 0"},
      {"models { name: \"a\" input_dim: 1 " + layer +
           " input_normalization { kind: RUNNING_MEAN_STD epsilon: -1e-8 } }",
       "model \"a\": input_normalization.epsilon: expected a finite value > 0"},
      {"models { name: \"a\" input_dim: 1 " + layer + " input_normalization { kind: 5 } }",
       "model \"a\": input_normalization.kind: expected NONE or RUNNING_MEAN_STD"},
  };
  for (const Case& c : cases) {
    const std::string problem = Problem(c.text);
    EXPECT_THAT(problem, HasSubstr(c.reason)) << c.text;
    EXPECT_THAT(problem, Not(HasSubstr("\n"))) << c.text;
  }
}

// RUNNING_MEAN_STD starts (it used to be refused), its defaults filled in
// (clip 10, epsilon 1e-8), and reaches the Trainer's options.
TEST(Config, InputNormalizationReachesTheTrainerWithDefaults) {
  absl::StatusOr<v1::ServerConfig> config =
      PrepareServerConfig(testing::ParseText<v1::ServerConfig>(
          R"pb(models {
                 name: "a"
                 input_dim: 3
                 layers { units: 2 activation: ACTIVATION_IDENTITY }
                 input_normalization { kind: RUNNING_MEAN_STD }
               }
               models {
                 name: "b"
                 input_dim: 3
                 layers { units: 2 activation: ACTIVATION_IDENTITY }
                 input_normalization { kind: RUNNING_MEAN_STD clip: 5 epsilon: 0.001 }
               })pb"));
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->models(0).input_normalization().clip(), 10.0f);
  EXPECT_EQ(config->models(0).input_normalization().epsilon(), 1e-8f);
  absl::StatusOr<TrainerOptions> a = TrainerOptionsFromProto(config->models(0));
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->normalization.kind, model::InputNormalizationConfig::Kind::kRunningMeanStd);
  EXPECT_EQ(a->normalization.clip, 10.0f);
  EXPECT_EQ(a->normalization.epsilon, 1e-8f);
  absl::StatusOr<TrainerOptions> b = TrainerOptionsFromProto(config->models(1));
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->normalization.clip, 5.0f);
  EXPECT_EQ(b->normalization.epsilon, 0.001f);
}

// The schedule reaches the Trainer's optimizer as configured; unset, it is
// CONSTANT.
TEST(Config, TrainerOptionsCarryTheSchedule) {
  absl::StatusOr<v1::ServerConfig> config =
      PrepareServerConfig(testing::ParseText<v1::ServerConfig>(
          R"pb(models {
                 name: "m"
                 input_dim: 1
                 layers { units: 1 activation: ACTIVATION_IDENTITY }
                 optimizer {
                   schedule {
                     kind: STEP
                     warmup_steps: 3
                     total_steps: 7
                     final_learning_rate: 0.5
                     step_size: 11
                     gamma: 0.25
                   }
                 }
               }
               models {
                 name: "plain"
                 input_dim: 1
                 layers { units: 1 activation: ACTIVATION_IDENTITY }
               })pb"));
  ASSERT_TRUE(config.ok()) << config.status();
  absl::StatusOr<TrainerOptions> options = TrainerOptionsFromProto(config->models(0));
  ASSERT_TRUE(options.ok()) << options.status();
  const model::LearningRateScheduleConfig& s = options->optimizer.schedule;
  EXPECT_EQ(s.kind, model::LearningRateScheduleConfig::Kind::kStep);
  EXPECT_EQ(s.warmup_steps, 3u);
  EXPECT_EQ(s.total_steps, 7u);
  EXPECT_EQ(s.final_learning_rate, 0.5f);
  EXPECT_EQ(s.step_size, 11u);
  EXPECT_EQ(s.gamma, 0.25f);
  absl::StatusOr<TrainerOptions> plain = TrainerOptionsFromProto(config->models(1));
  ASSERT_TRUE(plain.ok()) << plain.status();
  EXPECT_EQ(plain->optimizer.schedule.kind, model::LearningRateScheduleConfig::Kind::kConstant);
  EXPECT_EQ(plain->optimizer.schedule.warmup_steps, 0u);
}

TEST(Config, LoadServerConfigReadsTextFormatFile) {
  const std::string path = ::testing::TempDir() + "/config_test_good.textproto";
  std::ofstream(path) << kGoodModel;
  absl::StatusOr<v1::ServerConfig> config = LoadServerConfig(path);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->models(0).name(), "m");
}

TEST(Config, LoadServerConfigNamesAMissingFile) {
  absl::StatusOr<v1::ServerConfig> config = LoadServerConfig("/nonexistent/deltaserve.textproto");
  EXPECT_EQ(config.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(config.status().message(), HasSubstr("/nonexistent/deltaserve.textproto"));
}

TEST(Config, DescribeModelIsOneLine) {
  EXPECT_EQ(DescribeModel(DefaultServerConfig().models(0)),
            "model \"default\": 4 -> 64 tanh -> 2 identity, adam lr 0.01, samples_per_step 1, "
            "max_staleness 1000000, queue_capacity 1024");
  v1::ModelSpec scheduled = DefaultServerConfig().models(0);
  scheduled.mutable_optimizer()->mutable_schedule()->set_kind(v1::LearningRateSchedule::COSINE);
  scheduled.mutable_optimizer()->mutable_schedule()->set_warmup_steps(100);
  EXPECT_THAT(DescribeModel(scheduled), HasSubstr("adam lr 0.01 (COSINE schedule, warmup 100), "));
}

}  // namespace
}  // namespace deltaserve::server
