// The deltaserve.v1.Trainer service over a real server on loopback, driven
// by the generated stub: the math through the wire, error codes, the queue,
// watchers, health, reflection and shutdown.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/convert.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"
#include "src/proto/grpc/reflection/v1alpha/reflection.grpc.pb.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using ::testing::Contains;
using ::testing::HasSubstr;
using testing::ParseText;
using testing::WireMatrix;

using testing::kWait;
using testing::PendingSubmit;

// input 4 → 8 tanh → 2 identity.
const std::string kSmallModel = testing::SmallModelConfig("max_staleness: 1000");

class ServiceTest : public testing::LoopbackServerTest {
 protected:
  void Start(const std::string& config_text, const std::string& address = "127.0.0.1:0") {
    ServerOptions options;
    options.listen_address = address;
    StartServer(config_text, options);
  }

  grpc::Status Forward(const std::string& model, const v1::Matrix& inputs,
                       v1::ForwardResponse* response) {
    v1::ForwardRequest request;
    request.set_model(model);
    *request.mutable_inputs() = inputs;
    return stub_->Forward(Context().get(), request, response);
  }

  v1::ParameterUpdate Parameters(const std::string& model = "") {
    v1::GetParametersRequest request;
    request.set_model(model);
    v1::ParameterUpdate update;
    grpc::Status status = stub_->GetParameters(Context().get(), request, &update);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return update;
  }

  // One submission of δ = 1 on `rows` rows of the small model at the current
  // version.
  v1::SubmitDeltaRequest OnesRequest(uint32_t rows = 1, const std::string& model = "m") {
    v1::SubmitDeltaRequest request;
    request.set_model(model);
    *request.mutable_inputs() = WireMatrix(rows, 4, std::vector<float>(rows * 4, 0.5f));
    *request.mutable_deltas() = WireMatrix(rows, 2, std::vector<float>(rows * 2, 1.0f));
    request.set_version(Parameters(model).version());
    return request;
  }

  // Applies `steps` submissions of one row each (samples_per_step 1).
  void TrainSteps(int steps, const std::string& model = "m") {
    for (int i = 0; i < steps; ++i) {
      grpc::Status status = Submit(OnesRequest(1, model));
      ASSERT_TRUE(status.ok()) << status.error_message();
    }
  }
};

absl::StatusOr<model::Mlp> MlpOf(const v1::ServerConfig& config, int index = 0) {
  absl::StatusOr<model::MlpSpec> spec = wire::MlpSpecFromProto(config.models(index));
  if (!spec.ok()) return spec.status();
  return model::Mlp::Create(*spec);
}

std::vector<float> ParametersOf(const v1::ParameterUpdate& update) {
  return {update.parameters().begin(), update.parameters().end()};
}

// The small model's Forward is computed in the handler by default; with
// min_batch_macs: 1 it goes through the batcher thread, which Finishes the rpc.
class ServiceForwardTest : public ServiceTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(ServiceForwardTest, ForwardEqualsMlpForwardOnServedParameters) {
  const std::string config = testing::SmallModelConfig("max_staleness: 1000 " + GetParam());
  Start(config);
  const std::vector<float> x = {0.1f, -0.2f, 0.3f, 0.4f, 1.0f, 2.0f, -3.0f, 0.5f};
  v1::ForwardResponse response;
  ASSERT_TRUE(Forward("m", WireMatrix(2, 4, x), &response).ok());
  absl::StatusOr<model::Mlp> mlp = MlpOf(ParseText<v1::ServerConfig>(config));
  ASSERT_TRUE(mlp.ok());
  absl::StatusOr<model::Matrix> expected =
      mlp->Forward(ParametersOf(Parameters("m")), testing::CoreMatrix(2, 4, x));
  ASSERT_TRUE(expected.ok());
  EXPECT_EQ(response.version(), 0u);
  ASSERT_EQ(response.outputs().rows(), 2u);
  ASSERT_EQ(response.outputs().cols(), 2u);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(response.outputs().data(i), expected->data()[i], 1e-6);
}

INSTANTIATE_TEST_SUITE_P(ForwardPaths, ServiceForwardTest,
                         ::testing::Values(std::string(), std::string("min_batch_macs: 1")),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           return info.param.empty() ? "InlineForward" : "BatchedForward";
                         });

