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
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/core/trainer.h"
#include "tests/persist/faulty_file_system.h"
#include "tests/persist/temp_dir.h"

namespace deltaserve::server {
namespace {

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
TrainerOptions Options(const std::string& dir, persist::FileSystem* fs = nullptr) {
  TrainerOptions o;
  o.name = "m";
  o.mlp.input_dim = 4;
  o.mlp.layers = {{8, model::Activation::kTanh}, {2, model::Activation::kIdentity}};
  o.mlp.seed = 3;
  o.optimizer.kind = model::OptimizerConfig::Kind::kAdam;
  o.optimizer.learning_rate = 0.01f;
  o.optimizer.beta1 = 0.9f;
  o.optimizer.beta2 = 0.999f;
  o.optimizer.epsilon = 1e-8f;
  o.samples_per_step = 2;
  o.staleness_scaled_lr = true;
  o.persistence.dir = dir;
  o.persistence.fs = fs;
  o.persistence.checkpoint_every_steps = 1000000;        // Only the checkpoints a test asks for.
  deltaserve::v1::ModelSpec& spec = o.persistence.spec;  // What the server would store.
  spec.set_name("m");
  spec.set_input_dim(4);
  for (const model::LayerSpec& layer : o.mlp.layers) {
    deltaserve::v1::LayerSpec* l = spec.add_layers();
    l->set_units(static_cast<uint32_t>(layer.units));
    l->set_activation(layer.activation == model::Activation::kTanh
                          ? deltaserve::v1::ACTIVATION_TANH
                          : deltaserve::v1::ACTIVATION_IDENTITY);
  }
  spec.mutable_optimizer()->set_kind(deltaserve::v1::OptimizerConfig::ADAM);
  return o;
}

std::unique_ptr<Trainer> Make(TrainerOptions options) {
  auto trainer = Trainer::Create(std::move(options));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? *std::move(trainer) : nullptr;
}

absl::StatusOr<SubmitResult> SubmitAndWait(Trainer& trainer, Submission s) {
  absl::Notification done;
  absl::StatusOr<SubmitResult> result;
  absl::Status queued = trainer.Submit(std::move(s), [&](absl::StatusOr<SubmitResult> r) {
    result = std::move(r);
    done.Notify();
  });
  if (!queued.ok()) return queued;
  EXPECT_TRUE(done.WaitForNotificationWithTimeout(kWait));
  return result;
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
  testing::TempDir tmp_;
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

TEST_F(TrainerPersistenceTest, AnswerWaitsForTheFsync) {
  testing::FaultyFileSystem fs;
  auto trainer = Make(Options(Dir("m"), &fs));
  const int before = fs.syncs;
  ASSERT_TRUE(SubmitAndWait(*trainer, Nth(0, 0)).ok());
  EXPECT_GT(fs.syncs, before);
}

// What a power loss leaves: each journal segment cut to what its last fsync
// covered (the page cache's unsynced tail is gone).
std::string PowerLossCopy(testing::FaultyFileSystem& fs, const std::string& dir,
                          const std::string& to) {
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
  testing::FaultyFileSystem fs;
  auto live = Make(Options(Dir("m"), &fs));
  Train(*live, 0, 9);  // Each acknowledged: COMMIT answers after the fsync.
  auto recovered = Make(Options(PowerLossCopy(fs, Dir("m"), Dir("power"))));
  ExpectSameState(*live, *recovered);
}

TEST_F(TrainerPersistenceTest, DurabilityNoneCanLoseAcknowledgedWorkOnPowerLoss) {
  testing::FaultyFileSystem fs;
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
  testing::FaultyFileSystem fs;
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
  testing::FaultyFileSystem fs;
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
  TrainerOptions wider = Options(Dir("m"));
  wider.mlp.layers[0].units = 16;
  wider.persistence.spec.mutable_layers(0)->set_units(16);
  auto refused = Trainer::Create(std::move(wider));
  ASSERT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("4 → 8 tanh → 2 identity"));
  EXPECT_THAT(refused.status().message(), HasSubstr("4 → 16 tanh → 2 identity"));
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

}  // namespace
}  // namespace deltaserve::server
