// A watcher slower than the learner receives (nearly) the newest version at
// every read, not a backlog of old ones: WatchParameters' latest-wins holds
// end to end. Our clients bound what the transport buffers for a stream
// (ClientOptions::watch_window_bytes, CreateWatchChannel); a client with
// gRPC's default channel settings is paced by the server
// (server/service/watch_pacer.h), which the DefaultChannel tests check.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/server/core/metrics.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/server/metrics_scrape.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "gtest/gtest.h"

namespace deltaserve::client {
namespace {

using ::deltaserve::client::testing::kInputDim;
using ::deltaserve::client::testing::kModelName;
using ::deltaserve::client::testing::kOutputDim;
using ::deltaserve::client::testing::ServerTest;

// What the simulated slow reader spends on each update.
constexpr absl::Duration kReadCost = absl::Milliseconds(5);
// Reads before the lag is judged: by then an unbounded backlog is thousands
// of versions deep (the learner steps far faster than 1 per kReadCost).
constexpr int kWarmupReads = 100;
constexpr int kJudgedReads = 300;
// The lag is judged in time, counted in reads: read i must get a version at
// least as new as the learner's at read i − kMaxReadsBehind, i.e. an update
// at most ~kMaxReadsBehind × kReadCost old. With the bounded watch window it
// is about one read old (the server chose it while the previous read ran);
// with gRPC's default window it was thousands of versions (seconds) old.
constexpr size_t kMaxReadsBehind = 3;

// Steps the model as fast as one thread can until stop; `version` is the
// newest version a SubmitDelta answered (≤ the server's, so lags measured
// against it are lower bounds).
void Learn(const TrainerClient& client, const std::atomic<bool>& stop,
           std::atomic<uint64_t>& version) {
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Constant(1, kInputDim, 0.25f);
  submission.deltas = model::Matrix::Constant(1, kOutputDim, 1e-3f);
  while (!stop.load()) {
    submission.version = version.load();
    submission.request_id.clear();
    auto result = client.SubmitDelta(submission);
    ASSERT_TRUE(result.ok()) << result.status();
    uint64_t seen = version.load();
    while (result->version > seen && !version.compare_exchange_weak(seen, result->version)) {
    }
  }
}

struct Read {
  uint64_t received;  // the version the callback got
  uint64_t learner;   // the learner's version when it got it
};

using SlowWatcher = ServerTest;

TEST_F(SlowWatcher, ReaderSlowerThanTheLearnerGetsTheNewestVersionNotABacklog) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> learner_version{0};
  std::vector<std::thread> learners;
  for (int i = 0; i < 2; ++i) {
    learners.emplace_back([&] { Learn(*client, stop, learner_version); });
  }

  absl::Mutex mu;
  std::vector<Read> reads;  // guarded by mu
  auto watch = client->Watch(kModelName, [&](Parameters params) {
    {
      absl::MutexLock lock(&mu);
      reads.push_back({params.version, learner_version.load()});
    }
    absl::SleepFor(kReadCost);  // the slow reader
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  {
    absl::MutexLock lock(&mu);
    const auto enough = [&reads] { return reads.size() >= kWarmupReads + kJudgedReads; };
    EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&enough), absl::Seconds(30)));
  }
  stop.store(true);
  for (std::thread& t : learners) t.join();
  (*watch)->Cancel();
  (*watch)->Wait().IgnoreError();
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();

  absl::MutexLock lock(&mu);
  ASSERT_GE(reads.size(), kWarmupReads + kJudgedReads);
  uint64_t max_lag = 0;
  uint64_t lag_sum = 0;
  int too_old = 0;  // reads older than kMaxReadsBehind reads
  for (size_t i = kWarmupReads; i < reads.size(); ++i) {
    const uint64_t lag =
        reads[i].learner > reads[i].received ? reads[i].learner - reads[i].received : 0;
    max_lag = std::max(max_lag, lag);
    lag_sum += lag;
    if (reads[i].received < reads[i - kMaxReadsBehind].learner) ++too_old;
  }
  const Read& last = reads.back();
  std::printf(
      "slow watcher: %zu reads; last read got v%llu while the learner was at v%llu; "
      "after %d warm-up reads lag max %llu mean %.1f versions; server ended at v%llu\n",
      reads.size(), static_cast<unsigned long long>(last.received),
      static_cast<unsigned long long>(last.learner), kWarmupReads,
      static_cast<unsigned long long>(max_lag),
      static_cast<double>(lag_sum) / static_cast<double>(reads.size() - kWarmupReads),
      static_cast<unsigned long long>(info->version()));
  // The reader really was slower than the learner, or the test proves nothing.
  ASSERT_GT(info->version(), 4 * reads.size()) << "the learner was not faster than the reader";
  EXPECT_EQ(too_old, 0) << "of " << kJudgedReads << " reads got a version older than the learner's "
                        << kMaxReadsBehind
                        << " reads before: the slow watcher received a backlog, not the newest";
}