TEST_F(ServiceTest, EmptyModelNameMeansTheFirstModel) {
  Start(kSmallModel);
  EXPECT_EQ(Parameters("").model(), "m");
  v1::ForwardResponse response;
  EXPECT_TRUE(Forward("", WireMatrix(1, 4, {1, 2, 3, 4}), &response).ok());
}

TEST_F(ServiceTest, GetModelInfoReportsSpecWithDefaultsFilled) {
  Start(kSmallModel);
  TrainSteps(2);
  v1::GetModelInfoRequest request;
  request.set_model("m");
  v1::ModelInfo info;
  ASSERT_TRUE(stub_->GetModelInfo(Context().get(), request, &info).ok());
  EXPECT_EQ(info.spec().name(), "m");
  EXPECT_EQ(info.spec().samples_per_step(), 1u);
  EXPECT_EQ(info.spec().queue_capacity(), 1024u);
  EXPECT_EQ(info.spec().surrogate().mode(), v1::SurrogateConfig::CURRENT);
  EXPECT_EQ(info.version(), 2u);
  EXPECT_EQ(info.optimizer_steps(), 2u);
  EXPECT_EQ(info.parameter_count(), 8u * 5 + 2u * 9);
  EXPECT_EQ(info.output_dim(), 2u);
}

// ModelInfo.learning_rate is the rate the next step uses: lr(k) with k the
// steps taken, here EXPONENTIAL with warmup (docs/model.md's closed form).
TEST_F(ServiceTest, GetModelInfoLearningRateFollowsTheSchedule) {
  Start(R"pb(models {
               name: "m"
               input_dim: 4
               seed: 3
               layers { units: 8 activation: ACTIVATION_TANH }
               layers { units: 2 activation: ACTIVATION_IDENTITY }
               optimizer {
                 kind: SGD
                 learning_rate: 0.01
                 schedule { kind: EXPONENTIAL warmup_steps: 2 gamma: 0.5 }
               }
             })pb");
  const double lr = 0.01f;
  auto expected = [lr](uint64_t k) { return k < 2 ? lr * (k + 1) / 2 : lr * std::pow(0.5, k - 2); };
  for (uint64_t k = 0; k < 6; ++k) {
    v1::GetModelInfoRequest request;
    request.set_model("m");
    v1::ModelInfo info;
    ASSERT_TRUE(stub_->GetModelInfo(Context().get(), request, &info).ok());
    EXPECT_EQ(info.optimizer_steps(), k);
    EXPECT_NEAR(info.learning_rate(), expected(k), 1e-15) << "k = " << k;
    EXPECT_EQ(info.spec().optimizer().schedule().kind(), v1::LearningRateSchedule::EXPONENTIAL);
    TrainSteps(1);
  }
}

// Asked for, the response carries [rows x input_dim]; not asked, nothing
// (tests/server/input_gradient_test.cc checks the values).
TEST_F(ServiceTest, SubmitDeltaAskingForTheInputGradientGetsIt) {
  Start(kSmallModel);
  v1::SubmitDeltaRequest request = OnesRequest();
  request.set_return_input_gradient(true);
  v1::SubmitDeltaResponse response;
  const grpc::Status status = Submit(request, &response);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(response.input_gradient().rows(), request.inputs().rows());
  EXPECT_EQ(response.input_gradient().cols(), 4u);
  EXPECT_EQ(response.input_gradient().data_size(), static_cast<int>(request.inputs().rows()) * 4);
  request.set_return_input_gradient(false);
  request.set_request_id("");
  ASSERT_TRUE(Submit(request, &response).ok());
  EXPECT_FALSE(response.has_input_gradient());
}

