// ListModels and the GetParameters long-poll (GetParametersRequest.min_version)
// over a real server on loopback: every model as GetModelInfo reports it, the
// default first; a waiting GetParameters answered by a step with the newest
// version, ended by its deadline, a client cancel or the server's shutdown,
// and bounded per model. Waiters are known to be parked from the server's own
// gauge (deltaserve_parameter_waiters), never from a sleep.
#include <memory>
#include <string>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/loopback_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

namespace v1 = ::deltaserve::v1;
using testing::ContextWithDeadline;
using ::testing::HasSubstr;
using testing::kWait;
using testing::WireMatrix;

const std::string kSmallModel = testing::SmallModelConfig("max_staleness: 1000");

// Three models in an order that is not alphabetical: "zeta" is the default.
constexpr char kThreeModels[] = R"pb(
  models {
    name: "zeta"
    input_dim: 4
    seed: 3
    layers { units: 8 activation: ACTIVATION_TANH }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
    max_staleness: 1000
  }
  models {
    name: "alpha"
    input_dim: 4
    seed: 5
    layers { units: 2 activation: ACTIVATION_IDENTITY }
    optimizer { kind: ADAM learning_rate: 0.001 }
    max_staleness: 1000
  }
  models {
    name: "mid"
    input_dim: 4
    seed: 7
    layers { units: 3 activation: ACTIVATION_RELU }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
    max_staleness: 1000
  }
)pb";

// A GetParameters sent with the callback stub and not yet answered.
struct PendingGet {
  std::unique_ptr<grpc::ClientContext> context;
  v1::GetParametersRequest request;
  v1::ParameterUpdate response;
  grpc::Status status;
  absl::Notification done;
};

class ListAndPollTest : public testing::LoopbackServerTest {
 protected:
  std::unique_ptr<PendingGet> GetAsync(const std::string& model, uint64_t min_version,
                                       absl::Duration timeout = kWait) {
    auto pending = std::make_unique<PendingGet>();
    pending->context = ContextWithDeadline(timeout);
    pending->request.set_model(model);
    pending->request.set_min_version(min_version);
    PendingGet* p = pending.get();
    stub_->async()->GetParameters(p->context.get(), &p->request, &p->response,
                                  [p](grpc::Status status) {
                                    p->status = std::move(status);
                                    p->done.Notify();
                                  });
    return pending;
  }

  v1::ParameterUpdate Parameters(const std::string& model) {
    v1::GetParametersRequest request;
    request.set_model(model);
    v1::ParameterUpdate update;
    const grpc::Status status = stub_->GetParameters(Context().get(), request, &update);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return update;
  }

  v1::ModelInfo Info(const std::string& model) {
    v1::GetModelInfoRequest request;
    request.set_model(model);
    v1::ModelInfo info;
    const grpc::Status status = stub_->GetModelInfo(Context().get(), request, &info);
    EXPECT_TRUE(status.ok()) << status.error_message();
    return info;
  }

  // One applied submission of δ = 1 on one row: one step (samples_per_step 1).
  void Step(const std::string& model) {
    v1::SubmitDeltaRequest request;
    request.set_model(model);
    *request.mutable_inputs() = WireMatrix(1, 4, {0.5f, 0.5f, 0.5f, 0.5f});
    *request.mutable_deltas() = WireMatrix(1, 2, {1.0f, 1.0f});
    request.set_version(Parameters(model).version());
    const grpc::Status status = Submit(request);
    ASSERT_TRUE(status.ok()) << status.error_message();
  }

  double Metric(const std::string& name, const std::map<std::string, std::string>& labels) {
    return testing::Sample(server_->metrics()->Scrape(), name, labels).value_or(-1);
  }

  // Polls the server's waiter gauge until it reads `want` (kWait at most);
  // true if it did. The gauge is the server's own record of parked calls.
  bool AwaitWaiters(const std::string& model, double want) {
    return AwaitMetric("deltaserve_parameter_waiters", {{"model", model}}, want);
  }

