// Gradients with respect to the inputs (docs/model.md, "Input gradients"):
// the read-only Trainer::InputGradient (torch goldens, finite differences,
// nothing changes, refusals) and SubmitDelta's input_gradient (the VJP of the
// surrogate's g: objective sign, delta_scale, reduction and mode included,
// staleness scale not; groups, duplicates, replay), then the same through a
// real server on 127.0.0.1:0 with the C++ TrainerClient and Session.
#include <cmath>
#include <cstring>
#include <filesystem>
#include <future>
#include <memory>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/model/surrogate.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/server.h"
#include "deltaserve/tests/client/test_server.h"
#include "deltaserve/tests/model/golden_file.h"
#include "deltaserve/tests/persist/temp_dir.h"
#include "deltaserve/tests/server/held_gate.h"
#include "deltaserve/tests/server/submit_and_wait.h"
#include "deltaserve/tests/server/test_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace deltaserve::server {
namespace {

using ::testing::HasSubstr;
using testing::ImportAndWait;
using testing::SubmitAndWait;
using Mode = model::SurrogateConfig::Mode;
using Reduction = model::SurrogateConfig::Reduction;

constexpr float kTolerance = 1e-5f;

void ExpectNear(const model::Matrix& actual, const model::Matrix& expected, const std::string& what,
                float tolerance = kTolerance) {
  ASSERT_EQ(actual.rows(), expected.rows()) << what;
  ASSERT_EQ(actual.cols(), expected.cols()) << what;
  for (Eigen::Index i = 0; i < actual.size(); ++i) {
    const float scale = std::max(1.0f, std::abs(expected.data()[i]));
    EXPECT_NEAR(actual.data()[i], expected.data()[i], tolerance * scale)
        << what << " [" << i << "]";
  }
}

bool BitIdentical(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// The golden network of tests/model/golden/mlp_deep.txt (torch autograd).
struct Golden {
  model::MlpSpec spec;
  std::vector<float> params;
  model::Matrix x, y, delta, dx;
};

model::Activation ParseActivation(const std::string& name) {
  if (name == "tanh") return model::Activation::kTanh;
  if (name == "relu") return model::Activation::kRelu;
  if (name == "sigmoid") return model::Activation::kSigmoid;
  EXPECT_EQ(name, "identity");
  return model::Activation::kIdentity;
}

Golden ReadDeepGolden() {
  auto cases = model::testing::ReadGoldenFile(std::string(DELTASERVE_GOLDEN_DIR) + "/mlp_deep.txt");
  EXPECT_TRUE(cases.ok()) << cases.status();
  Golden g;
  if (!cases.ok() || cases->empty()) return g;
  const model::testing::GoldenCase& c = cases->front();
  g.spec.input_dim = static_cast<int>(c.Scalar("input_dim").value());
  const std::vector<std::string> tokens = c.Tokens("layers").value();
  for (size_t i = 0; i + 1 < tokens.size(); i += 2) {
    g.spec.layers.push_back({std::stoi(tokens[i]), ParseActivation(tokens[i + 1])});
  }
  g.params = c.Vector("params").value();
  g.x = c.MatrixRecord("x").value();
  g.y = c.MatrixRecord("y").value();
  g.delta = c.MatrixRecord("delta").value();
  g.dx = c.MatrixRecord("dx").value();
  return g;
}

std::unique_ptr<Trainer> MakeTrainer(TrainerOptions options) {
  absl::StatusOr<std::unique_ptr<Trainer>> trainer = Trainer::Create(std::move(options));
  EXPECT_TRUE(trainer.ok()) << trainer.status();
  return trainer.ok() ? *std::move(trainer) : nullptr;
}

// A trainer of the golden network with the golden parameters (version 1).
std::unique_ptr<Trainer> GoldenTrainer(const Golden& g, TrainerOptions options) {
  options.mlp = g.spec;
  std::unique_ptr<Trainer> trainer = MakeTrainer(std::move(options));
  if (trainer == nullptr) return nullptr;
  EXPECT_TRUE(ImportAndWait(*trainer, g.params).ok());
  return trainer;
}

TrainerOptions Options() {
  // GoldenTrainer replaces the network with the golden one.
  return testing::TrainerOptionsBuilder("ig", /*input_dim=*/4)
      .Layers({{3, model::Activation::kTanh}, {1, model::Activation::kIdentity}})
      .Sgd(0.1f)
      .SamplesPerStep(1000)  // No step: every submission sees the same parameters.
      .MaxStaleness(1000)
      .Build();
}

// The input gradient SubmitDelta should return: the VJP of the surrogate's
// ∂l_s/∂y at `params` (computed here independently of the trainer).
model::Matrix ExpectedSubmitInputGradient(const Trainer& trainer, const std::vector<float>& params,
                                          const Submission& s) {
  model::Mlp::Workspace ws;
  EXPECT_TRUE(trainer.mlp().Forward(params, s.inputs, ws).ok());
  model::Matrix g;
  EXPECT_TRUE(
      model::Surrogate(trainer.options().surrogate, s.objective, ws.output(), s.acted, s.deltas, &g)
          .ok());
  model::Matrix dx;
  EXPECT_TRUE(trainer.mlp().InputGradient(params, s.inputs, ws, g, &dx).ok());
  return dx;
}

Submission GoldenSubmission(const Golden& g, bool want) {
  Submission s;
  s.inputs = g.x;
  s.deltas = g.delta;
  s.version = 1;
  s.return_input_gradient = want;
  return s;
}

TEST(TrainerInputGradient, MatchesTorchAutogradAndChangesNothing) {
  const Golden g = ReadDeepGolden();
  std::unique_ptr<Trainer> trainer = GoldenTrainer(g, Options());
  ASSERT_NE(trainer, nullptr);
  const std::shared_ptr<const Snapshot> before = trainer->snapshot();
  absl::StatusOr<InputGradientResult> result = trainer->InputGradient(g.x, g.delta);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectNear(result->input_gradient, g.dx, "input gradient vs torch");
  ExpectNear(result->outputs, g.y, "outputs vs torch");
  EXPECT_EQ(result->version, 1u);
  // Read-only: same snapshot, same parameters, same version; again the same bits.
  EXPECT_EQ(trainer->snapshot(), before);
  EXPECT_TRUE(BitIdentical(trainer->snapshot()->parameters, g.params));
  absl::StatusOr<InputGradientResult> again = trainer->InputGradient(g.x, g.delta);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->input_gradient, result->input_gradient);
}

// y = f(x) in double from float parameters (the golden layout), for finite
// differences whose own rounding is far below the tolerance.
std::vector<double> ForwardInDouble(const model::MlpSpec& spec, const std::vector<float>& p,
                                    std::vector<double> a) {
  size_t offset = 0;
  int fan_in = spec.input_dim;
  for (const model::LayerSpec& layer : spec.layers) {
    std::vector<double> z(layer.units);
    const size_t bias = offset + static_cast<size_t>(layer.units) * fan_in;
    for (int u = 0; u < layer.units; ++u) {
      double sum = p[bias + u];
      for (int k = 0; k < fan_in; ++k) sum += double{p[offset + u * fan_in + k]} * a[k];
      switch (layer.activation) {
        case model::Activation::kTanh:
          sum = std::tanh(sum);
          break;
        case model::Activation::kRelu:
          sum = sum > 0 ? sum : 0;
          break;
        case model::Activation::kSigmoid:
          sum = 1 / (1 + std::exp(-sum));
          break;
        default:
          break;
      }
      z[u] = sum;
    }
    offset = bias + layer.units;
    fan_in = layer.units;
    a = std::move(z);
  }
  return a;
}

// tests/model/golden/input_gradient_normalized.txt: y = mlp(clip((x −
// mean)/sqrt(var + ε), −c, c)) and ∂(y·δ)/∂x by torch's autograd, some inputs
// clipped. The trainer holds those parameters and statistics (an import),
// so the rpc and SubmitDelta must chain through the normalisation.
TEST(TrainerInputGradient, ThroughTheNormalizationMatchesTorchAutograd) {
  auto cases = model::testing::ReadGoldenFile(std::string(DELTASERVE_GOLDEN_DIR) +
                                              "/input_gradient_normalized.txt");
  ASSERT_TRUE(cases.ok()) << cases.status();
  ASSERT_EQ(cases->size(), 1u);
  const model::testing::GoldenCase& c = cases->front();
  auto doubles = [&c](const std::string& key) {
    const std::vector<std::string> tokens = c.Tokens(key).value();
    std::vector<double> values;
    for (size_t i = 1; i < tokens.size(); ++i) values.push_back(std::stod(tokens[i]));
    EXPECT_EQ(values.size(), std::stoul(tokens.at(0))) << key;
    return values;
  };
  const float clip = static_cast<float>(c.Scalar("clip").value());
  const float epsilon = static_cast<float>(c.Scalar("epsilon").value());
  TrainerOptions options = testing::TrainerOptionsBuilder("ig", /*input_dim=*/4)
                               .Sgd(0.1f)
                               .SamplesPerStep(1000)  // No step: one version throughout.
                               .Normalize(clip, epsilon)
                               .Build();
  options.mlp = model::MlpSpec{};
  options.mlp.input_dim = static_cast<int>(c.Scalar("input_dim").value());
  const std::vector<std::string> layers = c.Tokens("layers").value();
  for (size_t i = 0; i + 1 < layers.size(); i += 2) {
    options.mlp.layers.push_back({std::stoi(layers[i]), ParseActivation(layers[i + 1])});
  }
  std::unique_ptr<Trainer> trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  auto statistics =
      model::RunningMeanStd::FromStatistics(options.normalization, doubles("mean"), doubles("var"),
                                            /*count=*/1.0);
  ASSERT_TRUE(statistics.ok()) << statistics.status();
  ASSERT_TRUE(testing::AwaitAnswer(
                  [&](Trainer::SubmitCallback done) {
                    return trainer->ImportParameters(
                        c.Vector("params").value(),
                        std::make_shared<const model::RunningMeanStd>(*statistics),
                        std::move(done));
                  },
                  absl::Seconds(30))
                  .ok());
  const model::Matrix x = c.MatrixRecord("x").value();
  const model::Matrix delta = c.MatrixRecord("delta").value();
  const model::Matrix dx = c.MatrixRecord("dx").value();

  absl::StatusOr<InputGradientResult> rpc = trainer->InputGradient(x, delta);
  ASSERT_TRUE(rpc.ok()) << rpc.status();
  ExpectNear(rpc->outputs, c.MatrixRecord("y").value(), "outputs of mlp(normalize(x))");
  ExpectNear(rpc->input_gradient, dx, "InputGradient through the normalisation vs torch");
  int clipped = 0;
  for (Eigen::Index i = 0; i < dx.size(); ++i) {
    if (dx.data()[i] != 0.0f) continue;
    ++clipped;
    EXPECT_EQ(rpc->input_gradient.data()[i], 0.0f)
        << "a clipped input passes no gradient [" << i << "]";
  }
  EXPECT_GT(clipped, 0) << "the golden case must clip some inputs";

  // CURRENT, SUM, MINIMIZE, delta_scale 1: g = δ, so SubmitDelta's input
  // gradient is torch's too, at the statistics before this submission's
  // rows are merged.
  Submission s;
  s.inputs = x;
  s.deltas = delta;
  s.version = trainer->snapshot()->version;
  s.return_input_gradient = true;
  absl::StatusOr<SubmitResult> submitted = SubmitAndWait(*trainer, s);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ExpectNear(submitted->input_gradient, dx,
             "SubmitDelta's input gradient through the normalisation");
}

TEST(TrainerInputGradient, MatchesCentralFiniteDifferences) {
  const Golden g = ReadDeepGolden();
  std::unique_ptr<Trainer> trainer = GoldenTrainer(g, Options());
  ASSERT_NE(trainer, nullptr);
  absl::StatusOr<InputGradientResult> result = trainer->InputGradient(g.x, g.delta);
  ASSERT_TRUE(result.ok()) << result.status();
  const double h = 1e-5;
  for (Eigen::Index r = 0; r < g.x.rows(); ++r) {
    for (Eigen::Index c = 0; c < g.x.cols(); ++c) {
      std::vector<double> plus(g.x.cols()), minus(g.x.cols());
      for (Eigen::Index k = 0; k < g.x.cols(); ++k) plus[k] = minus[k] = g.x(r, k);
      plus[c] += h;
      minus[c] -= h;
      const std::vector<double> yp = ForwardInDouble(g.spec, g.params, plus);
      const std::vector<double> ym = ForwardInDouble(g.spec, g.params, minus);
      double fd = 0;
      for (size_t o = 0; o < yp.size(); ++o)
        fd += double{g.delta(r, o)} * (yp[o] - ym[o]) / (2 * h);
      EXPECT_NEAR(result->input_gradient(r, c), fd, kTolerance) << "row " << r << " col " << c;
    }
  }
}

TEST(TrainerInputGradient, RefusesBadRequestsWithTheUsualCodes) {
  TrainerOptions options = Options();
  options.max_request_rows = 3;
  std::unique_ptr<Trainer> trainer = MakeTrainer(options);
  ASSERT_NE(trainer, nullptr);
  const std::vector<float> before = trainer->snapshot()->parameters;
  const model::Matrix x = model::Matrix::Ones(2, 4);
  const model::Matrix d = model::Matrix::Ones(2, 1);

  absl::Status s = trainer->InputGradient(model::Matrix::Ones(2, 3), d).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("inputs: expected 4 columns"));
  s = trainer->InputGradient(x, model::Matrix::Ones(2, 2)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("deltas: expected 1 columns"));
  s = trainer->InputGradient(x, model::Matrix::Ones(1, 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("deltas: expected 2 rows"));
  model::Matrix nan = d;
  nan(1, 0) = std::nanf("");
  s = trainer->InputGradient(x, nan).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("deltas"));
  model::Matrix inf = x;
  inf(0, 2) = INFINITY;
  EXPECT_EQ(trainer->InputGradient(inf, d).status().code(), absl::StatusCode::kInvalidArgument);
  s = trainer->InputGradient(model::Matrix(0, 4), model::Matrix(0, 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("at least 1 row"));
  s = trainer->InputGradient(model::Matrix::Ones(4, 4), model::Matrix::Ones(4, 1)).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(s.message(), HasSubstr("at most 3 rows"));
  EXPECT_TRUE(BitIdentical(trainer->snapshot()->parameters, before));
  EXPECT_EQ(trainer->snapshot()->version, 0u);
}

TEST(TrainerInputGradient, AnOverflowingProductIsInvalidArgument) {
  std::unique_ptr<Trainer> trainer = MakeTrainer(Options());
  ASSERT_NE(trainer, nullptr);
  // Weights of 1e30: finite inputs and deltas, but δ·W overflows float.
  std::vector<float> huge(trainer->mlp().parameter_count(), 1e30f);
  ASSERT_TRUE(ImportAndWait(*trainer, huge).ok());
  const absl::Status s =
      trainer->InputGradient(model::Matrix::Zero(1, 4), model::Matrix::Constant(1, 1, 1e30f))
          .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("input_gradient"));
  EXPECT_EQ(trainer->snapshot()->version, 1u);
}