// Asked for, an OK answer carries the weights it made: equal to what
// GetParameters returns at that version (nothing else submits); not asked,
// nothing. A duplicate carries the newest weights; a refused submission
// carries nothing and changes nothing.
TEST_F(ServiceTest, SubmitDeltaAskingForTheParametersGetsTheNewest) {
  Start(kSmallModel);
  v1::SubmitDeltaRequest request = OnesRequest();
  request.set_return_parameters(true);
  request.set_request_id("with-parameters");
  v1::SubmitDeltaResponse response;
  ASSERT_TRUE(Submit(request, &response).ok());
  ASSERT_TRUE(response.has_parameters());
  EXPECT_EQ(response.parameters().version(), response.version());
  EXPECT_EQ(response.parameters().SerializeAsString(), Parameters("m").SerializeAsString());

  v1::SubmitDeltaRequest other = OnesRequest();
  v1::SubmitDeltaResponse plain;
  ASSERT_TRUE(Submit(other, &plain).ok());
  EXPECT_FALSE(plain.has_parameters());
  EXPECT_GT(plain.version(), response.version());

  v1::SubmitDeltaResponse again;  // The same request_id: a duplicate.
  ASSERT_TRUE(Submit(request, &again).ok());
  EXPECT_TRUE(again.duplicate());
  EXPECT_EQ(again.version(), response.version());
  EXPECT_EQ(again.parameters().version(), plain.version());
  EXPECT_EQ(again.parameters().SerializeAsString(), Parameters("m").SerializeAsString());

  v1::SubmitDeltaRequest bad = OnesRequest();
  bad.set_return_parameters(true);
  bad.mutable_deltas()->set_data(0, std::numeric_limits<float>::quiet_NaN());
  v1::SubmitDeltaResponse refused;
  EXPECT_EQ(Submit(bad, &refused).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_FALSE(refused.has_parameters());
  EXPECT_EQ(Parameters("m").version(), plain.version());
}

// l(Θ) = ½‖f(X; Θ) − Y*‖² over a fixed batch.
double TrueLoss(const v1::ForwardResponse& y, const std::vector<float>& target) {
  double loss = 0;
  for (int i = 0; i < y.outputs().data_size(); ++i) {
    const double d = y.outputs().data(i) - target[i];
    loss += 0.5 * d * d;
  }
  return loss;
}

TEST_F(ServiceTest, TrueGradientFromConcurrentClientsLowersTheLoss) {
  Start(kSmallModel);
  const std::vector<float> x = {0.5f, -1.0f, 0.2f,  0.8f, -0.3f, 0.9f, 1.0f,  -0.5f,
                                0.0f, 0.4f,  -0.7f, 0.1f, 1.2f,  0.3f, -0.2f, -0.9f};
  const std::vector<float> target = {1.0f, -0.5f, -1.0f, 0.5f, 0.3f, 0.8f, -0.6f, -0.2f};
  const v1::Matrix inputs = WireMatrix(4, 4, x);
  v1::ForwardResponse initial;
  ASSERT_TRUE(Forward("m", inputs, &initial).ok());

  constexpr int kClients = 4;
  constexpr int kSubmissionsEach = 40;
  std::vector<std::thread> clients;
  std::atomic<int> failures{0};
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      for (int i = 0; i < kSubmissionsEach; ++i) {
        v1::ForwardResponse y;
        if (!Forward("m", inputs, &y).ok()) ++failures;
        // δ = ∂l/∂y = y − Y*, the true gradient of the loss to minimise.
        std::vector<float> delta(target.size());
        for (size_t k = 0; k < delta.size(); ++k) delta[k] = y.outputs().data(k) - target[k];
        v1::SubmitDeltaRequest request;
        request.set_model("m");
        *request.mutable_inputs() = inputs;
        *request.mutable_outputs() = y.outputs();
        *request.mutable_deltas() = WireMatrix(4, 2, delta);
        request.set_version(y.version());
        if (!Submit(request).ok()) ++failures;
      }
    });
  }
  for (std::thread& t : clients) t.join();
  EXPECT_EQ(failures.load(), 0);
  v1::ForwardResponse final;
  ASSERT_TRUE(Forward("m", inputs, &final).ok());
  EXPECT_EQ(final.version(), static_cast<uint64_t>(kClients * kSubmissionsEach));
  EXPECT_LT(TrueLoss(final, target), 0.1 * TrueLoss(initial, target))
      << "initial " << TrueLoss(initial, target);
}