// What a third-party client written from the proto does: the generated stub
// on a channel with gRPC's default settings (BDP probing grows its windows to
// megabytes: thousands of small updates), reading slower than the learner
// steps. Before the server paced its writes this reader was thousands of
// versions behind; the assertion is on versions: each judged read got a
// version at least as new as the learner's kMaxDefaultReadsBehind reads
// before.
constexpr size_t kMaxDefaultReadsBehind = 8;
constexpr int kDefaultWarmupReads = 400;  // the window filled at the start drains

TEST_F(SlowWatcher, DefaultChannelReaderSlowerThanTheLearnerGetsTheNewestVersion) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> learner_version{0};
  std::vector<std::thread> learners;
  for (int i = 0; i < 2; ++i) {
    learners.emplace_back([&] { Learn(*client, stop, learner_version); });
  }
  auto channel = grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials());
  auto stub = deltaserve::v1::Trainer::NewStub(channel);
  grpc::ClientContext context;
  deltaserve::v1::WatchParametersRequest request;
  request.set_model(kModelName);
  auto reader = stub->WatchParameters(&context, request);
  std::vector<Read> reads;
  deltaserve::v1::ParameterUpdate update;
  while (reads.size() < kDefaultWarmupReads + kJudgedReads && reader->Read(&update)) {
    reads.push_back({update.version(), learner_version.load()});
    absl::SleepFor(kReadCost);  // the slow reader
  }
  stop.store(true);
  for (std::thread& t : learners) t.join();
  context.TryCancel();
  reader->Finish().IgnoreError();
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  ASSERT_EQ(reads.size(), kDefaultWarmupReads + kJudgedReads) << "the stream ended early";

  uint64_t max_lag = 0;
  int too_old = 0;
  for (size_t i = kDefaultWarmupReads; i < reads.size(); ++i) {
    const uint64_t lag =
        reads[i].learner > reads[i].received ? reads[i].learner - reads[i].received : 0;
    max_lag = std::max(max_lag, lag);
    if (reads[i].received < reads[i - kMaxDefaultReadsBehind].learner) ++too_old;
  }
  std::printf(
      "default-channel slow watcher: %zu reads; last read got v%llu while the learner was at "
      "v%llu; after %d warm-up reads lag max %llu versions; server ended at v%llu\n",
      reads.size(), static_cast<unsigned long long>(reads.back().received),
      static_cast<unsigned long long>(reads.back().learner), kDefaultWarmupReads,
      static_cast<unsigned long long>(max_lag), static_cast<unsigned long long>(info->version()));
  ASSERT_GT(info->version(), 4 * reads.size()) << "the learner was not faster than the reader";
  EXPECT_EQ(too_old, 0) << "of " << kJudgedReads << " reads got a version older than the learner's "
                        << kMaxDefaultReadsBehind
                        << " reads before: a default-settings reader received a backlog";
}