struct SurrogateCase {
  Mode mode;
  Reduction reduction;
  float delta_scale;
  model::Objective objective;
};

class SubmitInputGradient : public ::testing::TestWithParam<SurrogateCase> {};

// SubmitDelta's input_gradient is the VJP of ∂l_s/∂y for every surrogate
// setting; in CURRENT mode that is (±ε, ÷n·m for MEAN) times the plain VJP.
TEST_P(SubmitInputGradient, IsTheVjpOfTheSurrogatesGradient) {
  const SurrogateCase sc = GetParam();
  const Golden g = ReadDeepGolden();
  TrainerOptions options = Options();
  options.surrogate = {sc.mode, sc.delta_scale, sc.reduction};
  std::unique_ptr<Trainer> trainer = GoldenTrainer(g, options);
  ASSERT_NE(trainer, nullptr);
  Submission s = GoldenSubmission(g, true);
  s.objective = sc.objective;
  s.acted = g.y + model::Matrix::Constant(g.y.rows(), g.y.cols(), 0.25f);  // ỹ ≠ y.
  const model::Matrix expected = ExpectedSubmitInputGradient(*trainer, g.params, s);
  absl::StatusOr<SubmitResult> result = SubmitAndWait(*trainer, s);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectNear(result->input_gradient, expected, "input gradient vs the surrogate's VJP", 1e-6f);
  if (sc.mode == Mode::kCurrent) {
    const float sign = sc.objective == model::Objective::kMaximize ? -1.0f : 1.0f;
    const float mean = sc.reduction == Reduction::kMean ? 1.0f / static_cast<float>(g.y.size()) : 1;
    ExpectNear(result->input_gradient, sign * sc.delta_scale * mean * g.dx,
               "CURRENT: sign x delta_scale x reduction x torch's VJP");
  }
}