  bool AwaitMetric(const std::string& name, const std::map<std::string, std::string>& labels,
                   double want) {
    const absl::Time deadline = absl::Now() + kWait;
    while (Metric(name, labels) != want) {
      if (absl::Now() >= deadline) return false;
      absl::SleepFor(absl::Milliseconds(5));  // Polls the gauge; not a synchronisation.
    }
    return true;
  }

  double GetParametersCount(const std::string& model, const std::string& code) {
    return Metric("deltaserve_rpc_requests_total",
                  {{"model", model}, {"rpc", "GetParameters"}, {"code", code}});
  }
};

std::vector<float> ParametersOf(const v1::ParameterUpdate& update) {
  return {update.parameters().begin(), update.parameters().end()};
}

TEST_F(ListAndPollTest, ListModelsGivesEveryModelAsGetModelInfoDefaultFirst) {
  StartServer(kThreeModels);
  Step("alpha");
  Step("alpha");
  Step("mid");
  v1::ListModelsResponse list;
  const grpc::Status status = stub_->ListModels(Context().get(), v1::ListModelsRequest(), &list);
  ASSERT_TRUE(status.ok()) << status.error_message();
  ASSERT_EQ(list.models_size(), 3);
  const std::vector<std::string> order = {"zeta", "alpha", "mid"};  // Configuration order.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(list.models(i).spec().name(), order[i]);
    const v1::ModelInfo info = Info(order[i]);
    EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(list.models(i), info))
        << "ListModels: " << list.models(i).ShortDebugString()
        << "\nGetModelInfo: " << info.ShortDebugString();
  }
  EXPECT_EQ(list.models(0).spec().name(), Info("").spec().name());  // The default.
  EXPECT_EQ(list.models(1).version(), 2u);
  EXPECT_EQ(list.models(2).version(), 1u);
  EXPECT_EQ(list.models(0).version(), 0u);
  // Counted under model "" (it names no model).
  EXPECT_EQ(Metric("deltaserve_rpc_requests_total",
                   {{"model", ""}, {"rpc", "ListModels"}, {"code", "OK"}}),
            1.0);
}

TEST_F(ListAndPollTest, ListModelsWithOneModel) {
  StartServer(kSmallModel);
  v1::ListModelsResponse list;
  ASSERT_TRUE(stub_->ListModels(Context().get(), v1::ListModelsRequest(), &list).ok());
  ASSERT_EQ(list.models_size(), 1);
  EXPECT_EQ(list.models(0).spec().name(), "m");
  EXPECT_EQ(list.models(0).parameter_count(), 8u * 5 + 2u * 9);
}

TEST_F(ListAndPollTest, AMinVersionAlreadyReachedAnswersAtOnce) {
  StartServer(kSmallModel);
  Step("m");
  for (uint64_t min_version : {0u, 1u}) {
    std::unique_ptr<PendingGet> get = GetAsync("m", min_version);
    ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
    ASSERT_TRUE(get->status.ok()) << get->status.error_message();
    EXPECT_EQ(get->response.version(), 1u);
    EXPECT_EQ(get->response.parameters_size(), 8 * 5 + 2 * 9);
  }
  EXPECT_EQ(Metric("deltaserve_parameter_waiters", {{"model", "m"}}), 0.0);
}

TEST_F(ListAndPollTest, AboveTheVersionItWaitsForAStepAndGetsTheNewestVersion) {
  StartServer(kSmallModel);
  std::unique_ptr<PendingGet> get = GetAsync("m", 1);
  ASSERT_TRUE(AwaitWaiters("m", 1)) << "the call never parked";
  EXPECT_FALSE(get->done.HasBeenNotified());  // Parked: the model is at 0.
  Step("m");
  ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(get->status.ok()) << get->status.error_message();
  EXPECT_EQ(get->response.model(), "m");
  EXPECT_EQ(get->response.version(), 1u);
  const v1::ParameterUpdate now = Parameters("m");
  EXPECT_EQ(now.version(), 1u);
  EXPECT_EQ(ParametersOf(get->response), ParametersOf(now));
  EXPECT_TRUE(AwaitWaiters("m", 0));
  // The long-poll, and the Parameters() of Step() and of this test.
  EXPECT_EQ(GetParametersCount("m", "OK"), 3.0);
}