TEST_F(ServiceTest, MaximizeWithNegatedDeltaMatchesMinimize) {
  const std::string body = R"pb(
    input_dim: 3
    seed: 11
    layers { units: 5 activation: ACTIVATION_SIGMOID }
    layers { units: 2 activation: ACTIVATION_TANH }
    optimizer { kind: ADAM learning_rate: 0.05 }
    max_staleness: 100
  )pb";
  Start("models { name: \"min\" " + body + " } models { name: \"max\" " + body + " }");
  const std::vector<float> initial = ParametersOf(Parameters("min"));
  ASSERT_EQ(initial, ParametersOf(Parameters("max")));
  for (int i = 0; i < 5; ++i) {
    const float s = 0.1f * (i + 1);
    v1::SubmitDeltaRequest minimize;
    minimize.set_model("min");
    *minimize.mutable_inputs() = WireMatrix(2, 3, {s, -s, 1, 0.5f, s * s, -1});
    *minimize.mutable_deltas() = WireMatrix(2, 2, {s, -0.3f, 0.7f, -s});
    minimize.set_version(i);
    minimize.set_objective(v1::MINIMIZE);
    v1::SubmitDeltaRequest maximize = minimize;
    maximize.set_model("max");
    maximize.set_objective(v1::MAXIMIZE);
    for (float& d : *maximize.mutable_deltas()->mutable_data()) d = -d;
    ASSERT_TRUE(Submit(minimize).ok());
    ASSERT_TRUE(Submit(maximize).ok());
  }
  const v1::ParameterUpdate min = Parameters("min");
  const v1::ParameterUpdate max = Parameters("max");
  EXPECT_EQ(min.version(), 5u);
  EXPECT_EQ(max.version(), 5u);
  EXPECT_NE(ParametersOf(min), initial);  // The submissions did something.
  EXPECT_EQ(ParametersOf(min), ParametersOf(max));
}

TEST_F(ServiceTest, AnchoredSgdUpdateOfALinearModelIsExact) {
  Start(R"pb(
    models {
      name: "lin"
      input_dim: 2
      seed: 5
      layers { units: 2 activation: ACTIVATION_IDENTITY }
      optimizer { kind: SGD learning_rate: 0.1 }
      surrogate { mode: ANCHORED delta_scale: 0.5 }
    }
  )pb");
  const std::vector<float> p = ParametersOf(Parameters("lin"));  // W00 W01 W10 W11 b0 b1
  const float x[2] = {1.0f, 2.0f};
  const float acted[2] = {0.3f, -0.2f};  // ỹ ≠ y
  const float delta[2] = {1.0f, -0.5f};
  v1::SubmitDeltaRequest request;
  request.set_model("lin");
  *request.mutable_inputs() = WireMatrix(1, 2, {x[0], x[1]});
  *request.mutable_outputs() = WireMatrix(1, 2, {acted[0], acted[1]});
  *request.mutable_deltas() = WireMatrix(1, 2, {delta[0], delta[1]});
  v1::SubmitDeltaResponse response;
  ASSERT_TRUE(Submit(request, &response).ok());
  EXPECT_TRUE(response.stepped());
  EXPECT_EQ(response.version(), 1u);

  // g = ∂l_s/∂y = (y − ỹ) + ε·δ; W ← W − η·g·xᵀ; b ← b − η·g.
  double expected_loss = 0;
  std::vector<float> expected = p;
  for (int i = 0; i < 2; ++i) {
    const float y = p[2 * i] * x[0] + p[2 * i + 1] * x[1] + p[4 + i];
    const float g = (y - acted[i]) + 0.5f * delta[i];
    expected_loss += 0.5 * g * g;
    expected[2 * i] -= 0.1f * g * x[0];
    expected[2 * i + 1] -= 0.1f * g * x[1];
    expected[4 + i] -= 0.1f * g;
  }
  const std::vector<float> after = ParametersOf(Parameters("lin"));
  for (int k = 0; k < 6; ++k) EXPECT_NEAR(after[k], expected[k], 1e-6) << k;
  EXPECT_NEAR(response.surrogate_loss(), expected_loss, 1e-6);
}

TEST_F(ServiceTest, VersionAdvancesOnlyAfterSamplesPerStepRows) {
  Start(R"pb(
    models {
      name: "m"
      input_dim: 4
      layers { units: 2 activation: ACTIVATION_IDENTITY }
      samples_per_step: 5
    }
  )pb");
  const std::vector<std::pair<uint64_t, bool>> expected = {{0, false}, {0, false}, {1, true}};
  for (const auto& [version, stepped] : expected) {
    v1::SubmitDeltaResponse response;
    ASSERT_TRUE(Submit(OnesRequest(/*rows=*/2), &response).ok());
    EXPECT_EQ(response.version(), version);
    EXPECT_EQ(response.stepped(), stepped);
  }
  EXPECT_EQ(Parameters("m").version(), 1u);
}

