// Shared input normalisation in the Trainer (TrainerOptions::normalization,
// docs/model.md "Input normalisation"): statistics merged once per step from
// the applied submissions' rows only, every forward and gradient at the
// current version's statistics, imports that replace or keep them.
#include <cmath>
#include <memory>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using testing::CoreMatrix;
using ::testing::HasSubstr;
using testing::SubmitAndWait;

constexpr absl::Duration kWait = absl::Seconds(30);

// y = W·x + b with W [2 × 2], inputs normalised (clip 3 so clipping shows).
TrainerOptions NormalizedOptions(uint32_t samples_per_step = 1) {
  return testing::TrainerOptionsBuilder("norm", /*input_dim=*/2)
      .Layers({{2, model::Activation::kIdentity}})
      .Seed(7)
      .Sgd(0.1f)
      .Surrogate(model::SurrogateConfig::Mode::kCurrent)
      .SamplesPerStep(samples_per_step)
      .MaxStaleness(1)
      .Normalize(/*clip=*/3.0f, /*epsilon=*/1e-8f)
      .Build();
}

Submission Rows(int n, std::vector<float> x, std::vector<float> delta, uint64_t version) {
  Submission s;
  s.inputs = CoreMatrix(n, 2, x);
  s.deltas = CoreMatrix(n, 2, delta);
  s.version = version;
  return s;
}

std::unique_ptr<Trainer> MakeTrainer(TrainerOptions options) {
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(std::move(options));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return *std::move(trainer);
}

// The float64 reference: statistics start at (0, 1, 1e-4); each step merges
// the population moments of all its rows (stacked, two passes in long
// double) by Chan's update.
struct Reference {
  std::vector<double> mean = {0, 0};
  std::vector<double> var = {1, 1};
  double count = 1e-4;

  void MergeStep(const std::vector<std::vector<float>>& rows) {
    const double b = static_cast<double>(rows.size());
    for (size_t j = 0; j < 2; ++j) {
      long double sum = 0;
      for (const auto& r : rows) sum += r[j];
      const double batch_mean = static_cast<double>(sum / rows.size());
      long double sq = 0;
      for (const auto& r : rows)
        sq += (r[j] - static_cast<long double>(batch_mean)) *
              (r[j] - static_cast<long double>(batch_mean));
      const double batch_var = static_cast<double>(sq / rows.size());
      const double delta = batch_mean - mean[j];
      const double total = count + b;
      mean[j] += delta * b / total;
      var[j] = (var[j] * count + batch_var * b + delta * delta * count * b / total) / total;
    }
    count += b;
  }
};

void ExpectNear(const model::RunningMeanStd& got, const Reference& want) {
  ASSERT_EQ(got.input_dim(), 2);
  for (int j = 0; j < 2; ++j) {
    EXPECT_NEAR(got.mean()[j], want.mean[j], 1e-12 * (1 + std::abs(want.mean[j]))) << j;
    EXPECT_NEAR(got.var()[j], want.var[j], 1e-12 * (1 + std::abs(want.var[j]))) << j;
  }
  EXPECT_EQ(got.count(), want.count);
}

void ExpectSame(const model::RunningMeanStd& a, const model::RunningMeanStd& b) {
  EXPECT_EQ(a.mean(), b.mean());
  EXPECT_EQ(a.var(), b.var());
  EXPECT_EQ(a.count(), b.count());
}

TEST(TrainerNormalization, NoneKeepsNoStatistics) {
  TrainerOptions options = NormalizedOptions();
  options.normalization = model::InputNormalizationConfig{};
  auto trainer = MakeTrainer(options);
  EXPECT_EQ(trainer->snapshot()->input_statistics, nullptr);
  ASSERT_TRUE(SubmitAndWait(*trainer, Rows(1, {1, 2}, {1, 1}, 0)).ok());
  EXPECT_EQ(trainer->snapshot()->input_statistics, nullptr);
}