// Waiters of one model are answered by its own steps only, and every waiter
// whose version is reached gets the same newest version.
TEST_F(ListAndPollTest, EachModelsWaitersFollowTheirOwnModel) {
  StartServer(kThreeModels);
  std::unique_ptr<PendingGet> alpha1 = GetAsync("alpha", 1);
  std::unique_ptr<PendingGet> alpha1b = GetAsync("alpha", 1);
  std::unique_ptr<PendingGet> alpha3 = GetAsync("alpha", 3);
  std::unique_ptr<PendingGet> zeta = GetAsync("", 1);  // The default model.
  ASSERT_TRUE(AwaitWaiters("alpha", 3));
  ASSERT_TRUE(AwaitWaiters("zeta", 1));
  Step("alpha");
  ASSERT_TRUE(alpha1->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(alpha1b->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(alpha1->status.ok() && alpha1b->status.ok());
  EXPECT_EQ(alpha1->response.version(), 1u);
  EXPECT_EQ(alpha1b->response.version(), 1u);
  EXPECT_EQ(alpha1->response.model(), "alpha");
  ASSERT_TRUE(AwaitWaiters("alpha", 1));  // alpha3 still waits ...
  EXPECT_FALSE(alpha3->done.HasBeenNotified());
  EXPECT_FALSE(zeta->done.HasBeenNotified());  // ... and so does zeta.
  EXPECT_EQ(Metric("deltaserve_parameter_waiters", {{"model", "zeta"}}), 1.0);
  Step("zeta");
  ASSERT_TRUE(zeta->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(zeta->status.ok()) << zeta->status.error_message();
  EXPECT_EQ(zeta->response.model(), "zeta");
  EXPECT_EQ(zeta->response.version(), 1u);
  Step("alpha");
  Step("alpha");
  ASSERT_TRUE(alpha3->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(alpha3->status.ok()) << alpha3->status.error_message();
  EXPECT_EQ(alpha3->response.version(), 3u);
}

TEST_F(ListAndPollTest, TheDeadlineEndsTheWaitAndTheWaiterIsGone) {
  StartServer(kSmallModel);
  EXPECT_EQ(Parameters("m").version(), 0u);  // Connected: the deadline is all waiting.
  // Long enough to see it parked on a loaded machine; a parked call is
  // counted by the server when it ends.
  std::unique_ptr<PendingGet> get = GetAsync("m", 5, absl::Seconds(3));
  ASSERT_TRUE(AwaitWaiters("m", 1)) << "the call never parked";
  ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(get->status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << get->status.error_message();
  // The server dropped the waiter and recorded the call (as
  // DEADLINE_EXCEEDED, or CANCELLED if the client's cancel arrived first).
  EXPECT_TRUE(AwaitWaiters("m", 0)) << "the waiter outlived its deadline";
  const absl::Time deadline = absl::Now() + kWait;
  while (GetParametersCount("m", "DEADLINE_EXCEEDED") + GetParametersCount("m", "CANCELLED") < 1 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));  // Polls the counter; not a synchronisation.
  }
  EXPECT_EQ(GetParametersCount("m", "DEADLINE_EXCEEDED") + GetParametersCount("m", "CANCELLED"),
            1.0)
      << server_->metrics()->Scrape();
  // The server goes on: a plain call, then a long-poll answered by a step.
  EXPECT_EQ(Parameters("m").version(), 0u);
  std::unique_ptr<PendingGet> next = GetAsync("m", 1);
  ASSERT_TRUE(AwaitWaiters("m", 1));
  Step("m");
  ASSERT_TRUE(next->done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(next->status.ok()) << next->status.error_message();
  EXPECT_EQ(next->response.version(), 1u);
}

TEST_F(ListAndPollTest, AClientCancelRemovesTheWaiter) {
  StartServer(kSmallModel);
  std::unique_ptr<PendingGet> get = GetAsync("m", 1);
  ASSERT_TRUE(AwaitWaiters("m", 1));
  get->context->TryCancel();
  ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(get->status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(AwaitWaiters("m", 0)) << "a cancelled waiter stayed parked";
  EXPECT_TRUE(AwaitMetric("deltaserve_rpc_requests_total",
                          {{"model", "m"}, {"rpc", "GetParameters"}, {"code", "CANCELLED"}}, 1.0));
  // The step that would have answered it finds nobody; the server goes on.
  Step("m");
  EXPECT_EQ(Parameters("m").version(), 1u);
}

TEST_F(ListAndPollTest, ShutdownAnswersWaitersUnavailableAndCompletes) {
  StartServer(kThreeModels);
  std::unique_ptr<PendingGet> a = GetAsync("zeta", 1);
  std::unique_ptr<PendingGet> b = GetAsync("zeta", 100);
  std::unique_ptr<PendingGet> c = GetAsync("mid", 1);
  ASSERT_TRUE(AwaitWaiters("zeta", 2));
  ASSERT_TRUE(AwaitWaiters("mid", 1));
  server_->Shutdown();  // Returns: the waiters do not hold it.
  for (PendingGet* get : {a.get(), b.get(), c.get()}) {
    ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
    EXPECT_EQ(get->status.error_code(), grpc::StatusCode::UNAVAILABLE)
        << get->status.error_message();
    EXPECT_THAT(get->status.error_message(), HasSubstr("shutting down"));
  }
  EXPECT_EQ(Metric("deltaserve_parameter_waiters", {{"model", "zeta"}}), 0.0);
  EXPECT_EQ(Metric("deltaserve_parameter_waiters", {{"model", "mid"}}), 0.0);
  server_->Wait();
}

TEST_F(ListAndPollTest, WaitersBeyondTheLimitAreResourceExhausted) {
  StartServer(kSmallModel + "max_parameter_waiters_per_model: 2");
  std::unique_ptr<PendingGet> first = GetAsync("m", 1);
  std::unique_ptr<PendingGet> second = GetAsync("m", 2);
  ASSERT_TRUE(AwaitWaiters("m", 2));
  std::unique_ptr<PendingGet> third = GetAsync("m", 1);
  ASSERT_TRUE(third->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(third->status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(third->status.error_message(), HasSubstr("max_parameter_waiters_per_model"));
  // A version already reached is not a wait: still answered.
  EXPECT_EQ(Parameters("m").version(), 0u);
  Step("m");
  ASSERT_TRUE(first->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(first->status.ok()) << first->status.error_message();
  ASSERT_TRUE(AwaitWaiters("m", 1));
  // A freed place takes a new waiter.
  std::unique_ptr<PendingGet> fourth = GetAsync("m", 2);
  ASSERT_TRUE(AwaitWaiters("m", 2));
  Step("m");
  for (PendingGet* get : {second.get(), fourth.get()}) {
    ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
    ASSERT_TRUE(get->status.ok()) << get->status.error_message();
    EXPECT_EQ(get->response.version(), 2u);
  }
}

TEST_F(ListAndPollTest, AnUnknownModelIsNotFoundAndNeverParks) {
  StartServer(kSmallModel);
  std::unique_ptr<PendingGet> get = GetAsync("nope", 7);
  ASSERT_TRUE(get->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(get->status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Metric("deltaserve_parameter_waiters", {{"model", "m"}}), 0.0);
  // The largest min_version waits like any other (until cancelled).
  std::unique_ptr<PendingGet> huge = GetAsync("m", ~uint64_t{0});
  ASSERT_TRUE(AwaitWaiters("m", 1));
  huge->context->TryCancel();
  ASSERT_TRUE(huge->done.WaitForNotificationWithTimeout(kWait));
  EXPECT_EQ(huge->status.error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(AwaitWaiters("m", 0));
}

}  // namespace
}  // namespace deltaserve::server