TEST_F(ServiceTest, TooStaleSubmissionIsAbortedAndChangesNothing) {
  Start(R"pb(
    models {
      name: "m"
      input_dim: 4
      layers { units: 2 activation: ACTIVATION_IDENTITY }
      max_staleness: 1
    }
  )pb");
  TrainSteps(3);
  const v1::ParameterUpdate before = Parameters("m");
  v1::SubmitDeltaRequest stale = OnesRequest();
  stale.set_version(1);
  grpc::Status status = Submit(stale);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(status.error_message(), HasSubstr("refetch"));
  const v1::ParameterUpdate after = Parameters("m");
  EXPECT_EQ(after.version(), 3u);
  EXPECT_EQ(ParametersOf(after), ParametersOf(before));
}

TEST_F(ServiceTest, BadInputIsRejectedAndLeavesParametersBitIdentical) {
  Start(kSmallModel);
  TrainSteps(1);
  const v1::ParameterUpdate before = Parameters("m");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();

  struct SubmitCase {
    std::string name;
    std::function<void(v1::SubmitDeltaRequest&)> corrupt;
    grpc::StatusCode code;
    std::string message;
  };
  const std::vector<SubmitCase> submit_cases = {
      {"data size", [](auto& r) { r.mutable_inputs()->add_data(1); },
       grpc::StatusCode::INVALID_ARGUMENT, "inputs: expected rows*cols = 1*4 = 4 values, got 5"},
      {"input cols",
       [](auto& r) {
         *r.mutable_inputs() = WireMatrix(1, 3, {1, 2, 3});
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "inputs: expected 4 columns (input_dim of model \"m\"), got 3"},
      {"delta cols",
       [](auto& r) {
         *r.mutable_deltas() = WireMatrix(1, 3, {1, 2, 3});
       },
       grpc::StatusCode::INVALID_ARGUMENT,
       "deltas: expected 2 columns (output_dim of model \"m\"), got 3"},
      {"delta rows",
       [](auto& r) {
         *r.mutable_deltas() = WireMatrix(2, 2, {1, 2, 3, 4});
       },
       grpc::StatusCode::INVALID_ARGUMENT, "deltas: expected 1 rows"},
      {"output rows",
       [](auto& r) {
         *r.mutable_outputs() = WireMatrix(2, 2, {1, 2, 3, 4});
       },
       grpc::StatusCode::INVALID_ARGUMENT, "outputs: expected 1 rows"},
      {"output cols", [](auto& r) { *r.mutable_outputs() = WireMatrix(1, 1, {1}); },
       grpc::StatusCode::INVALID_ARGUMENT, "outputs: expected 2 columns"},
      {"empty batch",
       [](auto& r) {
         *r.mutable_inputs() = WireMatrix(0, 4, {});
         *r.mutable_deltas() = WireMatrix(0, 2, {});
       },
       grpc::StatusCode::INVALID_ARGUMENT, "inputs: expected at least 1 row, got 0"},
      {"nan input", [&](auto& r) { r.mutable_inputs()->set_data(2, nan); },
       grpc::StatusCode::INVALID_ARGUMENT, "inputs"},
      {"inf output",
       [&](auto& r) {
         *r.mutable_outputs() = WireMatrix(1, 2, {0, inf});
       },
       grpc::StatusCode::INVALID_ARGUMENT, "outputs"},
      {"nan delta", [&](auto& r) { r.mutable_deltas()->set_data(1, nan); },
       grpc::StatusCode::INVALID_ARGUMENT, "deltas"},
      {"overflowing delta",
       [](auto& r) {
         *r.mutable_inputs() = WireMatrix(1, 4, {1e30f, 1e30f, 1e30f, 1e30f});
         *r.mutable_deltas() = WireMatrix(1, 2, {3e38f, 3e38f});
       },
       grpc::StatusCode::INVALID_ARGUMENT, "finite"},
      {"future version", [](auto& r) { r.set_version(99); }, grpc::StatusCode::INVALID_ARGUMENT,
       "version: expected at most 1"},
      {"unknown objective", [](auto& r) { r.set_objective(static_cast<v1::Objective>(7)); },
       grpc::StatusCode::INVALID_ARGUMENT, "objective"},
      {"unknown model", [](auto& r) { r.set_model("nope"); }, grpc::StatusCode::NOT_FOUND,
       "model \"nope\" not found"},
  };
  for (const SubmitCase& c : submit_cases) {
    v1::SubmitDeltaRequest request = OnesRequest();
    c.corrupt(request);
    grpc::Status status = Submit(request);
    EXPECT_EQ(status.error_code(), c.code) << c.name << ": " << status.error_message();
    EXPECT_THAT(status.error_message(), HasSubstr(c.message)) << c.name;
  }

  struct ForwardCase {
    std::string name;
    std::string model;
    v1::Matrix inputs;
    grpc::StatusCode code;
  };
  const std::vector<ForwardCase> forward_cases = {
      {"data size", "m", WireMatrix(1, 4, {1, 2, 3}), grpc::StatusCode::INVALID_ARGUMENT},
      {"cols", "m", WireMatrix(1, 3, {1, 2, 3}), grpc::StatusCode::INVALID_ARGUMENT},
      {"empty", "m", WireMatrix(0, 4, {}), grpc::StatusCode::INVALID_ARGUMENT},
      {"nan", "m", WireMatrix(1, 4, {1, nan, 3, 4}), grpc::StatusCode::INVALID_ARGUMENT},
      {"unknown model", "nope", WireMatrix(1, 4, {1, 2, 3, 4}), grpc::StatusCode::NOT_FOUND},
  };
  for (const ForwardCase& c : forward_cases) {
    v1::ForwardResponse response;
    EXPECT_EQ(Forward(c.model, c.inputs, &response).error_code(), c.code) << c.name;
  }

  v1::GetModelInfoRequest info_request;
  info_request.set_model("nope");
  v1::ModelInfo info;
  EXPECT_EQ(stub_->GetModelInfo(Context().get(), info_request, &info).error_code(),
            grpc::StatusCode::NOT_FOUND);
  v1::GetParametersRequest params_request;
  params_request.set_model("nope");
  v1::ParameterUpdate update;
  EXPECT_EQ(stub_->GetParameters(Context().get(), params_request, &update).error_code(),
            grpc::StatusCode::NOT_FOUND);

  const v1::ParameterUpdate after = Parameters("m");
  EXPECT_EQ(after.version(), before.version());
  EXPECT_EQ(ParametersOf(after), ParametersOf(before));
}

TEST_F(ServiceTest, MessageOverMaxMessageBytesIsResourceExhausted) {
  Start(std::string(kSmallModel) + "max_message_bytes: 4096");
  v1::ForwardResponse response;
  const grpc::Status status =
      Forward("m", WireMatrix(1024, 4, std::vector<float>(4096, 1.0f)), &response);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << status.error_message();
  EXPECT_TRUE(Forward("m", WireMatrix(1, 4, {1, 2, 3, 4}), &response).ok());
}

TEST_F(ServiceTest, ARetriedRequestIdIsAnsweredAsBeforeAndAppliesNothing) {
  Start(kSmallModel);
  v1::SubmitDeltaRequest request = OnesRequest();
  request.set_request_id("retry-me");
  v1::SubmitDeltaResponse first, second;
  ASSERT_TRUE(Submit(request, &first).ok());
  EXPECT_FALSE(first.duplicate());
  const v1::ParameterUpdate after_first = Parameters("m");

  ASSERT_TRUE(Submit(request, &second).ok());
  EXPECT_TRUE(second.duplicate());
  EXPECT_EQ(second.version(), first.version());
  EXPECT_EQ(second.surrogate_loss(), first.surrogate_loss());
  EXPECT_EQ(ParametersOf(Parameters("m")), ParametersOf(after_first));

  request.set_request_id(std::string(200, 'x'));
  grpc::Status too_long = Submit(request);
  EXPECT_EQ(too_long.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(too_long.error_message(), HasSubstr("request_id: expected at most 128 bytes"));
}

// Bytes that are not the request message: INVALID_ARGUMENT saying what was
// expected, on every method (gRPC's typed handlers answered an empty
// UNIMPLEMENTED), nothing changes, and the server keeps serving.
TEST_F(ServiceTest, AMalformedRequestIsInvalidArgumentOnEveryMethod) {
  Start(kSmallModel);
  const v1::ParameterUpdate before = Parameters("m");
  grpc::GenericStub generic(channel_);
  const char garbage[] = "\xff\xff\xff\x0a";
  for (const char* method :
       {"GetModelInfo", "Forward", "SubmitDelta", "GetParameters", "ListModels"}) {
    grpc::Slice slice(garbage, sizeof garbage - 1);
    grpc::ByteBuffer request(&slice, 1), response;
    auto context = Context();
    absl::Notification done;
    grpc::Status status;
    generic.UnaryCall(context.get(), absl::StrCat("/deltaserve.v1.Trainer/", method),
                      grpc::StubOptions(), &request, &response, [&](grpc::Status s) {
                        status = std::move(s);
                        done.Notify();
                      });
    ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
    EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << method;
    EXPECT_THAT(status.error_message(), HasSubstr("request: expected a serialized deltaserve.v1."))
        << method;
  }
  EXPECT_EQ(ParametersOf(Parameters("m")), ParametersOf(before));
  EXPECT_TRUE(Submit(OnesRequest()).ok());
}

TEST_F(ServiceTest, FullQueueIsResourceExhausted) {
  gate_->Close();  // The learner takes nothing until Open().
  Start(R"pb(
    models {
      name: "m"
      input_dim: 4
      layers { units: 2 activation: ACTIVATION_IDENTITY }
      queue_capacity: 1
    }
  )pb");
  Trainer* trainer = server_->trainer("m");
  ASSERT_NE(trainer, nullptr);
  const v1::SubmitDeltaRequest request = OnesRequest();
  std::unique_ptr<PendingSubmit> queued = SubmitAsync(request);
  ASSERT_TRUE(trainer->AwaitQueued(1, kWait));
  ASSERT_EQ(trainer->queued(), 1u);

  grpc::Status full = Submit(request);
  EXPECT_EQ(full.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(full.error_message(), HasSubstr("queue is full"));

  gate_->Open();
  ASSERT_TRUE(queued->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(queued->status.ok()) << queued->status.error_message();
  EXPECT_EQ(queued->response.version(), 1u);
}

// Reads a watch stream until `last` arrives; returns the versions seen.
std::vector<uint64_t> ReadUntil(grpc::ClientReader<v1::ParameterUpdate>& reader, uint64_t last) {
  std::vector<uint64_t> versions;
  v1::ParameterUpdate update;
  while (reader.Read(&update)) {
    versions.push_back(update.version());
    if (update.version() >= last) break;
  }
  return versions;
}

void ExpectStrictlyIncreasingEndingAt(const std::vector<uint64_t>& versions, uint64_t last) {
  ASSERT_FALSE(versions.empty());
  for (size_t i = 1; i < versions.size(); ++i) EXPECT_LT(versions[i - 1], versions[i]);
  EXPECT_EQ(versions.back(), last);
}

TEST_F(ServiceTest, WatchersSeeIncreasingVersionsAndASlowOneDoesNotStallTraining) {
  // 65536·7 + 2 parameters: ~1.8 MB per update, 73 MB for all 40 versions,
  // far more than HTTP/2 windows and loopback socket buffers hold, so the
  // server has to skip versions for the watcher that isn't reading.
  Start(R"pb(
    models {
      name: "m"
      input_dim: 4
      layers { units: 65536 activation: ACTIVATION_TANH }
      layers { units: 2 activation: ACTIVATION_IDENTITY }
      max_staleness: 1000
    }
  )pb");
  constexpr uint64_t kSteps = 40;
  v1::WatchParametersRequest request;
  request.set_model("m");

  // The slow watcher reads the first update (so it is subscribed), then stops.
  auto slow_context = Context();
  auto slow = stub_->WatchParameters(slow_context.get(), request);
  v1::ParameterUpdate first;
  ASSERT_TRUE(slow->Read(&first));
  EXPECT_EQ(first.version(), 0u);
  EXPECT_EQ(first.model(), "m");

  std::vector<uint64_t> fast_versions;
  auto fast_context = Context();
  auto fast = stub_->WatchParameters(fast_context.get(), request);
  std::thread fast_reader([&] { fast_versions = ReadUntil(*fast, kSteps); });

  TrainSteps(kSteps);  // Completes while the slow watcher reads nothing.
  EXPECT_EQ(Parameters("m").version(), kSteps);

  fast_reader.join();
  ExpectStrictlyIncreasingEndingAt(fast_versions, kSteps);
  std::vector<uint64_t> slow_versions = ReadUntil(*slow, kSteps);
  slow_versions.insert(slow_versions.begin(), 0);
  EXPECT_LT(slow_versions.size(), kSteps + 1) << "the slow watcher skipped no version";
  ExpectStrictlyIncreasingEndingAt(slow_versions, kSteps);

  // A watcher that joins late starts at the current version.
  auto late_context = Context();
  auto late = stub_->WatchParameters(late_context.get(), request);
  v1::ParameterUpdate current;
  ASSERT_TRUE(late->Read(&current));
  EXPECT_EQ(current.version(), kSteps);
  EXPECT_EQ(ParametersOf(current), ParametersOf(Parameters("m")));

  for (auto* context : {slow_context.get(), fast_context.get(), late_context.get()}) {
    context->TryCancel();
  }
  EXPECT_EQ(slow->Finish().error_code(), grpc::StatusCode::CANCELLED);
  fast->Finish();
  late->Finish();
}

TEST_F(ServiceTest, WatchersBeyondTheLimitAreResourceExhausted) {
  Start(kSmallModel + "max_watchers_per_model: 1");
  v1::WatchParametersRequest request;
  auto first_context = Context();
  auto first = stub_->WatchParameters(first_context.get(), request);
  v1::ParameterUpdate update;
  ASSERT_TRUE(first->Read(&update));  // Subscribed.

  auto second_context = Context();
  auto second = stub_->WatchParameters(second_context.get(), request);
  EXPECT_FALSE(second->Read(&update));
  grpc::Status refused = second->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(refused.error_message(), HasSubstr("max_watchers_per_model"));

  first_context->TryCancel();
  EXPECT_EQ(first->Finish().error_code(), grpc::StatusCode::CANCELLED);
}

TEST_F(ServiceTest, WatchOfUnknownModelIsNotFound) {
  Start(kSmallModel);
  v1::WatchParametersRequest request;
  request.set_model("nope");
  auto context = Context();
  auto reader = stub_->WatchParameters(context.get(), request);
  v1::ParameterUpdate update;
  EXPECT_FALSE(reader->Read(&update));
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, ShutdownEndsWatchersAndQueuedSubmissionsWithUnavailable) {
  gate_->Close();  // The learner takes nothing; Shutdown abandons the gate.
  Start(kSmallModel);
  std::unique_ptr<PendingSubmit> submit = SubmitAsync(OnesRequest());
  ASSERT_TRUE(server_->trainer("m")->AwaitQueued(1, kWait));
  v1::WatchParametersRequest watch_request;
  auto watch_context = Context();
  auto watcher = stub_->WatchParameters(watch_context.get(), watch_request);
  v1::ParameterUpdate update;
  ASSERT_TRUE(watcher->Read(&update));

  server_->Shutdown();

  ASSERT_TRUE(submit->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(submit->status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_FALSE(watcher->Read(&update));
  EXPECT_EQ(watcher->Finish().error_code(), grpc::StatusCode::UNAVAILABLE);
  server_->Wait();  // Returns at once: shutdown is complete.
}

TEST_F(ServiceTest, HealthReportsServingForServerServiceAndEachModel) {
  Start(kSmallModel);
  auto health = grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "deltaserve.v1.Trainer", "deltaserve.v1.Trainer/m"}) {
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status status = health->Check(Context().get(), request, &response);
    ASSERT_TRUE(status.ok()) << service << ": " << status.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING) << service;
  }
  grpc::health::v1::HealthCheckRequest unknown;
  unknown.set_service("deltaserve.v1.Trainer/nope");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(Context().get(), unknown, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(ServiceTest, ReflectionListsTheTrainerService) {
  Start(kSmallModel);
  auto reflection = grpc::reflection::v1alpha::ServerReflection::NewStub(channel_);
  auto context = Context();
  auto stream = reflection->ServerReflectionInfo(context.get());
  grpc::reflection::v1alpha::ServerReflectionRequest request;
  request.set_list_services("");
  ASSERT_TRUE(stream->Write(request));
  stream->WritesDone();
  grpc::reflection::v1alpha::ServerReflectionResponse response;
  ASSERT_TRUE(stream->Read(&response));
  std::vector<std::string> names;
  for (const auto& service : response.list_services_response().service()) {
    names.push_back(service.name());
  }
  EXPECT_THAT(names, Contains("deltaserve.v1.Trainer"));
  EXPECT_TRUE(stream->Finish().ok());
}

TEST_F(ServiceTest, ServesOnAUnixSocket) {
  const std::string path =
      ::testing::TempDir() + "/deltaserve_service_test_" + std::to_string(::getpid()) + ".sock";
  std::remove(path.c_str());
  Start(kSmallModel, "unix:" + path);
  EXPECT_EQ(server_->address(), "unix:" + path);
  EXPECT_EQ(Parameters("m").model(), "m");
  TrainSteps(1);
  EXPECT_EQ(Parameters("m").version(), 1u);
}

}  // namespace
}  // namespace deltaserve::server
