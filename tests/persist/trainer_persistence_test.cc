// The Trainer with a state directory: restart and replay are bit-exact,
// the request_id window survives, a failing disk stops the model without
// acknowledging anything it could not write, and a directory for another
// network is refused.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/persist/journal.h"
#include "deltaserve/tests/persist/faulty_file_system.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::deltaserve::server::testing::HeldGate;
using ::deltaserve::server::testing::SubmitAndWait;
using ::deltaserve::testing::FaultyFileSystem;
using ::deltaserve::testing::TempDir;
using ::testing::HasSubstr;
constexpr absl::Duration kWait = absl::Seconds(30);

model::Matrix Rows(int rows, int cols, float seed) {
  model::Matrix m(rows, cols);
  for (int r = 0; r < rows; ++r) {
    for (int c = 0; c < cols; ++c) m(r, c) = std::sin(seed + 0.37f * r + 1.1f * c);
  }
  return m;
}

// Submission i: distinct inputs and deltas, request_id "r<i>".
Submission Nth(int i, uint64_t version) {
  Submission s;
  s.inputs = Rows(1 + i % 3, 4, static_cast<float>(i));
  s.deltas = Rows(1 + i % 3, 2, 0.5f * static_cast<float>(i));
  s.version = version;
  s.request_id = absl::StrCat("r", i);
  return s;
}