// Watchers that open a stream and never read (default channel settings) do
// not stop training: kSteps steps complete before the test's own (generous)
// deadline, and every stream is still open afterwards (the server neither
// buffers for them nor ends them). How much they slow the learner is a
// benchmark, not a test (docs/benchmarks.md, "Fresh weights for
// default-settings clients"): before the pacing this test passed too, in
// 9.6 s instead of 1.4 s on a loaded machine.
TEST_F(SlowWatcher, DefaultChannelWatchersThatNeverReadDoNotStopTraining) {
  constexpr int kWatchers = 300;
  constexpr int kChannels = 3;
  constexpr int kSteps = 3000;
  constexpr absl::Duration kDeadline = absl::Seconds(60);
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int i = 0; i < kChannels; ++i) {
    channels.push_back(grpc::CreateChannel(server->address(), grpc::InsecureChannelCredentials()));
  }
  struct Watcher {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientReader<deltaserve::v1::ParameterUpdate>> reader;
  };
  std::vector<std::unique_ptr<Watcher>> watchers;
  for (int i = 0; i < kWatchers; ++i) {
    auto w = std::make_unique<Watcher>();
    deltaserve::v1::WatchParametersRequest request;
    request.set_model(kModelName);
    w->reader = deltaserve::v1::Trainer::NewStub(channels[i % kChannels])
                    ->WatchParameters(&w->context, request);
    w->reader->WaitForInitialMetadata();  // the stream is open on the server
    watchers.push_back(std::move(w));
  }
  // Updates written to the watchers so far (each stream's first one, at
  // least started by now).
  auto updates_sent = [&] {
    return server::testing::Sample(server->metrics()->Scrape(), "deltaserve_watch_updates_total",
                                   {{"model", kModelName}})
        .value_or(-1.0);
  };
  const absl::Time start = absl::Now();          // Before the baseline: every write counted below
  const double updates_before = updates_sent();  // started after `start`.
  ASSERT_GE(updates_before, 0.0) << "no deltaserve_watch_updates_total on /metrics";
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Constant(1, kInputDim, 0.25f);
  submission.deltas = model::Matrix::Constant(1, kOutputDim, 1e-3f);
  const absl::Time deadline = start + kDeadline;
  int steps = 0;
  while (steps < kSteps && absl::Now() < deadline) {
    auto result = client->SubmitDelta(submission);
    ASSERT_TRUE(result.ok()) << "step " << steps << ": " << result.status();
    submission.version = result->version;
    ++steps;
  }
  ASSERT_EQ(steps, kSteps) << "only " << steps << " steps before the deadline ("
                           << absl::FormatDuration(kDeadline) << ") with " << kWatchers
                           << " watchers that never read";
  // What keeps them cheap: the model's streams share a budget of 3,000
  // writes a second (server/service/watch_pacer.h), so with 300 watchers
  // each stream's writes start at least 100 ms apart, however fast the
  // learner steps: in `elapsed_ms` a stream starts at most elapsed / 100 ms
  // + 1 writes (+1 for a write started before `start` and counted after the
  // baseline). Measured on a loaded 2-core machine before the budget, with
  // each stream paced at 10 ms: 22-28k updates against bounds of 2.7-4.2k;
  // with no pacing at all, 229k (763 of the 3000 versions per watcher).
  constexpr double interval_ms = 1000.0 * kWatchers / 3000;
  const double updates = updates_sent() - updates_before;
  const double elapsed_ms = absl::ToDoubleMilliseconds(absl::Now() - start);  // After the count.
  const double bound = kWatchers * (elapsed_ms / interval_ms + 2.0);
  EXPECT_LE(updates, bound) << kWatchers << " watchers got " << updates << " updates in "
                            << elapsed_ms << " ms of " << kSteps << " steps: more than one per "
                            << interval_ms << " ms per stream";
  auto info = client->GetModelInfo();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_GE(info->version(), static_cast<uint64_t>(kSteps));
  for (auto& w : watchers) {
    deltaserve::v1::ParameterUpdate update;
    ASSERT_TRUE(w->reader->Read(&update)) << "a non-reading watcher's stream was ended";
    w->context.TryCancel();
    w->reader->Finish().IgnoreError();
  }
}

// The small window never stalls big updates: gRPC widens it for the message
// being read, so a fast reader of a 4 MiB model keeps up with the learner.
TEST(BigUpdates, FastReaderOfAFourMebibyteModelReceivesEveryStepPromptly) {
  deltaserve::v1::ServerConfig config = testing::SmallConfig();
  auto* spec = config.mutable_models(0);
  spec->mutable_layers(0)->set_units(1024);
  auto* wide = spec->add_layers();  // 3 → 1024 → 1024 → 2: 1,054,722 parameters
  *wide = spec->layers(0);
  spec->mutable_layers()->SwapElements(1, 2);
  server::ServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  auto started = server::DeltaServer::Start(config, server_options);
  ASSERT_TRUE(started.ok()) << started.status();
  auto connected = TrainerClient::Connect((*started)->address());
  ASSERT_TRUE(connected.ok()) << connected.status();
  const TrainerClient& client = **connected;

  absl::Mutex mu;
  uint64_t newest = 0;  // guarded by mu
  int updates = 0;      // guarded by mu
  auto watch = client.Watch(kModelName, [&](Parameters params) {
    absl::MutexLock lock(&mu);
    newest = params.version;
    ++updates;
  });
  ASSERT_TRUE(watch.ok()) << watch.status();
  constexpr int kSteps = 30;
  const absl::Time start = absl::Now();
  DeltaSubmission submission;
  submission.inputs = model::Matrix::Constant(1, kInputDim, 0.25f);
  submission.deltas = model::Matrix::Constant(1, kOutputDim, 1e-3f);
  for (int i = 0; i < kSteps; ++i) {
    auto result = client.SubmitDelta(submission);
    ASSERT_TRUE(result.ok()) << result.status();
    submission.version = result->version;
    absl::MutexLock lock(&mu);  // A fast reader: wait for each step to arrive.
    const auto arrived = [&] { return newest >= submission.version; };
    ASSERT_TRUE(mu.AwaitWithTimeout(absl::Condition(&arrived), absl::Seconds(10)))
        << "version " << submission.version << " did not arrive";
  }
  const absl::Duration took = absl::Now() - start;
  std::printf("big updates: %d steps of a 4 MiB model each received in %s (%s per step)\n", kSteps,
              absl::FormatDuration(took).c_str(), absl::FormatDuration(took / kSteps).c_str());
  (*watch)->Cancel();
  (*watch)->Wait().IgnoreError();
}

}  // namespace
}  // namespace deltaserve::client
