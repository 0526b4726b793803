// kill -9 torture test of the real binary with --state_dir: several clients
// submit with request_ids while the server is killed at random moments; after
// every restart the server's parameters and version must equal, bit for bit,
// an in-process replay of exactly the submissions it acknowledged — plus
// those whose response the kill swallowed but which were durable, which the
// test finds out by retrying them with their request_id (duplicate = true).
//
// samples_per_step 1, so each applied submission is one version: a response's
// version says where in the order the server applied it. A learning-rate
// schedule (COSINE with warmup) is on, so a restored step count that is off
// by one changes the parameters, and the restored rate is checked too. Input
// normalisation (RUNNING_MEAN_STD) is on: the restored statistics must equal
// the replay's bit for bit as well.
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/server/core/config.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/support/child_process.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve {
namespace {

using ::testing::HasSubstr;

constexpr int kCycles = 50;
constexpr int kClients = 4;
constexpr int kInputDim = 4;
constexpr int kOutputDim = 2;
constexpr absl::Duration kTimeBudget = absl::Seconds(150);

constexpr char kConfig[] = R"pb(
  models {
    name: "torture"
    input_dim: 4
    layers { units: 16 activation: ACTIVATION_TANH }
    layers { units: 2 activation: ACTIVATION_IDENTITY }
    seed: 11
    optimizer {
      kind: ADAM
      learning_rate: 0.01
      schedule { kind: COSINE warmup_steps: 25 total_steps: 400 final_learning_rate: 0.001 }
    }
    samples_per_step: 1
    input_normalization { kind: RUNNING_MEAN_STD clip: 5 }
  }
  persistence { checkpoint_every_steps: 7 keep_checkpoints: 2 }
)pb";

// One submission, reproducible from its id.
struct Sent {
  std::string request_id;
  model::Matrix inputs;
  model::Matrix deltas;
};

Sent MakeSent(int client, int n) {
  std::mt19937 rng(static_cast<uint32_t>(client * 100003 + n));
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  Sent s;
  s.request_id = absl::StrCat("c", client, "-", n);
  const int rows = 1 + n % 3;
  s.inputs.resize(rows, kInputDim);
  s.deltas.resize(rows, kOutputDim);
  for (int i = 0; i < s.inputs.size(); ++i) s.inputs.data()[i] = u(rng);
  for (int i = 0; i < s.deltas.size(); ++i) s.deltas.data()[i] = u(rng);
  return s;
}

// What the test knows: which submission produced each version, and which
// were sent but never answered.
class Ledger {
 public:
  void Acknowledged(const Sent& s, uint64_t version) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    auto [it, inserted] = by_version_.emplace(version, s);
    EXPECT_TRUE(inserted || it->second.request_id == s.request_id)
        << "version " << version << " acknowledged for " << s.request_id << " and "
        << it->second.request_id;
    ++acks_;
  }
  void Unanswered(Sent s) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    unanswered_.push_back(std::move(s));
  }
  std::vector<Sent> TakeUnanswered() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return std::exchange(unanswered_, {});
  }
  // Blocks until `n` more acknowledgements than `since` (false on timeout).
  bool AwaitAcks(int64_t n, absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    const int64_t target = acks_ + n;
    auto reached = [this, target]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return acks_ >= target; };
    return mu_.AwaitWithTimeout(absl::Condition(&reached), timeout);
  }
  std::map<uint64_t, Sent> by_version() ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    return by_version_;
  }

 private:
  absl::Mutex mu_;
  std::map<uint64_t, Sent> by_version_ ABSL_GUARDED_BY(mu_);
  std::vector<Sent> unanswered_ ABSL_GUARDED_BY(mu_);
  int64_t acks_ ABSL_GUARDED_BY(mu_) = 0;
};

struct Server {
  testing::Child child;
  std::string target;
};

Server StartServer(const std::string& config, const std::string& state_dir,
                   const std::string& log) {
  Server server;
  server.child = testing::Spawn(
      DELTASERVE_SERVER_PATH,
      {"--config=" + config, "--listen=127.0.0.1:0", "--state_dir=" + state_dir}, log);
  const std::string line = testing::ReadLine(server.child.out);
  EXPECT_THAT(line, HasSubstr("listening on 127.0.0.1:")) << "server log: " << log;
  server.target = line.substr(line.rfind(' ') + 1);
  return server;
}

client::DeltaSubmission ToClient(const Sent& s) {
  client::DeltaSubmission d;
  d.inputs = s.inputs;
  d.deltas = s.deltas;
  d.version = 0;  // Any version the server has reached (staleness has no limit).
  d.request_id = s.request_id;
  return d;
}