INSTANTIATE_TEST_SUITE_P(
    Surrogates, SubmitInputGradient,
    ::testing::Values(
        SurrogateCase{Mode::kCurrent, Reduction::kSum, 1.0f, model::Objective::kMinimize},
        SurrogateCase{Mode::kCurrent, Reduction::kSum, 1.0f, model::Objective::kMaximize},
        SurrogateCase{Mode::kCurrent, Reduction::kSum, 0.3f, model::Objective::kMinimize},
        SurrogateCase{Mode::kCurrent, Reduction::kMean, 2.0f, model::Objective::kMaximize},
        SurrogateCase{Mode::kAnchored, Reduction::kSum, 1.0f, model::Objective::kMinimize},
        SurrogateCase{Mode::kAnchored, Reduction::kMean, 0.5f, model::Objective::kMaximize}));

TEST(SubmitInputGradientOptions, NotAskedIsEmptyAndParametersMatchAsked) {
  // Two trainers, the same submissions, one asking: the parameters after a
  // step are bit-identical (asking changes no parameter numerics).
  const Golden g = ReadDeepGolden();
  TrainerOptions options = Options();
  options.samples_per_step = 5;  // One golden batch per step.
  std::unique_ptr<Trainer> asking = GoldenTrainer(g, options);
  std::unique_ptr<Trainer> plain = GoldenTrainer(g, options);
  ASSERT_NE(asking, nullptr);
  ASSERT_NE(plain, nullptr);
  absl::StatusOr<SubmitResult> a = SubmitAndWait(*asking, GoldenSubmission(g, true));
  absl::StatusOr<SubmitResult> p = SubmitAndWait(*plain, GoldenSubmission(g, false));
  ASSERT_TRUE(a.ok() && p.ok());
  EXPECT_TRUE(a->stepped && p->stepped);
  EXPECT_EQ(a->input_gradient.rows(), g.x.rows());
  EXPECT_EQ(p->input_gradient.size(), 0);
  EXPECT_TRUE(BitIdentical(asking->snapshot()->parameters, plain->snapshot()->parameters));
}