TEST(TrainerNormalization, InvalidConfigIsRefusedNamingTheField) {
  TrainerOptions options = NormalizedOptions();
  options.normalization.clip = -1;
  absl::Status status = Trainer::Create(options).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("input_normalization.clip"));
  options = NormalizedOptions();
  options.normalization.epsilon = std::nanf("");
  status = Trainer::Create(options).status();
  EXPECT_THAT(status.message(), HasSubstr("input_normalization.epsilon"));
}

TEST(TrainerNormalization, StatisticsAfterStepsEqualAFloat64Reference) {
  auto trainer = MakeTrainer(NormalizedOptions(/*samples_per_step=*/4));
  const std::shared_ptr<const model::RunningMeanStd> initial =
      trainer->snapshot()->input_statistics;
  ASSERT_NE(initial, nullptr);
  EXPECT_EQ(initial->mean(), (std::vector<double>{0, 0}));
  EXPECT_EQ(initial->var(), (std::vector<double>{1, 1}));
  EXPECT_EQ(initial->count(), 1e-4);
  Reference reference;
  std::vector<std::vector<float>> step_rows;
  float t = 0.3f;
  for (int i = 0; i < 12; ++i) {
    const int n = 1 + i % 3;
    std::vector<float> x;
    for (int r = 0; r < n; ++r) {
      const std::vector<float> row = {100.0f + 7.0f * std::sin(t), -3.0f + 0.01f * t * t};
      t += 0.7f;
      x.insert(x.end(), row.begin(), row.end());
      step_rows.push_back(row);
    }
    const uint64_t version = trainer->snapshot()->version;
    absl::StatusOr<SubmitResult> r =
        SubmitAndWait(*trainer, Rows(n, x, std::vector<float>(2 * n, 0.01f), version));
    ASSERT_TRUE(r.ok()) << r.status();
    if (r->stepped) {
      reference.MergeStep(step_rows);
      step_rows.clear();
      ExpectNear(*trainer->snapshot()->input_statistics, reference);
    } else {
      // Between steps the published statistics do not move.
      ExpectNear(*trainer->snapshot()->input_statistics, reference);
    }
  }
  EXPECT_GE(trainer->snapshot()->version, 4u);
}

// Gradient and Forward both see normalize(X) at the current version's
// statistics: one SGD step on a linear model moves W by −lr·δ·zᵀ with z the
// clipped, normalised x (initial statistics: z = clip(x/sqrt(1+ε), ±3)).
TEST(TrainerNormalization, GradientUsesTheNormalizedClippedInputs) {
  auto trainer = MakeTrainer(NormalizedOptions(/*samples_per_step=*/1));
  const std::vector<float> p0 = trainer->snapshot()->parameters;
  ASSERT_TRUE(SubmitAndWait(*trainer, Rows(1, {20, 0.5f}, {1, -2}, 0)).ok());
  const std::vector<float>& p1 = trainer->snapshot()->parameters;
  const float z0 = 3.0f;  // 20 clipped.
  const float z1 = static_cast<float>(0.5 / std::sqrt(1.0 + 1e-8));
  const std::vector<float> g = {1 * z0, 1 * z1, -2 * z0, -2 * z1, 1, -2};
  for (int i = 0; i < 6; ++i) EXPECT_NEAR(p1[i], p0[i] - 0.1f * g[i], 1e-6) << i;
}

