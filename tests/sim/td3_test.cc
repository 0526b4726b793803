// TD3's client-side pieces (sim/algorithms/td3.h) against hand-computed
// values: the replay ring, uniform sampling, target policy smoothing, the TD
// target, the actor's δ (sign and 1/N), Polyak averaging and
// torch.nn.Linear's default initialisation; and the options' validation
// (sim/td3_learner.h).
#include "deltaserve/sim/algorithms/td3.h"

#include <cmath>
#include <limits>
#include <random>
#include <set>
#include <vector>

#include "deltaserve/sim/td3_learner.h"
#include "gtest/gtest.h"

namespace deltaserve::sim {
namespace {

TEST(Td3ReplayBuffer, KeepsTheLastCapacityTransitionsInARing) {
  ReplayBuffer buffer(3, 2, 1);
  EXPECT_EQ(buffer.size(), 0);
  for (int i = 0; i < 5; ++i) {
    const float f = static_cast<float>(i);
    const std::vector<float> obs = {f, 10 * f}, next = {f + 1, 10 * f + 1};
    const float action = -f;
    buffer.Add(obs, {&action, 1}, 100 * f, next, i == 4);
  }
  EXPECT_EQ(buffer.size(), 3);
  EXPECT_EQ(buffer.added(), 5);
  // Transitions 2, 3, 4 remain; sample many times and check each row is one
  // of them, whole (s, a, r, s', terminated belong together).
  std::mt19937_64 rng(1);
  Td3Batch batch;
  buffer.Sample(rng, 300, &batch);
  ASSERT_EQ(batch.observations.rows(), 300);
  ASSERT_EQ(batch.observations.cols(), 2);
  ASSERT_EQ(batch.actions.cols(), 1);
  std::set<int> seen;
  for (int k = 0; k < 300; ++k) {
    const int i = static_cast<int>(batch.observations(k, 0));
    seen.insert(i);
    EXPECT_GE(i, 2);
    EXPECT_EQ(batch.observations(k, 1), 10.0f * i);
    EXPECT_EQ(batch.actions(k, 0), -1.0f * i);
    EXPECT_EQ(batch.rewards[k], 100.0f * i);
    EXPECT_EQ(batch.next_observations(k, 0), i + 1.0f);
    EXPECT_EQ(batch.next_observations(k, 1), 10.0f * i + 1);
    EXPECT_EQ(batch.terminated[k], i == 4 ? 1.0f : 0.0f);
  }
  EXPECT_EQ(seen, (std::set<int>{2, 3, 4}));
}

TEST(Td3ReplayBuffer, SamplesUniformly) {
  ReplayBuffer buffer(4, 1, 1);
  for (int i = 0; i < 4; ++i) {
    const float f = static_cast<float>(i);
    buffer.Add({&f, 1}, {&f, 1}, 0, {&f, 1}, false);
  }
  std::mt19937_64 rng(7);
  Td3Batch batch;
  buffer.Sample(rng, 40000, &batch);
  std::vector<int> counts(4, 0);
  for (int k = 0; k < 40000; ++k) ++counts[static_cast<int>(batch.observations(k, 0))];
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);  // > 4 standard deviations
}

TEST(Td3Smoothing, NoiseIsClippedAndTheActionStaysInRange) {
  model::Matrix out(4000, 1);
  for (int i = 0; i < 4000; ++i) out(i, 0) = (i % 3 == 0) ? 0.99f : (i % 3 == 1 ? -0.99f : 0.0f);
  std::mt19937_64 rng(3);
  const model::Matrix a = SmoothedTargetActions(out, rng, 0.2, 0.5, 2.0);
  bool clipped_noise = false;
  double sum_noise = 0;
  int middle = 0;
  for (int i = 0; i < 4000; ++i) {
    EXPECT_LE(std::abs(a(i, 0)), 2.0f);
    const double noise = a(i, 0) / 2.0 - out(i, 0);
    if (out(i, 0) == 0.0f) {
      EXPECT_LE(std::abs(noise), 0.5 + 1e-6);  // the clip c, in units of the scale
      clipped_noise |= std::abs(std::abs(noise) - 0.5) < 1e-6;
      sum_noise += noise * noise;
      ++middle;
    }
  }
  EXPECT_TRUE(std::abs(a.maxCoeff() - 2.0f) < 1e-6) << "0.99 + noise > 1 must clip to the scale";
  EXPECT_TRUE(clipped_noise) << "N(0, 0.2) beyond 0.5 happens ~1% of the time";
  EXPECT_NEAR(std::sqrt(sum_noise / middle), 0.2, 0.02);
  // No noise: exactly the scaled target action.
  std::mt19937_64 rng2(3);
  const model::Matrix exact = SmoothedTargetActions(out, rng2, 0.0, 0.5, 2.0);
  EXPECT_FLOAT_EQ(exact(0, 0), 1.98f);
  EXPECT_FLOAT_EQ(exact(1, 0), -1.98f);
}

TEST(Td3Targets, UsesTheSmallerTwinAndStopsAtTermination) {
  const std::vector<float> r = {1, -2, 0.5f}, q1 = {10, 3, -4}, q2 = {8, 5, 7}, term = {0, 0, 1};
  const std::vector<float> y = Td3Targets(r, q1, q2, term, 0.9);
  ASSERT_EQ(y.size(), 3u);
  EXPECT_FLOAT_EQ(y[0], 1 + 0.9f * 8);
  EXPECT_FLOAT_EQ(y[1], -2 + 0.9f * 3);
  EXPECT_FLOAT_EQ(y[2], 0.5f);
}

TEST(Td3ActorDeltas, AreMinusScaleTimesTheGradientOverN) {
  model::Matrix dq(4, 1);
  dq << 1, -2, 0.5, 0;
  const model::Matrix delta = Td3ActorDeltas(dq, 2.0);
  // Minimising −Q: where Q grows with a (dQ/da > 0), δ < 0 pushes π(s) up.
  EXPECT_FLOAT_EQ(delta(0, 0), -0.5f);
  EXPECT_FLOAT_EQ(delta(1, 0), 1.0f);
  EXPECT_FLOAT_EQ(delta(2, 0), -0.25f);
  EXPECT_FLOAT_EQ(delta(3, 0), 0.0f);
}

TEST(Td3Polyak, MovesTauOfTheWayTowardsTheSource) {
  std::vector<float> target = {0, 10, -4};
  const std::vector<float> source = {1, 0, -4};
  Polyak(absl::MakeSpan(target), source, 0.25);
  EXPECT_FLOAT_EQ(target[0], 0.25f);
  EXPECT_FLOAT_EQ(target[1], 7.5f);
  EXPECT_FLOAT_EQ(target[2], -4.0f);
  Polyak(absl::MakeSpan(target), source, 1.0);
  EXPECT_EQ(target, source);
}

TEST(Td3Init, DrawsEachLayerWithinOneOverRootFanIn) {
  std::mt19937_64 rng(5);
  const std::vector<int> units = {64, 64, 1};
  const std::vector<float> p = TorchDefaultInit(rng, 4, units);
  ASSERT_EQ(p.size(), static_cast<size_t>(4 * 64 + 64 + 64 * 64 + 64 + 64 + 1));
  // Layer by layer: W then b, all within ±1/√fan_in, and spread across it.
  size_t at = 0;
  int fan_in = 4;
  for (int fan_out : units) {
    const double bound = 1.0 / std::sqrt(fan_in);
    double max_abs = 0;
    for (int k = 0; k < fan_out * fan_in + fan_out; ++k, ++at) {
      EXPECT_LE(std::abs(p[at]), bound);
      max_abs = std::max(max_abs, static_cast<double>(std::abs(p[at])));
    }
    if (fan_out > 1) {
      EXPECT_GT(max_abs, 0.8 * bound) << "layer of fan_in " << fan_in;
    }
    fan_in = fan_out;
  }
  std::mt19937_64 same(5);
  EXPECT_EQ(TorchDefaultInit(same, 4, units), p) << "seeded: the same draw";
}

TEST(Td3Options, EachBadOptionIsRefusedByName) {
  EXPECT_TRUE(ValidateTd3Options(Td3Options()).ok());
  const auto refused = [](void (*change)(Td3Options&), const char* name) {
    Td3Options o;
    change(o);
    const absl::Status s = ValidateTd3Options(o);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << name;
    EXPECT_NE(s.message().find(name), std::string::npos) << s;
  };
  refused([](Td3Options& o) { o.steps = 0; }, "steps");
  refused([](Td3Options& o) { o.batch = 0; }, "batch");
  refused([](Td3Options& o) { o.hidden = -1; }, "hidden");
  refused([](Td3Options& o) { o.policy_delay = 0; }, "policy_delay");
  refused([](Td3Options& o) { o.in_flight = 0; }, "in_flight");
  refused([](Td3Options& o) { o.learning_starts = -1; }, "learning_starts");
  refused([](Td3Options& o) { o.buffer_capacity = -5; }, "buffer_capacity");
  refused([](Td3Options& o) { o.gamma = 1.5; }, "gamma");
  refused([](Td3Options& o) { o.tau = 0; }, "tau");
  refused([](Td3Options& o) { o.tau = std::nan(""); }, "tau");
  refused([](Td3Options& o) { o.lr = -1; }, "lr");
  refused([](Td3Options& o) { o.exploration_noise = -0.1; }, "exploration_noise");
  refused([](Td3Options& o) { o.target_noise = std::numeric_limits<double>::infinity(); },
          "target_noise");
  refused([](Td3Options& o) { o.target_noise_clip = std::nan(""); }, "target_noise_clip");
  refused([](Td3Options& o) { o.window = 0; }, "window");
}

}  // namespace
}  // namespace deltaserve::sim