// Adam (state to restore) and two rows per step (a partial gradient to restore).
testing::TrainerOptionsBuilder Builder(int hidden_units = 8) {
  return testing::TrainerOptionsBuilder("m", /*input_dim=*/4)
      .Layers({{hidden_units, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
      .Seed(3)
      .Adam(0.01f)
      .SamplesPerStep(2)
      .StalenessScaledLr();
}

TrainerOptions Options(const std::string& dir, persist::FileSystem* fs = nullptr) {
  return Builder().PersistIn(dir, fs).Build();
}

std::unique_ptr<Trainer> Make(TrainerOptions options) {
  auto trainer = Trainer::Create(std::move(options));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? *std::move(trainer) : nullptr;
}

// Applies submissions first..last-1, each at the trainer's current version.
void Train(Trainer& trainer, int first, int last) {
  for (int i = first; i < last; ++i) {
    auto r = SubmitAndWait(trainer, Nth(i, trainer.snapshot()->version));
    ASSERT_TRUE(r.ok()) << r.status();
  }
}

void ExpectSameState(Trainer& a, Trainer& b) {
  EXPECT_EQ(a.snapshot()->version, b.snapshot()->version);
  EXPECT_EQ(a.snapshot()->parameters, b.snapshot()->parameters);  // Bit for bit.
}

absl::Status CheckpointAndWait(Trainer& trainer) {
  absl::Notification done;
  absl::Status written;
  absl::Status queued = trainer.Checkpoint([&](absl::StatusOr<CheckpointInfo> info) {
    written = info.status();
    done.Notify();
  });
  if (!queued.ok()) return queued;
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  return written;
}

// Copies a live trainer's directory: what a kill -9 at this moment leaves.
std::string CrashCopy(const std::string& dir, const std::string& to) {
  std::filesystem::copy(dir, to, std::filesystem::copy_options::recursive);
  return to;
}

class TrainerPersistenceTest : public ::testing::Test {
 protected:
  std::string Dir(const std::string& name) const { return tmp_.path() + "/" + name; }
  TempDir tmp_;
};

TEST_F(TrainerPersistenceTest, RestartResumesBitExactlyMidStep) {
  auto reference = Make(Options(""));
  Train(*reference, 0, 8);
  {
    auto first = Make(Options(Dir("m")));
    Train(*first, 0, 7);  // 7 submissions of 1–3 rows: a step left half accumulated.
  }                       // Stop: final checkpoint.
  auto restarted = Make(Options(Dir("m")));
  Train(*restarted, 7, 8);  // Needs Adam's moments, step count and G as they were.
  ExpectSameState(*reference, *restarted);
}

TEST_F(TrainerPersistenceTest, CrashReplaysTheJournalBitExactly) {
  auto live = Make(Options(Dir("m")));
  Train(*live, 0, 5);
  ASSERT_TRUE(CheckpointAndWait(*live).ok());
  Train(*live, 5, 11);
  auto recovered = Make(Options(CrashCopy(Dir("m"), Dir("crash"))));
  ExpectSameState(*live, *recovered);
  // And both go on identically.
  Train(*live, 11, 13);
  Train(*recovered, 11, 13);
  ExpectSameState(*live, *recovered);
}

TEST_F(TrainerPersistenceTest, ALowerRowLimitAfterACrashStillReplaysWhatWasAccepted) {
  auto live = Make(Options(Dir("m")));
  Train(*live, 0, 6);  // Submissions of up to 3 rows.
  TrainerOptions stricter = Options(CrashCopy(Dir("m"), Dir("crash")));
  stricter.max_request_rows = 1;
  auto recovered = Make(stricter);
  ExpectSameState(*live, *recovered);
  EXPECT_EQ(recovered->CheckRows(2).code(), absl::StatusCode::kResourceExhausted);  // New limit.
}

TEST_F(TrainerPersistenceTest, RequestIdWindowSurvivesACrash) {
  auto live = Make(Options(Dir("m")));
  Train(*live, 0, 3);
  auto original = SubmitAndWait(*live, Nth(3, live->snapshot()->version));
  ASSERT_TRUE(original.ok());
  auto recovered = Make(Options(CrashCopy(Dir("m"), Dir("crash"))));
  auto retry = SubmitAndWait(*recovered, Nth(3, 0));
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->version, original->version);
  EXPECT_EQ(retry->surrogate_loss, original->surrogate_loss);
  ExpectSameState(*live, *recovered);  // Nothing applied twice.
}

// A window that has wrapped is checkpointed and restored oldest first: after
// the restart it keeps forgetting in the order the ids were applied.
TEST_F(TrainerPersistenceTest, ACheckpointedWindowForgetsInTheOrderIdsWereApplied) {
  TrainerOptions options = Options(Dir("m"));
  options.request_id_window = 3;
  auto live = Make(options);
  Train(*live, 0, 5);  // r0 … r4: the window holds r2, r3, r4.
  ASSERT_TRUE(CheckpointAndWait(*live).ok());
  live.reset();
  auto restored = Make(options);  // From the checkpoint: nothing after it to replay.
  ASSERT_NE(restored, nullptr);
  auto submit = [&](int i) {
    auto r = SubmitAndWait(*restored, Nth(i, restored->snapshot()->version));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() && r->duplicate;
  };
  EXPECT_TRUE(submit(4));   // Remembered.
  EXPECT_FALSE(submit(1));  // Forgotten before the checkpoint; now remembered, r2 forgotten.
  EXPECT_FALSE(submit(2));  // Applied again; r3 forgotten.
  EXPECT_FALSE(submit(3));  // Applied again; r4 forgotten.
  EXPECT_TRUE(submit(1));
  EXPECT_TRUE(submit(2));
  EXPECT_FALSE(submit(4));
}

TEST_F(TrainerPersistenceTest, AnswerAndNewVersionWaitForTheFsync) {
  FaultyFileSystem fs;
  auto trainer = Make(Options(Dir("m"), &fs));
  const auto before = trainer->snapshot();
  fs.HoldSyncs();
  absl::Notification answered;
  absl::StatusOr<SubmitResult> result;
  Submission s = Nth(0, 0);
  s.inputs = Rows(2, 4, 0.0f);  // Two rows: a step (samples_per_step 2).
  s.deltas = Rows(2, 2, 1.0f);
  ASSERT_TRUE(trainer
                  ->Submit(std::move(s),
                           [&](absl::StatusOr<SubmitResult> r) {
                             result = std::move(r);
                             answered.Notify();
                           })
                  .ok());
  // The batch's fsync is blocked: neither its answer nor its version may be out.
  ASSERT_TRUE(fs.AwaitHeldSync(kWait));
  EXPECT_FALSE(answered.HasBeenNotified());
  EXPECT_EQ(trainer->snapshot(), before);
  fs.ReleaseSyncs();
  ASSERT_TRUE(answered.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_TRUE(result->stepped);
  EXPECT_EQ(trainer->snapshot()->version, before->version + 1);
}

// What a power loss leaves: each journal segment cut to what its last fsync
// covered (the page cache's unsynced tail is gone).
std::string PowerLossCopy(FaultyFileSystem& fs, const std::string& dir, const std::string& to) {
  CrashCopy(dir, to);
  for (const auto& [path, size] : fs.durable_sizes()) {
    const std::string name = std::filesystem::path(path).filename().string();
    const std::string copy = to + "/" + name;
    if (name.rfind("journal-", 0) == 0 && std::filesystem::exists(copy)) {
      std::filesystem::resize_file(copy, size);
    }
  }
  return to;
}

TEST_F(TrainerPersistenceTest, PowerLossKeepsEveryAcknowledgedSubmission) {
  FaultyFileSystem fs;
  auto live = Make(Options(Dir("m"), &fs));
  Train(*live, 0, 9);  // Each acknowledged: COMMIT answers after the fsync.
  auto recovered = Make(Options(PowerLossCopy(fs, Dir("m"), Dir("power"))));
  ExpectSameState(*live, *recovered);
}

TEST_F(TrainerPersistenceTest, DurabilityNoneCanLoseAcknowledgedWorkOnPowerLoss) {
  FaultyFileSystem fs;
  TrainerOptions options = Options(Dir("m"), &fs);
  options.persistence.durability = Durability::kNone;  // Documented: survives kill -9 only.
  auto live = Make(options);
  Train(*live, 0, 9);
  TrainerOptions copy = Options(PowerLossCopy(fs, Dir("m"), Dir("power")));
  auto recovered = Make(copy);
  EXPECT_LT(recovered->snapshot()->version, live->snapshot()->version);
  auto crashed = Make(Options(CrashCopy(Dir("m"), Dir("crash"))));  // kill -9: nothing lost.
  ExpectSameState(*live, *crashed);
}

TEST_F(TrainerPersistenceTest, FullDiskFailsTheSubmissionAndKeepsTheDurableState) {
  FaultyFileSystem fs;
  auto trainer = Make(Options(Dir("m"), &fs));
  Train(*trainer, 0, 4);
  const auto durable = trainer->snapshot();
  fs.fail_appends = true;
  auto failed = SubmitAndWait(*trainer, Nth(4, durable->version));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.status().message(), HasSubstr("No space left on device"));
  EXPECT_EQ(trainer->snapshot(), durable);  // Readers never saw the unwritten step.
  fs.fail_appends = false;
  // Final: the model stays stopped until a restart, saying why.
  auto later = SubmitAndWait(*trainer, Nth(5, durable->version));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(later.status().message(), HasSubstr("restart the server"));
  EXPECT_TRUE(trainer->Forward(Rows(1, 4, 0)).ok());
  trainer.reset();
  auto restarted = Make(Options(Dir("m")));  // Cuts the half-written record.
  EXPECT_EQ(restarted->snapshot()->version, durable->version);
  EXPECT_EQ(restarted->snapshot()->parameters, durable->parameters);
  Train(*restarted, 4, 6);  // And trains again.
}

TEST_F(TrainerPersistenceTest, FsyncFailureIsFinalAndNeverRetried) {
  FaultyFileSystem fs;
  auto trainer = Make(Options(Dir("m"), &fs));
  Train(*trainer, 0, 2);
  const auto durable = trainer->snapshot();
  fs.fail_syncs = true;
  auto failed = SubmitAndWait(*trainer, Nth(2, durable->version));
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.status().message(), HasSubstr("I/O error"));
  EXPECT_EQ(trainer->snapshot(), durable);
  fs.fail_syncs = false;
  const int syncs = fs.syncs;
  auto later = SubmitAndWait(*trainer, Nth(3, durable->version));
  EXPECT_EQ(later.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(fs.syncs, syncs);  // No second fsync of a file that failed one.
  EXPECT_EQ(trainer->Checkpoint([](absl::StatusOr<CheckpointInfo>) {}).code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(TrainerPersistenceTest, ImportIsJournaledAndReplayed) {
  auto live = Make(Options(Dir("m")));
  Train(*live, 0, 3);
  std::vector<float> imported(live->mlp().parameter_count(), 0.25f);
  absl::Notification done;
  absl::StatusOr<SubmitResult> result;
  ASSERT_TRUE(live->ImportParameters(imported,
                                     [&](absl::StatusOr<SubmitResult> r) {
                                       result = std::move(r);
                                       done.Notify();
                                     })
                  .ok());
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(live->snapshot()->parameters, imported);
  EXPECT_EQ(live->snapshot()->version, result->version);
  Train(*live, 3, 6);
  auto recovered = Make(Options(CrashCopy(Dir("m"), Dir("crash"))));
  ExpectSameState(*live, *recovered);
}

// Input normalisation: statistics and the moments of the step in progress
// survive a restart (checkpoint) and a crash (journal replay) bit for bit.
TrainerOptions Normalized(const std::string& dir) {
  return Builder().Normalize(/*clip=*/2.0f).PersistIn(dir).Build();
}

void ExpectSameStatistics(Trainer& a, Trainer& b) {
  const auto& sa = a.snapshot()->input_statistics;
  const auto& sb = b.snapshot()->input_statistics;
  ASSERT_NE(sa, nullptr);
  ASSERT_NE(sb, nullptr);
  EXPECT_EQ(sa->mean(), sb->mean());  // Bit for bit.
  EXPECT_EQ(sa->var(), sb->var());
  EXPECT_EQ(sa->count(), sb->count());
}

TEST_F(TrainerPersistenceTest, NormalizationRestartResumesBitExactlyMidStep) {
  auto reference = Make(Normalized(""));
  Train(*reference, 0, 9);
  {
    auto first = Make(Normalized(Dir("m")));
    Train(*first, 0, 7);  // A step left half accumulated: its moments are pending.
  }
  auto restarted = Make(Normalized(Dir("m")));
  Train(*restarted, 7, 9);
  ExpectSameState(*reference, *restarted);
  ExpectSameStatistics(*reference, *restarted);
  EXPECT_NE(reference->snapshot()->input_statistics->mean()[0], 0.0);
}

TEST_F(TrainerPersistenceTest, NormalizationCrashReplaysTheJournalBitExactly) {
  auto live = Make(Normalized(Dir("m")));
  Train(*live, 0, 4);
  ASSERT_TRUE(CheckpointAndWait(*live).ok());
  Train(*live, 4, 11);
  auto recovered = Make(Normalized(CrashCopy(Dir("m"), Dir("crash"))));
  ExpectSameState(*live, *recovered);
  ExpectSameStatistics(*live, *recovered);
  Train(*live, 11, 14);
  Train(*recovered, 11, 14);
  ExpectSameState(*live, *recovered);
  ExpectSameStatistics(*live, *recovered);
}

TEST_F(TrainerPersistenceTest, NormalizationImportIsJournaledWithItsStatistics) {
  TrainerOptions options = Normalized(Dir("m"));
  auto live = Make(options);
  Train(*live, 0, 3);
  absl::StatusOr<model::RunningMeanStd> imported = model::RunningMeanStd::FromStatistics(
      options.normalization, {1, 2, 3, 4}, {0.5, 1, 2, 4}, 1000);
  ASSERT_TRUE(imported.ok()) << imported.status();
  std::vector<float> parameters(live->mlp().parameter_count(), 0.125f);
  absl::StatusOr<SubmitResult> result = testing::AwaitAnswer(
      [&](Trainer::SubmitCallback done) {
        return live->ImportParameters(
            parameters, std::make_shared<const model::RunningMeanStd>(*imported), std::move(done));
      },
      kWait);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(live->snapshot()->input_statistics->mean(), imported->mean());
  Train(*live, 3, 6);
  auto recovered = Make(Normalized(CrashCopy(Dir("m"), Dir("crash"))));
  ExpectSameState(*live, *recovered);
  ExpectSameStatistics(*live, *recovered);
}

// SGD keeps no buffers: its step count is all a checkpoint holds of it, and
// under warmup + LINEAR the schedule reads it at every step.
constexpr float kScheduledRate = 0.05f;
model::LearningRateScheduleConfig WarmupLinear() {
  model::LearningRateScheduleConfig schedule;
  schedule.kind = model::LearningRateScheduleConfig::Kind::kLinear;
  schedule.warmup_steps = 4;
  schedule.total_steps = 6;
  schedule.final_learning_rate = 0.001f;
  return schedule;
}

TrainerOptions ScheduledSgd(const std::string& dir) {
  return testing::TrainerOptionsBuilder("m", /*input_dim=*/4)
      .Layers({{8, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
      .Seed(3)
      .Sgd(kScheduledRate)
      .Schedule(WarmupLinear())
      .PersistIn(dir)
      .Build();
}

// lr(k) of WarmupLinear at kScheduledRate.
double ScheduledRate(uint64_t k) {
  auto schedule = model::LearningRateSchedule::Create(WarmupLinear(), kScheduledRate);
  EXPECT_TRUE(schedule.ok()) << schedule.status();
  return schedule->LearningRateAt(k);
}

void ExpectScheduleAt(const Trainer& trainer, uint64_t k) {
  EXPECT_EQ(trainer.snapshot()->optimizer_steps, k);
  EXPECT_EQ(trainer.snapshot()->learning_rate, ScheduledRate(k));
}

// A restart continues k: the rate goes on where it was (no second warmup),
// and the steps after it equal a run that never stopped.
TEST_F(TrainerPersistenceTest, ScheduleContinuesAcrossARestart) {
  auto reference = Make(ScheduledSgd(""));
  Train(*reference, 0, 10);
  {
    auto first = Make(ScheduledSgd(Dir("m")));
    Train(*first, 0, 5);  // One row or more each, samples_per_step 1: 5 steps.
    ExpectScheduleAt(*first, 5);
  }
  auto restarted = Make(ScheduledSgd(Dir("m")));
  ExpectScheduleAt(*restarted, 5);
  Train(*restarted, 5, 10);
  ExpectSameState(*reference, *restarted);
  ExpectScheduleAt(*restarted, 10);
}

// The journal replay reproduces k: a crash copy (initial checkpoint + 7
// journaled steps) restores to k = 7.
TEST_F(TrainerPersistenceTest, JournalReplayReproducesTheScheduleStep) {
  auto live = Make(ScheduledSgd(Dir("m")));
  Train(*live, 0, 7);
  auto recovered = Make(ScheduledSgd(CrashCopy(Dir("m"), Dir("crash"))));
  ExpectScheduleAt(*recovered, 7);
  Train(*live, 7, 9);
  Train(*recovered, 7, 9);
  ExpectSameState(*live, *recovered);
}

// After an import, a checkpoint keeps both k (the schedule's) and the
// optimizer state's own step count (Adam's t, restarted by the import):
// a restart goes on exactly as a run that never stopped.
TEST_F(TrainerPersistenceTest, ImportThenRestartKeepsTheScheduleStepAndAdamsStep) {
  model::LearningRateScheduleConfig exponential;
  exponential.kind = model::LearningRateScheduleConfig::Kind::kExponential;
  exponential.gamma = 0.9f;
  auto options = [&](const std::string& dir) {
    return Builder().Schedule(exponential).PersistIn(dir).Build();
  };
  std::vector<float> imported;
  auto run_until_import = [&](Trainer& trainer) {
    Train(trainer, 0, 6);
    imported.assign(trainer.mlp().parameter_count(), 0.125f);
    ASSERT_TRUE(testing::ImportAndWait(trainer, imported).ok());
    Train(trainer, 6, 9);
  };
  auto reference = Make(options(""));
  ASSERT_NO_FATAL_FAILURE(run_until_import(*reference));
  const uint64_t steps = reference->snapshot()->optimizer_steps;
  EXPECT_LT(steps, reference->snapshot()->version);  // The import made a version, not a step.
  {
    auto first = Make(options(Dir("m")));
    ASSERT_NO_FATAL_FAILURE(run_until_import(*first));
    ExpectSameState(*reference, *first);
  }  // Stop: final checkpoint.
  auto restarted = Make(options(Dir("m")));
  EXPECT_EQ(restarted->snapshot()->optimizer_steps, steps);
  EXPECT_EQ(restarted->snapshot()->learning_rate, reference->snapshot()->learning_rate);
  Train(*reference, 9, 14);
  Train(*restarted, 9, 14);
  ExpectSameState(*reference, *restarted);
}

TEST_F(TrainerPersistenceTest, ImportRejectsWrongCountAndNonFinite) {
  auto trainer = Make(Options(""));
  const size_t n = trainer->mlp().parameter_count();
  auto ignore = [](absl::StatusOr<SubmitResult>) {};
  EXPECT_EQ(trainer->ImportParameters(std::vector<float>(n - 1), ignore).code(),
            absl::StatusCode::kInvalidArgument);
  std::vector<float> nan(n, 0.0f);
  nan[3] = std::nanf("");
  EXPECT_EQ(trainer->ImportParameters(nan, ignore).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(trainer->snapshot()->version, 0u);
}

TEST_F(TrainerPersistenceTest, ADirectoryForAnotherNetworkIsRefused) {
  { auto first = Make(Options(Dir("m"))); }
  TrainerOptions wider = Builder(/*hidden_units=*/16).PersistIn(Dir("m")).Build();
  auto refused = Trainer::Create(std::move(wider));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("4 -> 8 tanh -> 2 identity"));
  EXPECT_THAT(refused.status().message(), HasSubstr("4 -> 16 tanh -> 2 identity"));
}

TEST_F(TrainerPersistenceTest, CheckpointWithoutStateDirIsFailedPrecondition) {
  auto trainer = Make(Options(""));
  EXPECT_EQ(trainer->Checkpoint([](absl::StatusOr<CheckpointInfo>) {}).code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST_F(TrainerPersistenceTest, PeriodicCheckpointsBoundTheReplay) {
  TrainerOptions options = Options(Dir("m"));
  options.persistence.checkpoint_every_steps = 2;
  options.persistence.keep_checkpoints = 2;
  {
    auto trainer = Make(options);
    Train(*trainer, 0, 20);
  }
  size_t checkpoints = 0, segments = 0;
  for (const auto& e : std::filesystem::directory_iterator(Dir("m"))) {
    const std::string name = e.path().filename().string();
    checkpoints += name.rfind("checkpoint-", 0) == 0;
    segments += name.rfind("journal-", 0) == 0;
  }
  EXPECT_EQ(checkpoints, 2u);
  EXPECT_LE(segments, 3u);  // Only what the older kept checkpoint needs.
}

// ---- Learner batching: what is queued together is backpropagated together ----

// Queues `subs` while the learner is held at `gate` (closed), then lets it
// take them all as one batch; their results in order. The learner is held
// again afterwards.
std::vector<absl::StatusOr<SubmitResult>> SubmitTogether(Trainer& trainer, HeldGate& gate,
                                                         std::vector<Submission> subs) {
  const size_t n = subs.size();
  std::vector<absl::StatusOr<SubmitResult>> results(n);
  std::vector<absl::Notification> done(n);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_TRUE(trainer
                    .Submit(std::move(subs[i]),
                            [&, i](absl::StatusOr<SubmitResult> r) {
                              results[i] = std::move(r);
                              done[i].Notify();
                            })
                    .ok());
  }
  EXPECT_TRUE(trainer.AwaitQueued(n, kWait));
  gate.PassOnce();
  for (auto& d : done) EXPECT_TRUE(d.WaitForNotificationWithTimeout(kWait));
  return results;
}

// Options whose learner waits at `gate`, closed from the start.
TrainerOptions Gated(TrainerOptions options, std::shared_ptr<HeldGate> gate) {
  gate->Close();
  options.gate = std::move(gate);
  return options;
}

// The batched_with_next flags of every journaled submission, in order.
std::vector<bool> BatchedFlags(const std::string& dir) {
  std::vector<bool> flags;
  std::vector<std::string> segments;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("journal-", 0) == 0) segments.push_back(e.path());
  }
  std::sort(segments.begin(), segments.end());
  for (const std::string& path : segments) {
    auto content = persist::FileSystem::Default()->ReadFile(path);
    EXPECT_TRUE(content.ok());
    for (const persist::Record& r : persist::ParseSegment(*content).records) {
      deltaserve::v1::JournalEntry entry;
      EXPECT_TRUE(entry.ParseFromArray(r.payload.data(), static_cast<int>(r.payload.size())));
      flags.push_back(entry.submission().batched_with_next());
    }
  }
  return flags;
}

void ExpectNear(const std::vector<float>& a, const std::vector<float>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_NEAR(a[i], b[i], 1e-6f * (1.0f + std::abs(b[i]))) << "parameter " << i;
  }
}

TEST_F(TrainerPersistenceTest, SubmissionsInOneStepAreBackpropagatedTogether) {
  TrainerOptions options = Options(Dir("m"));
  options.samples_per_step = 12;  // Nth(0..5) carry 1+2+3+1+2+3 = 12 rows: one step.
  auto gate = std::make_shared<HeldGate>();
  auto batched = Make(Gated(options, gate));
  std::vector<Submission> six;
  for (int i = 0; i < 6; ++i) six.push_back(Nth(i, 0));
  const auto results = SubmitTogether(*batched, *gate, std::move(six));

  TrainerOptions unbatched = options;
  unbatched.persistence.dir = "";
  auto reference = Make(unbatched);
  for (int i = 0; i < 6; ++i) {
    auto expected = SubmitAndWait(*reference, Nth(i, 0));
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    ASSERT_TRUE(expected.ok());
    EXPECT_EQ(results[i]->version, expected->version) << i;
    EXPECT_EQ(results[i]->stepped, expected->stepped) << i;
    EXPECT_NEAR(results[i]->surrogate_loss, expected->surrogate_loss,
                1e-6 * (1 + std::abs(expected->surrogate_loss)));
  }
  EXPECT_EQ(batched->snapshot()->version, 1u);
  ExpectNear(batched->snapshot()->parameters, reference->snapshot()->parameters);
  // Journaled as one group, so that replay batches them the same way.
  EXPECT_EQ(BatchedFlags(Dir("m")), std::vector<bool>({true, true, true, true, true, false}));
}

TEST_F(TrainerPersistenceTest, BatchedGroupsReplayBitExactly) {
  TrainerOptions options = Options(Dir("m"));
  options.samples_per_step = 5;  // Groups end at steps, inside and across batches.
  auto gate = std::make_shared<HeldGate>();
  auto live = Make(Gated(options, gate));
  for (int round = 0; round < 3; ++round) {
    std::vector<Submission> subs;
    for (int i = 0; i < 9; ++i) subs.push_back(Nth(round * 9 + i, live->snapshot()->version));
    for (const auto& r : SubmitTogether(*live, *gate, std::move(subs))) {
      ASSERT_TRUE(r.ok()) << r.status();
    }
  }
  const std::vector<bool> flags = BatchedFlags(Dir("m"));
  EXPECT_GT(std::count(flags.begin(), flags.end(), true), 5) << "nothing was batched";
  TrainerOptions same = options;
  same.persistence.dir = CrashCopy(Dir("m"), Dir("crash"));
  auto recovered = Make(same);
  ExpectSameState(*live, *recovered);
}

TEST_F(TrainerPersistenceTest, ARejectedMemberMakesItsGroupApplyOneByOne) {
  TrainerOptions options = Options("");
  options.samples_per_step = 100;
  auto gate = std::make_shared<HeldGate>();
  auto batched = Make(Gated(options, gate));
  auto reference = Make(options);
  auto subs = [] {
    std::vector<Submission> s;
    for (int i = 0; i < 5; ++i) s.push_back(Nth(i, 0));
    s[2].deltas.setConstant(1e30f);  // Finite, but its loss overflows: rejected.
    return s;
  };
  const auto results = SubmitTogether(*batched, *gate, subs());
  std::vector<Submission> one_by_one = subs();
  for (int i = 0; i < 5; ++i) {
    auto expected = SubmitAndWait(*reference, std::move(one_by_one[i]));
    EXPECT_EQ(results[i].status().code(), expected.status().code()) << i;
  }
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  // The others applied exactly as one by one (the fallback is that path).
  gate->Open();
  auto next = [](Trainer& t) { return SubmitAndWait(t, Nth(9, 0)); };
  EXPECT_EQ(next(*batched)->surrogate_loss, next(*reference)->surrogate_loss);
}

}  // namespace
}  // namespace deltaserve::server