TEST(TrainerNormalization, ForwardIsTheMlpOfTheNormalizedInputsAtTheVersionsStatistics) {
  TrainerOptions options = NormalizedOptions(/*samples_per_step=*/2);
  options.mlp.layers = {{5, model::Activation::kTanh}, {2, model::Activation::kIdentity}};
  auto trainer = MakeTrainer(options);
  for (int i = 0; i < 4; ++i) {
    const uint64_t version = trainer->snapshot()->version;
    ASSERT_TRUE(SubmitAndWait(*trainer, Rows(2, {5.0f + i, -1, 6.0f, 2.0f * i},
                                             {0.1f, 0.2f, -0.3f, 0.1f}, version))
                    .ok());
  }
  std::shared_ptr<const Snapshot> snap = trainer->snapshot();
  ASSERT_EQ(snap->version, 4u);
  ASSERT_NE(snap->input_statistics->mean()[0], 0.0);
  // One row far out, so that clipping shows.
  const model::Matrix x = CoreMatrix(3, 2, {0.5f, -1.0f, 2.0f, 0.25f, 1e6f, -1e6f});
  absl::StatusOr<ForwardResult> result = trainer->Forward(x);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->version, 4u);
  model::Matrix z;
  ASSERT_TRUE(snap->input_statistics->Normalize(x, &z).ok());
  EXPECT_EQ(z(2, 0), 3.0f);
  EXPECT_EQ(z(2, 1), -3.0f);
  absl::StatusOr<model::Matrix> expected = trainer->mlp().Forward(snap->parameters, z);
  ASSERT_TRUE(expected.ok());
  EXPECT_TRUE(result->outputs.isApprox(*expected, 1e-6f)) << result->outputs << "\nvs\n"
                                                          << *expected;
  // Not the unnormalised model.
  absl::StatusOr<model::Matrix> raw = trainer->mlp().Forward(snap->parameters, x);
  ASSERT_TRUE(raw.ok());
  EXPECT_FALSE(result->outputs.isApprox(*raw, 1e-3f));
}

// Rejected submissions (too stale, an overflowing gradient) leave the
// statistics and the pending moments exactly as they were: the next steps
// match a trainer that never saw them, bit for bit.
TEST(TrainerNormalization, RejectedSubmissionsLeaveStatisticsUnchanged) {
  auto trainer = MakeTrainer(NormalizedOptions(/*samples_per_step=*/3));
  auto reference = MakeTrainer(NormalizedOptions(/*samples_per_step=*/3));
  for (Trainer* t : {trainer.get(), reference.get()}) {
    for (uint64_t v = 0; v < 2; ++v) {
      for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(SubmitAndWait(*t, Rows(1, {1.0f * i, 2.0f + v}, {0.1f, 0.1f}, v)).ok());
      }
    }
    // Half a step pending.
    ASSERT_TRUE(SubmitAndWait(*t, Rows(1, {3, 4}, {0, 0}, 2)).ok());
  }
  ASSERT_EQ(trainer->snapshot()->version, 2u);
  // Version 0 is too stale (max_staleness 1); the second overflows.
  EXPECT_EQ(SubmitAndWait(*trainer, Rows(1, {50, 50}, {1, 1}, 0)).status().code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(SubmitAndWait(*trainer, Rows(1, {70, -70}, {1e20f, 1e20f}, 2)).status().code(),
            absl::StatusCode::kInvalidArgument);
  ExpectSame(*trainer->snapshot()->input_statistics, *reference->snapshot()->input_statistics);
  for (Trainer* t : {trainer.get(), reference.get()}) {
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(SubmitAndWait(*t, Rows(1, {-1.0f * i, 0.5f}, {0.1f, 0}, 2)).ok());
    }
  }
  ASSERT_EQ(trainer->snapshot()->version, 3u);
  ExpectSame(*trainer->snapshot()->input_statistics, *reference->snapshot()->input_statistics);
  EXPECT_EQ(trainer->snapshot()->parameters, reference->snapshot()->parameters);
}

