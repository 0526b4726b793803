// A real DeltaServer on 127.0.0.1:0 for client integration tests, with one
// small model and a TrainerClient connected to it.
#ifndef DELTASERVE_TESTS_CLIENT_TEST_SERVER_H_
#define DELTASERVE_TESTS_CLIENT_TEST_SERVER_H_

#include <memory>
#include <string>

#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/v1/config.pb.h"
#include "gtest/gtest.h"

namespace deltaserve::client::testing {

inline constexpr char kModelName[] = "policy";
inline constexpr int kInputDim = 3;
inline constexpr int kOutputDim = 2;

// input 3 → 8 tanh → 2 identity, SGD lr 0.05, one row per optimizer step.
inline deltaserve::v1::ServerConfig SmallConfig() {
  deltaserve::v1::ServerConfig config;
  deltaserve::v1::ModelSpec* spec = config.add_models();
  spec->set_name(kModelName);
  spec->set_input_dim(kInputDim);
  auto* hidden = spec->add_layers();
  hidden->set_units(8);
  hidden->set_activation(deltaserve::v1::ACTIVATION_TANH);
  auto* out = spec->add_layers();
  out->set_units(kOutputDim);
  out->set_activation(deltaserve::v1::ACTIVATION_IDENTITY);
  spec->set_seed(7);
  spec->mutable_optimizer()->set_kind(deltaserve::v1::OptimizerConfig::SGD);
  spec->mutable_optimizer()->set_learning_rate(0.05f);
  spec->set_samples_per_step(1);
  spec->set_max_staleness(1000);
  return config;
}

// Starts the server in SetUp; `server` and `client` are ready in each test.
class ServerTest : public ::testing::Test {
 protected:
  // The configuration SetUp serves.
  virtual deltaserve::v1::ServerConfig Config() const { return SmallConfig(); }

  void SetUp() override {
    server::ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    auto started = server::DeltaServer::Start(Config(), options);
    ASSERT_TRUE(started.ok()) << started.status();
    server = *std::move(started);
    auto connected = TrainerClient::Connect(server->address());
    ASSERT_TRUE(connected.ok()) << connected.status();
    client = *std::move(connected);
  }

  std::unique_ptr<server::DeltaServer> server;
  std::shared_ptr<TrainerClient> client;
};

}  // namespace deltaserve::client::testing

#endif  // DELTASERVE_TESTS_CLIENT_TEST_SERVER_H_