TEST(SubmitInputGradientOptions, StalenessScalingIsNotApplied) {
  const Golden g = ReadDeepGolden();
  TrainerOptions options = Options();
  options.samples_per_step = 1;
  options.staleness_scaled_lr = true;
  std::unique_ptr<Trainer> trainer = GoldenTrainer(g, options);
  ASSERT_NE(trainer, nullptr);
  // Two steps, so that a submission made at version 1 is 2 versions stale.
  for (int i = 0; i < 2; ++i) {
    Submission step = GoldenSubmission(g, false);
    step.version = trainer->snapshot()->version;
    ASSERT_TRUE(SubmitAndWait(*trainer, step).ok());
  }
  const std::vector<float> params = trainer->snapshot()->parameters;
  Submission stale = GoldenSubmission(g, true);
  stale.version = 1;
  const model::Matrix expected = ExpectedSubmitInputGradient(*trainer, params, stale);
  absl::StatusOr<SubmitResult> result = SubmitAndWait(*trainer, stale);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->staleness, 2u);
  ExpectNear(result->input_gradient, expected, "unscaled input gradient", 1e-6f);
  EXPECT_GT((result->input_gradient - expected / 3.0f).cwiseAbs().maxCoeff(), 1e-4f)
      << "the 1/(1+s) scale must not be applied";
}