// Submissions queued together are applied as one group; a group with a
// member that fails (overflowing gradient) is applied one by one, and the
// failing member's rows never reach the statistics. The statistics equal
// those of a trainer that got the good members one at a time, bit for bit
// (moments are added per member either way).
TEST(TrainerNormalization, AGroupThatFallsBackToOneByOneCountsOnlyTheAppliedRows) {
  auto gate = std::make_shared<testing::HeldGate>();
  TrainerOptions options = NormalizedOptions(/*samples_per_step=*/5);
  options.gate = gate;
  gate->Close();
  auto trainer = MakeTrainer(options);
  auto reference = MakeTrainer(NormalizedOptions(/*samples_per_step=*/5));
  const std::vector<Submission> good = {Rows(2, {1, 2, 3, 4}, {0.1f, 0, 0, 0.1f}, 0),
                                        Rows(1, {-5, 6}, {0.2f, 0.2f}, 0),
                                        Rows(2, {7, -8, 9, 10}, {0, 0.3f, 0.1f, 0}, 0)};
  std::vector<std::unique_ptr<absl::Notification>> done;
  std::vector<absl::StatusOr<SubmitResult>> results(4, absl::UnknownError("no answer"));
  auto queue = [&](Submission s, size_t i) {
    done.push_back(std::make_unique<absl::Notification>());
    absl::Notification* n = done.back().get();
    ASSERT_TRUE(trainer
                    ->Submit(std::move(s),
                             [&results, i, n](absl::StatusOr<SubmitResult> r) {
                               results[i] = std::move(r);
                               n->Notify();
                             })
                    .ok());
  };
  queue(good[0], 0);
  queue(Rows(1, {100, 100}, {1e20f, 1e20f}, 0), 1);
  queue(good[1], 2);
  queue(good[2], 3);
  gate->Open();
  for (auto& n : done) ASSERT_TRUE(n->WaitForNotificationWithTimeout(kWait));
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(results[2].ok());
  ASSERT_TRUE(results[3].ok());
  EXPECT_TRUE(results[3]->stepped);
  for (const Submission& s : good) ASSERT_TRUE(SubmitAndWait(*reference, s).ok());
  ASSERT_EQ(trainer->snapshot()->version, 1u);
  ASSERT_EQ(reference->snapshot()->version, 1u);
  ExpectSame(*trainer->snapshot()->input_statistics, *reference->snapshot()->input_statistics);
  Reference want;
  want.MergeStep({{1, 2}, {3, 4}, {-5, 6}, {7, -8}, {9, 10}});
  ExpectNear(*trainer->snapshot()->input_statistics, want);
}

// The same rows applied as one group (queued together) or one by one give
// bit-identical statistics.
TEST(TrainerNormalization, GroupedAndOneByOneGiveTheSameStatistics) {
  auto gate = std::make_shared<testing::HeldGate>();
  TrainerOptions options = NormalizedOptions(/*samples_per_step=*/6);
  options.gate = gate;
  gate->Close();
  auto grouped = MakeTrainer(options);
  auto single = MakeTrainer(NormalizedOptions(/*samples_per_step=*/6));
  std::vector<Submission> subs;
  for (int i = 0; i < 6; ++i) {
    subs.push_back(Rows(1, {0.3f * i * i, 1.0f - i}, {0.1f, -0.1f}, 0));
  }
  std::vector<std::unique_ptr<absl::Notification>> done;
  for (const Submission& s : subs) {
    done.push_back(std::make_unique<absl::Notification>());
    absl::Notification* n = done.back().get();
    ASSERT_TRUE(grouped
                    ->Submit(s,
                             [n](absl::StatusOr<SubmitResult> r) {
                               EXPECT_TRUE(r.ok()) << r.status();
                               n->Notify();
                             })
                    .ok());
  }
  gate->Open();
  for (auto& n : done) ASSERT_TRUE(n->WaitForNotificationWithTimeout(kWait));
  for (const Submission& s : subs) ASSERT_TRUE(SubmitAndWait(*single, s).ok());
  ASSERT_EQ(grouped->snapshot()->version, 1u);
  ExpectSame(*grouped->snapshot()->input_statistics, *single->snapshot()->input_statistics);
}