std::unique_ptr<client::TrainerClient> Connect(const std::string& target) {
  client::ClientOptions options;
  options.timeout = absl::Seconds(10);
  options.submit_retries = 0;  // The test resolves unanswered submissions itself.
  auto c = client::TrainerClient::Connect(target, options);
  EXPECT_TRUE(c.ok()) << c.status();
  return *std::move(c);
}

// The reference: an in-process Trainer (no persistence) fed the same
// submissions in the server's order.
class Reference {
 public:
  explicit Reference(const v1::ServerConfig& config) {
    auto options = server::TrainerOptionsFromProto(config.models(0));
    EXPECT_TRUE(options.ok()) << options.status();
    auto trainer = server::Trainer::Create(*std::move(options));
    EXPECT_TRUE(trainer.ok()) << trainer.status();
    trainer_ = *std::move(trainer);
  }
  // Applies the submissions for versions version()+1 .. `version`.
  void CatchUp(const std::map<uint64_t, Sent>& by_version, uint64_t version) {
    for (uint64_t v = trainer_->snapshot()->version + 1; v <= version; ++v) {
      auto it = by_version.find(v);
      ASSERT_NE(it, by_version.end()) << "the server holds version " << version
                                      << " but no known submission produced version " << v;
      server::Submission s;
      s.inputs = it->second.inputs;
      s.deltas = it->second.deltas;
      s.request_id = it->second.request_id;
      absl::StatusOr<server::SubmitResult> result =
          server::testing::SubmitAndWait(*trainer_, std::move(s));
      ASSERT_TRUE(result.ok()) << result.status();
      ASSERT_EQ(result->version, v);
    }
  }
  std::shared_ptr<const server::Snapshot> snapshot() const { return trainer_->snapshot(); }

 private:
  std::unique_ptr<server::Trainer> trainer_;
};