TEST(SubmitInputGradientOptions, AGroupSlicesEachMembersRowsAndDuplicatesGetTheOriginal) {
  const Golden g = ReadDeepGolden();
  // Declared before the trainer: its callbacks write here until it stops.
  std::vector<absl::StatusOr<SubmitResult>> results(3, absl::UnknownError("no answer"));
  std::vector<absl::Notification> answered(3);
  auto gate = std::make_shared<testing::HeldGate>();
  gate->Close();
  gate->PassOnce();  // The import only; then the learner is held.
  TrainerOptions options = Options();
  options.gate = gate;
  options.staleness_scaled_lr = true;  // Scale 1 here (no staleness), still the general path.
  std::unique_ptr<Trainer> trainer = GoldenTrainer(g, options);
  ASSERT_NE(trainer, nullptr);
  // Three members of one group: rows 0-1 asking, rows 2-3 not, row 4 asking.
  std::vector<Submission> members;
  for (auto [begin, n, want] : {std::tuple{0, 2, true}, {2, 2, false}, {4, 1, true}}) {
    Submission s = GoldenSubmission(g, want);
    s.inputs = g.x.middleRows(begin, n);
    s.deltas = g.delta.middleRows(begin, n);
    s.request_id = absl::StrCat("id", begin);
    members.push_back(std::move(s));
  }
  for (size_t i = 0; i < 3; ++i) {
    ASSERT_TRUE(trainer
                    ->Submit(members[i],
                             [&, i](absl::StatusOr<SubmitResult> r) {
                               results[i] = std::move(r);
                               answered[i].Notify();
                             })
                    .ok());
  }
  ASSERT_TRUE(trainer->AwaitQueued(3, absl::Seconds(30)));
  gate->Open();
  for (absl::Notification& n : answered)
    ASSERT_TRUE(n.WaitForNotificationWithTimeout(absl::Seconds(30)));
  ASSERT_TRUE(results[0].ok() && results[1].ok() && results[2].ok());
  ExpectNear(results[0]->input_gradient, g.dx.middleRows(0, 2), "member 0 vs torch");
  EXPECT_EQ(results[1]->input_gradient.size(), 0) << "member 1 did not ask";
  ExpectNear(results[2]->input_gradient, g.dx.middleRows(4, 1), "member 2 vs torch");

  // A retry of member 0 (same request_id) is a duplicate with the original input gradient.
  absl::StatusOr<SubmitResult> retry = SubmitAndWait(*trainer, members[0]);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->input_gradient, results[0]->input_gradient);
}