absl::StatusOr<SubmitResult> Import(Trainer& trainer, std::vector<float> parameters,
                                    std::shared_ptr<const model::RunningMeanStd> statistics) {
  return testing::AwaitAnswer(
      [&](Trainer::SubmitCallback done) {
        return trainer.ImportParameters(std::move(parameters), std::move(statistics),
                                        std::move(done));
      },
      kWait);
}

TEST(TrainerNormalization, AnImportReplacesTheStatisticsOrKeepsThem) {
  TrainerOptions options = NormalizedOptions(/*samples_per_step=*/2);
  auto trainer = MakeTrainer(options);
  ASSERT_TRUE(SubmitAndWait(*trainer, Rows(2, {1, 2, 3, 4}, {0, 0, 0, 0}, 0)).ok());
  // Half a step: its moments are dropped with G by the import.
  ASSERT_TRUE(SubmitAndWait(*trainer, Rows(1, {50, 50}, {0, 0}, 1)).ok());
  const std::shared_ptr<const model::RunningMeanStd> before = trainer->snapshot()->input_statistics;
  const std::vector<float> params = {1, 2, 3, 4, 5, 6};
  ASSERT_TRUE(Import(*trainer, params, nullptr).ok());
  ExpectSame(*trainer->snapshot()->input_statistics, *before);

  absl::StatusOr<model::RunningMeanStd> imported =
      model::RunningMeanStd::FromStatistics(options.normalization, {5, -5}, {4, 0.25}, 42);
  ASSERT_TRUE(imported.ok());
  ASSERT_TRUE(
      Import(*trainer, params, std::make_shared<const model::RunningMeanStd>(*imported)).ok());
  ExpectSame(*trainer->snapshot()->input_statistics, *imported);
  EXPECT_EQ(trainer->snapshot()->version, 3u);

  // The next step merges only rows submitted after the import.
  ASSERT_TRUE(SubmitAndWait(*trainer, Rows(2, {1, 1, 3, 3}, {0, 0, 0, 0}, 3)).ok());
  absl::StatusOr<model::RunningMeanStd> want = *imported;
  ASSERT_TRUE(want->Merge(std::vector<double>{2, 2}, std::vector<double>{1, 1}, 2).ok());
  ExpectSame(*trainer->snapshot()->input_statistics, *want);

  // Statistics of another width, or another clip: refused, nothing changes.
  absl::StatusOr<model::RunningMeanStd> wide =
      model::RunningMeanStd::Create(3, options.normalization);
  ASSERT_TRUE(wide.ok());
  EXPECT_EQ(Import(*trainer, params, std::make_shared<const model::RunningMeanStd>(*wide))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  model::InputNormalizationConfig other = options.normalization;
  other.clip = 4;
  absl::StatusOr<model::RunningMeanStd> clipped = model::RunningMeanStd::Create(2, other);
  ASSERT_TRUE(clipped.ok());
  EXPECT_EQ(Import(*trainer, params, std::make_shared<const model::RunningMeanStd>(*clipped))
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(trainer->snapshot()->version, 4u);
}

TEST(TrainerNormalization, StatisticsForAModelWithoutNormalisationAreRefused) {
  TrainerOptions options = NormalizedOptions();
  const model::InputNormalizationConfig config = options.normalization;
  options.normalization = model::InputNormalizationConfig{};
  auto trainer = MakeTrainer(options);
  absl::StatusOr<model::RunningMeanStd> statistics = model::RunningMeanStd::Create(2, config);
  ASSERT_TRUE(statistics.ok());
  absl::StatusOr<SubmitResult> r = Import(
      *trainer, {1, 2, 3, 4, 5, 6}, std::make_shared<const model::RunningMeanStd>(*statistics));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("input_statistics"));
  EXPECT_EQ(trainer->snapshot()->version, 0u);
}

}  // namespace
}  // namespace deltaserve::server
