// LoopbackServerTest: the fixture of the tests that drive a real DeltaServer
// over gRPC on loopback (service_test, metrics_scrape_test): start it from a
// text config, a stub on an insecure channel, per-call deadlines, a learner
// gate, and SubmitDelta calls left in flight.
#ifndef DELTASERVE_TESTS_SERVER_LOOPBACK_SERVER_H_
#define DELTASERVE_TESTS_SERVER_LOOPBACK_SERVER_H_

#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace deltaserve::server::testing {

// Every wait in these tests: a bug fails the test instead of hanging it.
inline constexpr absl::Duration kWait = absl::Seconds(30);

// A ServerConfig (text) with one small model "m": input 4 → 8 tanh → 2
// identity, seed 3, SGD lr 0.01, plus `extra` ModelSpec fields.
inline std::string SmallModelConfig(const std::string& extra) {
  return R"pb(models { name: "m" input_dim: 4 seed: 3
                       layers { units: 8 activation: ACTIVATION_TANH }
                       layers { units: 2 activation: ACTIVATION_IDENTITY }
                       optimizer { kind: SGD learning_rate: 0.01 })pb" +
         extra + "}";
}

// A client context whose deadline is `timeout` from now.
inline std::unique_ptr<grpc::ClientContext> ContextWithDeadline(absl::Duration timeout) {
  auto context = std::make_unique<grpc::ClientContext>();
  context->set_deadline(std::chrono::system_clock::now() + absl::ToChronoSeconds(timeout));
  return context;
}

// A SubmitDelta sent with the async stub and not yet answered.
struct PendingSubmit {
  std::unique_ptr<grpc::ClientContext> context = ContextWithDeadline(kWait);
  deltaserve::v1::SubmitDeltaRequest request;
  deltaserve::v1::SubmitDeltaResponse response;
  grpc::Status status;
  absl::Notification done;  // Notified once `status` and `response` are set.
};

class LoopbackServerTest : public ::testing::Test {
 protected:
  // Starts a server for `config_text` (a ServerConfig in text format) with
  // `options` (listen_address "127.0.0.1:0" unless set; learner_gate =
  // gate_) and connects stub_ to it. Close gate_ before calling this to hold
  // the learners from the start.
  void StartServer(const std::string& config_text, ServerOptions options = {}) {
    options.learner_gate = gate_;
    absl::StatusOr<std::unique_ptr<DeltaServer>> server =
        DeltaServer::Start(ParseText<deltaserve::v1::ServerConfig>(config_text), options);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(server_->address(), grpc::InsecureChannelCredentials());
    stub_ = deltaserve::v1::Trainer::NewStub(channel_);
  }

  static std::unique_ptr<grpc::ClientContext> Context() { return ContextWithDeadline(kWait); }

  grpc::Status Submit(const deltaserve::v1::SubmitDeltaRequest& request,
                      deltaserve::v1::SubmitDeltaResponse* response = nullptr) {
    deltaserve::v1::SubmitDeltaResponse ignored;
    return stub_->SubmitDelta(Context().get(), request, response ? response : &ignored);
  }

  // Sends `request` without waiting for the answer.
  std::unique_ptr<PendingSubmit> SubmitAsync(const deltaserve::v1::SubmitDeltaRequest& request) {
    auto pending = std::make_unique<PendingSubmit>();
    pending->request = request;
    PendingSubmit* p = pending.get();
    stub_->async()->SubmitDelta(p->context.get(), &p->request, &p->response,
                                [p](grpc::Status status) {
                                  p->status = std::move(status);
                                  p->done.Notify();
                                });
    return pending;
  }

  std::shared_ptr<HeldGate> gate_ = std::make_shared<HeldGate>();
  std::unique_ptr<DeltaServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<deltaserve::v1::Trainer::Stub> stub_;
};

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_LOOPBACK_SERVER_H_