TEST(Kill9, EveryAcknowledgedSubmissionSurvivesAndRestartIsBitExact) {
  testing::TempDir tmp;
  const std::string config_path = tmp.path() + "/config.textproto";
  std::ofstream(config_path) << kConfig;
  const std::string state_dir = tmp.path() + "/state";
  const std::string log = tmp.path() + "/server.log";
  auto config = server::PrepareServerConfig(*server::ParseServerConfig(kConfig));
  ASSERT_TRUE(config.ok()) << config.status();
  Reference reference(*config);
  Ledger ledger;
  std::mt19937 rng(20261201);
  int next_n[kClients] = {};
  const absl::Time deadline = absl::Now() + kTimeBudget;
  int resolved_by_retry = 0, durable_unanswered = 0, kills = 0;

  for (int cycle = 0; cycle < kCycles && absl::Now() < deadline; ++cycle) {
    Server server = StartServer(config_path, state_dir, log);
    auto admin = Connect(server.target);

    // 1. Resolve what the last kill left unanswered: a retry with the same
    //    request_id either finds it applied (durable) or applies it now.
    for (const Sent& s : ledger.TakeUnanswered()) {
      auto retried = admin->SubmitDelta(ToClient(s), "");
      ASSERT_TRUE(retried.ok()) << retried.status();
      ledger.Acknowledged(s, retried->version);
      ++resolved_by_retry;
      durable_unanswered += retried->duplicate;
    }

    // 2. The server must hold exactly the replay of what it acknowledged.
    auto params = admin->GetParameters("");
    ASSERT_TRUE(params.ok()) << params.status();
    const std::map<uint64_t, Sent> by_version = ledger.by_version();
    const uint64_t acknowledged = by_version.empty() ? 0 : by_version.rbegin()->first;
    ASSERT_GE(params->version, acknowledged)
        << "cycle " << cycle << ": an acknowledged submission was lost";
    ASSERT_NO_FATAL_FAILURE(reference.CatchUp(by_version, params->version));
    ASSERT_EQ(reference.snapshot()->parameters, params->parameters)
        << "cycle " << cycle << ": restored parameters differ from the replay at version "
        << params->version;
    ASSERT_NE(params->input_statistics, nullptr);
    ASSERT_EQ(reference.snapshot()->input_statistics->mean(), params->input_statistics->mean())
        << "cycle " << cycle;
    ASSERT_EQ(reference.snapshot()->input_statistics->var(), params->input_statistics->var())
        << "cycle " << cycle;
    ASSERT_EQ(reference.snapshot()->input_statistics->count(), params->input_statistics->count())
        << "cycle " << cycle;
    auto info = admin->GetModelInfo("");
    ASSERT_TRUE(info.ok()) << info.status();
    ASSERT_EQ(info->version(), params->version);  // No client submits before step 3.
    ASSERT_EQ(info->optimizer_steps(), params->version) << "cycle " << cycle;
    ASSERT_EQ(info->learning_rate(), reference.snapshot()->learning_rate) << "cycle " << cycle;

    // 3. Clients submit until the kill; the kill comes after a random
    //    number of acknowledgements (0 = right away).
    std::atomic<bool> killed{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < kClients; ++c) {
      clients.emplace_back([&, c] {
        auto client = Connect(server.target);
        while (!killed) {
          Sent s = MakeSent(c, next_n[c]++);
          auto r = client->SubmitDelta(ToClient(s), "");
          if (r.ok()) {
            ledger.Acknowledged(s, r->version);
          } else {
            ledger.Unanswered(std::move(s));
            if (!killed) ADD_FAILURE() << "submission failed while serving: " << r.status();
            return;
          }
        }
      });
    }
    const int acks_before_kill = std::uniform_int_distribution<int>(0, 80)(rng);
    if (acks_before_kill > 0) {
      ASSERT_TRUE(ledger.AwaitAcks(acks_before_kill, absl::Seconds(30)));
    }
    killed = true;
    ASSERT_EQ(kill(server.child.pid, SIGKILL), 0);
    EXPECT_EQ(testing::Wait(server.child), 128 + SIGKILL);
    ++kills;
    for (std::thread& t : clients) t.join();
  }

  // A last restart, checked like the others, then a clean stop.
  Server server = StartServer(config_path, state_dir, log);
  auto admin = Connect(server.target);
  for (const Sent& s : ledger.TakeUnanswered()) {
    auto retried = admin->SubmitDelta(ToClient(s), "");
    ASSERT_TRUE(retried.ok()) << retried.status();
    ledger.Acknowledged(s, retried->version);
    durable_unanswered += retried->duplicate;
  }
  auto params = admin->GetParameters("");
  ASSERT_TRUE(params.ok());
  ASSERT_NO_FATAL_FAILURE(reference.CatchUp(ledger.by_version(), params->version));
  EXPECT_EQ(reference.snapshot()->parameters, params->parameters);
  ASSERT_NE(params->input_statistics, nullptr);
  EXPECT_EQ(reference.snapshot()->input_statistics->mean(), params->input_statistics->mean());
  EXPECT_EQ(reference.snapshot()->input_statistics->var(), params->input_statistics->var());
  EXPECT_EQ(params->version, ledger.by_version().rbegin()->first);
  ASSERT_EQ(kill(server.child.pid, SIGTERM), 0);
  EXPECT_EQ(testing::Wait(server.child), 0);
  EXPECT_GE(kills, 20) << "the time budget allowed only " << kills << " kills";
  std::cout << kills << " kills, " << params->version << " versions, " << resolved_by_retry
            << " unanswered submissions resolved by retry (" << durable_unanswered
            << " had been durable)" << std::endl;
}

TEST(StateDirBinary, RefusesAStateDirForAnotherNetworkWithOneLine) {
  testing::TempDir tmp;
  const std::string narrow = tmp.path() + "/narrow.textproto";
  const std::string wide = tmp.path() + "/wide.textproto";
  std::ofstream(narrow) << kConfig;
  std::string wide_text = kConfig;
  wide_text.replace(wide_text.find("units: 16"), 9, "units: 32");
  std::ofstream(wide) << wide_text;
  const std::string state_dir = tmp.path() + "/state";
  {
    Server first = StartServer(narrow, state_dir, tmp.path() + "/first.log");
    ASSERT_EQ(kill(first.child.pid, SIGTERM), 0);
    ASSERT_EQ(testing::Wait(first.child), 0);
  }
  testing::Child refused =
      testing::Spawn(DELTASERVE_SERVER_PATH,
                     {"--config=" + wide, "--listen=127.0.0.1:0", "--state_dir=" + state_dir});
  const std::string err = testing::ReadAll(refused.err);
  EXPECT_EQ(testing::ReadAll(refused.out), "");
  EXPECT_EQ(testing::Wait(refused), 2);
  EXPECT_EQ(std::count(err.begin(), err.end(), '\n'), 1) << err;
  EXPECT_THAT(err, HasSubstr("4 -> 16 tanh -> 2 identity, ADAM"));
  EXPECT_THAT(err, HasSubstr("4 -> 32 tanh -> 2 identity, ADAM"));
}

}  // namespace
}  // namespace deltaserve