// With --state_dir, the window keeps each input gradient: a duplicate after
// a crash (journal replay computes it again) or a restart (the checkpoint
// holds it) still gets the original, bit for bit.
TEST(SubmitInputGradientPersistence, ADuplicateAfterACrashOrARestartGetsTheOriginal) {
  deltaserve::testing::TempDir tmp;
  auto options = [&](const std::string& name) {
    return testing::TrainerOptionsBuilder("m", /*input_dim=*/4)
        .Layers({{5, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
        .Seed(3)
        .Adam(0.01f)
        .SamplesPerStep(3)
        .StalenessScaledLr()
        .PersistIn(tmp.path() + "/" + name)
        .Build();
  };
  Submission asking;
  asking.inputs = model::Matrix::Constant(2, 4, 0.3f);
  asking.inputs(1, 2) = -1.0f;
  asking.deltas = model::Matrix::Constant(2, 2, 0.5f);
  asking.request_id = "asking";
  asking.return_input_gradient = true;
  std::unique_ptr<Trainer> live = MakeTrainer(options("m"));
  ASSERT_NE(live, nullptr);
  absl::StatusOr<SubmitResult> original = SubmitAndWait(*live, asking);
  ASSERT_TRUE(original.ok()) << original.status();
  ASSERT_EQ(original->input_gradient.rows(), 2);

  // A kill -9 now: the directory as it is (the journal holds the submission).
  std::filesystem::copy(tmp.path() + "/m", tmp.path() + "/crash",
                        std::filesystem::copy_options::recursive);
  std::unique_ptr<Trainer> recovered = MakeTrainer(options("crash"));
  ASSERT_NE(recovered, nullptr);
  absl::StatusOr<SubmitResult> retry = SubmitAndWait(*recovered, asking);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->input_gradient, original->input_gradient) << "after journal replay";

  live.reset();  // Stop: a final checkpoint with the window.
  std::unique_ptr<Trainer> restarted = MakeTrainer(options("m"));
  ASSERT_NE(restarted, nullptr);
  retry = SubmitAndWait(*restarted, asking);
  ASSERT_TRUE(retry.ok()) << retry.status();
  EXPECT_TRUE(retry->duplicate);
  EXPECT_EQ(retry->input_gradient, original->input_gradient) << "after a checkpoint restore";
}

// ---- Through a real server on 127.0.0.1:0 with the C++ client ----

// Each test twice: with the default min_batch_macs this small model's calls
// are computed in the gRPC reaction; with 1, every Forward is answered from
// the model's batcher thread and every InputGradient from a gradient thread.
class InputGradientServerTest : public client::testing::ServerTest,
                                public ::testing::WithParamInterface<uint64_t> {
 protected:
  deltaserve::v1::ServerConfig Config() const override {
    deltaserve::v1::ServerConfig config = client::testing::SmallConfig();
    config.mutable_models(0)->set_min_batch_macs(GetParam());
    return config;
  }
  model::Matrix X() const {
    model::Matrix x(3, client::testing::kInputDim);
    x << 0.5f, -0.25f, 1.0f, -1.5f, 0.75f, 0.1f, 2.0f, 0.0f, -0.3f;
    return x;
  }
  model::Matrix D() const {
    model::Matrix d(3, client::testing::kOutputDim);
    d << 1.0f, -2.0f, 0.5f, 0.25f, -1.0f, 3.0f;
    return d;
  }
  // The expected VJP from the served parameters, computed locally.
  model::Matrix LocalVjp(const model::Matrix& d) {
    const std::vector<float> params = server->trainer("")->snapshot()->parameters;
    const model::Mlp& mlp = server->trainer("")->mlp();
    model::Mlp::Workspace ws;
    EXPECT_TRUE(mlp.Forward(params, X(), ws).ok());
    model::Matrix dx;
    EXPECT_TRUE(mlp.InputGradient(params, X(), ws, d, &dx).ok());
    return dx;
  }
};

TEST_P(InputGradientServerTest, UnaryRpcAnswersTheVjpAndChangesNothing) {
  const std::vector<float> before = server->trainer("")->snapshot()->parameters;
  absl::StatusOr<client::InputGradientResult> result = client->InputGradient(X(), D());
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectNear(result->input_gradient, LocalVjp(D()), "rpc vs local VJP", 1e-6f);
  absl::StatusOr<client::ForwardResult> forward = client->Forward(X());
  ASSERT_TRUE(forward.ok());
  ExpectNear(result->outputs, forward->outputs, "outputs vs Forward", 1e-6f);
  EXPECT_EQ(result->version, 0u);
  EXPECT_TRUE(BitIdentical(server->trainer("")->snapshot()->parameters, before));
  EXPECT_EQ(server->trainer("")->snapshot()->version, 0u);

  const absl::Status wrong = client->InputGradient(X(), model::Matrix::Ones(3, 5)).status();
  EXPECT_EQ(wrong.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.message(), HasSubstr("deltas: expected 2 columns"));
  const absl::Status unknown = client->InputGradient(X(), D(), "nope").status();
  EXPECT_EQ(unknown.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(server->metrics()->Scrape(), HasSubstr("rpc=\"InputGradient\""));
}

TEST_P(InputGradientServerTest, SubmitDeltaReturnsTheInputGradientWhenAsked) {
  client::DeltaSubmission s;
  s.inputs = X();
  s.deltas = D();
  s.objective = model::Objective::kMaximize;
  s.return_input_gradient = true;
  const model::Matrix expected = -LocalVjp(D());  // CURRENT, ε = 1, SUM, maximize.
  absl::StatusOr<client::SubmitDeltaResult> result = client->SubmitDelta(s);
  ASSERT_TRUE(result.ok()) << result.status();
  ExpectNear(result->input_gradient, expected, "SubmitDelta's input_gradient", 1e-6f);
  s.return_input_gradient = false;
  result = client->SubmitDelta(s);
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->input_gradient.size(), 0);
}

TEST_P(InputGradientServerTest, SessionServesInputGradientsBesideForwardAndSubmit) {
  absl::StatusOr<std::unique_ptr<client::Session>> session = client->OpenSession();
  ASSERT_TRUE(session.ok()) << session.status();
  const model::Matrix expected = LocalVjp(D());
  std::future<absl::StatusOr<client::InputGradientResult>> bad =
      (*session)->InputGradient(X(), model::Matrix::Ones(1, 2));
  std::future<absl::StatusOr<client::InputGradientResult>> good =
      (*session)->InputGradient(X(), D());
  std::future<absl::StatusOr<client::ForwardResult>> forward = (*session)->Forward(X());
  const absl::Status refused = bad.get().status();
  EXPECT_EQ(refused.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(refused.message(), HasSubstr("deltas: expected 3 rows"));
  absl::StatusOr<client::InputGradientResult> answer = good.get();
  ASSERT_TRUE(answer.ok()) << answer.status();
  ExpectNear(answer->input_gradient, expected, "Session input_gradient", 1e-6f);
  ASSERT_TRUE(forward.get().ok());
  // The stream goes on after the error: a submit asking for its input gradient.
  client::DeltaSubmission s;
  s.inputs = X();
  s.deltas = D();
  s.return_input_gradient = true;
  absl::StatusOr<client::SubmitDeltaResult> submitted = (*session)->SubmitDeltaSync(s);
  ASSERT_TRUE(submitted.ok()) << submitted.status();
  ExpectNear(submitted->input_gradient, expected, "Session submit's input_gradient", 1e-6f);
  absl::StatusOr<client::InputGradientResult> after = (*session)->InputGradientSync(X(), D());
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->version, 1u);  // One row per step: the submit stepped.
  EXPECT_TRUE((*session)->Close().ok());
}

INSTANTIATE_TEST_SUITE_P(Paths, InputGradientServerTest,
                         ::testing::Values(uint64_t{0}, uint64_t{1}),
                         [](const ::testing::TestParamInfo<uint64_t>& info) {
                           return info.param == 0 ? std::string("InTheReaction")
                                                  : std::string("OnTheBatcherThreads");
                         });

}  // namespace
}  // namespace deltaserve::server
