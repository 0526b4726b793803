#include "deltaserve/sim/ppo_worker.h"

#include <algorithm>
#include <cmath>
#include <future>
#include <memory>
#include <numeric>
#include <random>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/sim/envs/pendulum_env.h"

namespace deltaserve::sim {

absl::StatusOr<PiOld> ParsePiOld(const std::string& name) {
  if (name == "behaviour") return PiOld::kBehaviour;
  if (name == "recompute") return PiOld::kRecompute;
  return absl::InvalidArgumentError(
      absl::StrCat("--pi_old must be behaviour or recompute, got '", name, "'"));
}

PpoProgress::PpoProgress(int64_t max_env_steps, double max_seconds, double target, int window,
                         bool quiet)
    : max_env_steps_(max_env_steps),
      max_seconds_(max_seconds),
      target_(target),
      quiet_(quiet),
      window_(static_cast<size_t>(std::max(1, window))) {}

double PpoProgress::seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

bool PpoProgress::Done() const {
  return reached_.load() || (max_env_steps_ > 0 && env_steps_.load() >= max_env_steps_) ||
         (max_seconds_ > 0 && seconds() >= max_seconds_);
}

void PpoProgress::AddReturn(double episode_return, uint64_t version, int sim) {
  absl::MutexLock lock(&mu_);
  ++episodes_;
  window_.Add(episode_return);
  const int64_t steps = env_steps_.load();
  const double t = seconds();
  if (!quiet_) {
    Report("episode=%d return=%.1f avg=%.1f steps=%d version=%d sim=%d t=%.3f\n", episodes_,
           episode_return, window_.mean(), steps, version, sim, t);
  }
  if (window_.full() && window_.mean() >= target_ && steps_at_target_ < 0) {
    steps_at_target_ = steps;
    seconds_at_target_ = t;
    reached_.store(true);
  }
}

int PpoProgress::episodes() const {
  absl::MutexLock lock(&mu_);
  return episodes_;
}
double PpoProgress::average() const {
  absl::MutexLock lock(&mu_);
  return window_.mean();
}
int64_t PpoProgress::steps_at_target() const {
  absl::MutexLock lock(&mu_);
  return steps_at_target_;
}
double PpoProgress::seconds_at_target() const {
  absl::MutexLock lock(&mu_);
  return seconds_at_target_;
}

absl::Status ValidatePpoOptions(const PpoOptions& o) {
  if (o.envs < 1 || o.rollout < 1 || o.epochs < 1 || o.minibatches < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("PPO needs envs, rollout, epochs and minibatches >= 1, got ", o.envs, ", ",
                     o.rollout, ", ", o.epochs, ", ", o.minibatches));
  }
  const int64_t n = static_cast<int64_t>(o.rollout) * o.envs;
  if (n % o.minibatches != 0 || n / o.minibatches < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat("PPO needs rollout*envs (", n, ") to be a multiple of minibatches (",
                     o.minibatches, ") with at least 2 rows per minibatch"));
  }
  if (!(o.gamma >= 0 && o.gamma <= 1) || !(o.lambda >= 0 && o.lambda <= 1) ||
      !(o.policy.clip > 0) || !std::isfinite(o.policy.clip) || !std::isfinite(o.policy.ent_coef) ||
      !std::isfinite(o.vf_coef)) {
    return absl::InvalidArgumentError(
        "PPO needs gamma and lambda in [0, 1], a finite clip > 0 and finite ent_coef and vf_coef");
  }
  return absl::OkStatus();
}

namespace {

constexpr int kObs = Pendulum::kObservationDim;

// One rollout of E environments for T steps, time-major (row t·E + e).
struct Rollout {
  model::Matrix observations;  // [T·E × 3] the observations acted on
  model::Matrix actions;       // [T·E × 1] the sampled (unclipped) actions
  std::vector<double> old_log_prob;
  std::vector<float> rewards;  // scaled
  std::vector<uint8_t> ends;   // the episode was truncated at this step
  std::vector<std::pair<int, Pendulum::Observation>> finals;  // (row, final observation)
  model::Matrix last;  // [E × 3] the observations after the last step
  uint64_t oldest_version = UINT64_MAX;
};

model::Matrix Rows(const model::Matrix& m, absl::Span<const int> rows) {
  model::Matrix out(rows.size(), m.cols());
  for (size_t i = 0; i < rows.size(); ++i) out.row(i) = m.row(rows[i]);
  return out;
}

template <typename T>
std::vector<T> Pick(const std::vector<T>& v, absl::Span<const int> rows) {
  std::vector<T> out(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) out[i] = v[rows[i]];
  return out;
}

class Simulator {
 public:
  Simulator(int sim, const PpoOptions& options, PpoProgress& progress)
      : sim_(sim),
        o_(options),
        progress_(progress),
        rng_(options.seed * 1000003ULL + static_cast<uint64_t>(sim) * 7919ULL + 17ULL),
        scaler_(options.envs, options.gamma),
        episode_returns_(options.envs, 0.0) {
    for (int e = 0; e < options.envs; ++e) {
      envs_.emplace_back(options.seed * 1000003ULL + static_cast<uint64_t>(sim) * 101ULL + e);
    }
  }

  absl::Status Connect(const PpoModels& models) {
    RunnerOptions policy = models.policy, value = models.value, log_std = models.log_std;
    policy.input_dim = kObs;
    policy.output_dim = 1;
    policy.task = "PPO on Pendulum (policy mean)";
    value.input_dim = kObs;
    value.output_dim = 1;
    value.task = "PPO on Pendulum (value)";
    value.actions = "roundtrip";
    if (o_.pipeline) {
      // The pipelined learner keeps up to two minibatches' calls in flight.
      policy.session_in_flight = value.session_in_flight = log_std.session_in_flight = 8;
    }
    log_std.input_dim = 1;
    log_std.output_dim = 1;
    log_std.task = "PPO on Pendulum (log-std)";
    log_std.actions = "roundtrip";
    DELTASERVE_ASSIGN_OR_RETURN(policy_, Runner::Connect(std::move(policy)));
    DELTASERVE_ASSIGN_OR_RETURN(value_, Runner::Connect(std::move(value)));
    DELTASERVE_ASSIGN_OR_RETURN(log_std_, Runner::Connect(std::move(log_std)));
    shared_replica_ = models.shared_replica;
    value_anchored_ =
        value_->info().spec().surrogate().mode() == deltaserve::v1::SurrogateConfig::ANCHORED;
    return absl::OkStatus();
  }

  absl::StatusOr<PpoWorkerCounts> Run() {
    while (!progress_.Done()) {
      DELTASERVE_ASSIGN_OR_RETURN(const bool complete, Collect());
      if (!complete) break;
      DELTASERVE_RETURN_IF_ERROR(Learn());
      ++counts_.rollouts;
    }
    counts_.refetches = policy_->counts().retries.refetches + value_->counts().retries.refetches +
                        log_std_->counts().retries.refetches;
    return counts_;
  }

 private:
  // log σ at the log-std model's latest version.
  absl::StatusOr<float> FetchLogStd() {
    DELTASERVE_ASSIGN_OR_RETURN(client::ForwardResult r, log_std_->Fetch(zero_));
    return r.outputs(0, 0);
  }

  void Observe(model::Matrix* obs) const {
    obs->resize(o_.envs, kObs);
    for (int e = 0; e < o_.envs; ++e) {
      const Pendulum::Observation x = envs_[e].observation();
      std::copy(x.begin(), x.end(), obs->row(e).data());
    }
  }

  // Step 1; false if the run ended before the rollout was complete.
  absl::StatusOr<bool> Collect() {
    const int e_count = o_.envs;
    const int n = o_.rollout * e_count;
    Rollout& r = rollout_;
    r.observations.resize(n, kObs);
    r.actions.resize(n, 1);
    r.old_log_prob.assign(n, 0.0);
    r.rewards.assign(n, 0.0f);
    r.ends.assign(n, 0);
    r.finals.clear();
    r.oldest_version = UINT64_MAX;
    DELTASERVE_ASSIGN_OR_RETURN(const float log_std, FetchLogStd());
    const double sigma = std::exp(static_cast<double>(log_std));
    model::Matrix obs, mu, one_action(1, 1);
    std::vector<float> raw(e_count);
    std::vector<uint8_t> ends(e_count);
    for (int t = 0; t < o_.rollout; ++t) {
      if (progress_.Done()) return false;
      Observe(&obs);
      uint64_t version = 0;
      if (shared_replica_ != nullptr) {
        DELTASERVE_ASSIGN_OR_RETURN(client::ForwardResult acted, shared_replica_->Forward(obs));
        version = acted.version;
        mu = std::move(acted.outputs);
      } else {
        DELTASERVE_ASSIGN_OR_RETURN(version, policy_->Act(obs, &mu));
      }
      r.oldest_version = std::min(r.oldest_version, version);
      for (int e = 0; e < e_count; ++e) {
        const int k = t * e_count + e;
        const float a = static_cast<float>(mu(e, 0) + sigma * normal_(rng_));
        r.observations.row(k) = obs.row(e);
        r.actions(k, 0) = a;
        one_action(0, 0) = a;
        r.old_log_prob[k] = GaussianLogProb(mu.row(e), {&log_std, 1}, one_action)[0];
        const Pendulum::StepResult step = envs_[e].Step(a);
        raw[e] = step.reward;
        ends[e] = step.truncated ? 1 : 0;
        r.ends[k] = ends[e];
        episode_returns_[e] += step.reward;
        if (step.truncated) {
          r.finals.emplace_back(k, envs_[e].observation());
          progress_.AddReturn(episode_returns_[e], version, sim_);
          episode_returns_[e] = 0.0;
          envs_[e].Reset();
        }
      }
      progress_.AddSteps(e_count);
      if (o_.reward_scaling) {
        const std::vector<float> scaled = scaler_.Scale(raw, ends);
        for (int e = 0; e < e_count; ++e) r.rewards[t * e_count + e] = scaled[e];
      } else {
        for (int e = 0; e < e_count; ++e) r.rewards[t * e_count + e] = raw[e];
      }
    }
    Observe(&r.last);
    return true;
  }

  // Steps 2 and 3.
  absl::Status Learn() {
    const int e_count = o_.envs;
    const int n = o_.rollout * e_count;
    Rollout& r = rollout_;
    // V of the observations, the last ones and the truncated episodes' final ones.
    const int f = static_cast<int>(r.finals.size());
    model::Matrix all(n + e_count + f, kObs);
    all.topRows(n) = r.observations;
    all.middleRows(n, e_count) = r.last;
    for (int i = 0; i < f; ++i) {
      std::copy(r.finals[i].second.begin(), r.finals[i].second.end(),
                all.row(n + e_count + i).data());
    }
    DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult v, value_->Fetch(all));
    value_version_ = std::max(value_version_, v.version);
    std::vector<float> values(n), next_values(n);
    for (int k = 0; k < n; ++k) {
      values[k] = v.outputs(k, 0);
      next_values[k] = v.outputs(k + e_count, 0);  // row k + E is s_{t+1}; the last row: r.last
    }
    for (int i = 0; i < f; ++i) next_values[r.finals[i].first] = v.outputs(n + e_count + i, 0);
    const std::vector<uint8_t> terminated(n, 0);  // Pendulum never terminates
    const GaeResult gae =
        Gae(r.rewards, values, next_values, terminated, r.ends, e_count, o_.gamma, o_.lambda);

    std::vector<double> old_log_prob = r.old_log_prob;
    if (o_.pi_old == PiOld::kRecompute) {
      DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult mu, policy_->Fetch(r.observations));
      DELTASERVE_ASSIGN_OR_RETURN(const float log_std, FetchLogStd());
      old_log_prob = GaussianLogProb(mu.outputs, {&log_std, 1}, r.actions);
    }

    if (o_.pipeline) return LearnPipelined(old_log_prob, gae);
    const int size = n / o_.minibatches;
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    bool first = true;
    for (int epoch = 0; epoch < o_.epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng_);
      for (int m = 0; m < o_.minibatches; ++m) {
        if (progress_.Done()) return absl::OkStatus();
        const absl::Span<const int> idx(order.data() + m * size, size);
        DELTASERVE_ASSIGN_OR_RETURN(const bool learned,
                                    LearnMinibatch(idx, old_log_prob, gae, first));
        first = false;
        if (!learned) {
          ++counts_.dropped_rollouts;
          return absl::OkStatus();
        }
      }
    }
    return absl::OkStatus();
  }

  // One minibatch: three Forwards, three SubmitDeltas. False if it is the
  // rollout's first and the rollout is dropped for policy lag.
  absl::StatusOr<bool> LearnMinibatch(absl::Span<const int> idx,
                                      const std::vector<double>& old_log_prob_all,
                                      const GaeResult& gae, bool first) {
    const Rollout& r = rollout_;
    const model::Matrix x = Rows(r.observations, idx);
    const model::Matrix actions = Rows(r.actions, idx);
    const std::vector<double> old_log_prob = Pick(old_log_prob_all, idx);
    const std::vector<float> advantages = NormalizeAdvantages(Pick(gae.advantages, idx));
    const std::vector<float> returns = Pick(gae.returns, idx);

    DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult mu, policy_->Fetch(x));
    const uint64_t lag = mu.version > r.oldest_version ? mu.version - r.oldest_version : 0;
    counts_.max_lag = std::max(counts_.max_lag, lag);
    if (first && o_.max_policy_lag > 0 && lag > o_.max_policy_lag) return false;
    DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult log_std, log_std_->Fetch(zero_));
    client::ForwardResult v;
    if (!value_anchored_) {
      DELTASERVE_ASSIGN_OR_RETURN(v, value_->Fetch(x));
    } else {
      // Not used: with ANCHORED the server computes V - R at its own V.
      v.outputs = model::Matrix::Zero(x.rows(), 1);
      v.version = value_version_;
    }
    const float ls = log_std.outputs(0, 0);

    const PpoPolicyGradient g =
        PpoPolicyDeltas(mu.outputs, {&ls, 1}, actions, old_log_prob, advantages, o_.policy);
    counts_.rows += static_cast<int64_t>(idx.size());
    for (uint8_t c : g.clipped) counts_.clipped_rows += c;
    if (first) {
      counts_.sum_first_lag += lag;
      double dev = 0;
      for (double ratio : g.ratio) dev += std::abs(ratio - 1.0);
      counts_.sum_first_ratio_dev += dev / static_cast<double>(g.ratio.size());
    }

    const SubmissionBuilder policy_build = [&](const client::ForwardResult& fresh) {
      client::DeltaSubmission s;
      s.inputs = x;
      s.deltas = fresh.version == mu.version ? g.delta_mu
                                             : PpoPolicyDeltas(fresh.outputs, {&ls, 1}, actions,
                                                               old_log_prob, advantages, o_.policy)
                                                   .delta_mu;
      s.version = fresh.version;
      return s;
    };
    DELTASERVE_RETURN_IF_ERROR(policy_->Submit(mu, policy_build).status());

    const SubmissionBuilder log_std_build = [&](const client::ForwardResult& fresh) {
      const float fresh_ls = fresh.outputs(0, 0);
      client::DeltaSubmission s;
      s.inputs = zero_;
      s.deltas.resize(1, 1);
      s.deltas(0, 0) = fresh.version == log_std.version
                           ? g.grad_log_std[0]
                           : PpoPolicyDeltas(mu.outputs, {&fresh_ls, 1}, actions, old_log_prob,
                                             advantages, o_.policy)
                                 .grad_log_std[0];
      s.version = fresh.version;
      return s;
    };
    DELTASERVE_RETURN_IF_ERROR(log_std_->Submit(log_std, log_std_build).status());

    const SubmissionBuilder value_build = [&](const client::ForwardResult& fresh) {
      if (value_anchored_) return AnchoredValueSubmission(x, returns);
      client::DeltaSubmission s;
      s.inputs = x;
      s.deltas = ValueDeltas(fresh.outputs, returns, o_.vf_coef);
      s.version = fresh.version;
      return s;
    };
    DELTASERVE_ASSIGN_OR_RETURN(const client::SubmitDeltaResult value_answer,
                                value_->Submit(v, value_build));
    value_version_ = std::max(value_version_, value_answer.version);
    ++counts_.minibatches;
    return true;
  }

  // The value model's submission when its surrogate is ANCHORED: ỹ = R and
  // δ = 0, so the server's ∂l/∂V = (V − R) (divided by the rows with MEAN
  // reduction) at its own current V; no Forward of V is needed. The
  // submission does not depend on a version; it carries the latest one seen.
  client::DeltaSubmission AnchoredValueSubmission(const model::Matrix& x,
                                                  const std::vector<float>& returns) const {
    client::DeltaSubmission s;
    s.inputs = x;
    model::Matrix targets(x.rows(), 1);
    for (Eigen::Index i = 0; i < x.rows(); ++i) targets(i, 0) = returns[i];
    s.acted_outputs = std::move(targets);
    s.deltas = model::Matrix::Zero(x.rows(), 1);
    s.version = value_version_;
    return s;
  }

  // The calls of one minibatch in flight: μ's and log σ's Forwards (and V's
  // unless the value model is ANCHORED), then its SubmitDeltas.
  struct InFlight {
    std::vector<int> idx;
    std::future<absl::StatusOr<client::ForwardResult>> mu, log_std, value;
    std::future<absl::StatusOr<client::SubmitDeltaResult>> submit_mu, submit_log_std, submit_value;
  };

  // Waits for a minibatch's SubmitDelta answers. An ABORTED one (its
  // Forward and the step were further apart than max_staleness) is dropped
  // and counted, not resent; any other error ends the run.
  absl::Status Settle(InFlight& m) {
    for (auto* f : {&m.submit_mu, &m.submit_log_std, &m.submit_value}) {
      if (!f->valid()) continue;
      absl::StatusOr<client::SubmitDeltaResult> answer = f->get();
      if (absl::IsAborted(answer.status())) {
        ++counts_.aborted_dropped;
        continue;
      }
      DELTASERVE_RETURN_IF_ERROR(answer.status());
      if (f == &m.submit_value) value_version_ = std::max(value_version_, answer->version);
      (f == &m.submit_mu        ? policy_
       : f == &m.submit_log_std ? log_std_
                                : value_)
          ->CountSubmit(*answer);
    }
    return absl::OkStatus();
  }

  // Step 3, pipelined: minibatch k+1's Forwards are issued right behind
  // minibatch k's SubmitDeltas on the same Sessions, so the client waits
  // for one round trip per minibatch (the Forwards' answers) instead of
  // one per call. k+1's μ may then be from the version before k's step
  // (the server has not applied it yet): the same kind of lag the other
  // simulators' steps cause, which the ratio against π_old covers, and
  // with the CURRENT surrogate the step is taken at the server's current
  // outputs anyway.
  absl::Status LearnPipelined(const std::vector<double>& old_log_prob_all, const GaeResult& gae) {
    const Rollout& r = rollout_;
    const int n = o_.rollout * o_.envs;
    const int size = n / o_.minibatches;
    std::vector<std::vector<int>> batches;
    std::vector<int> order(n);
    std::iota(order.begin(), order.end(), 0);
    for (int epoch = 0; epoch < o_.epochs; ++epoch) {
      std::shuffle(order.begin(), order.end(), rng_);
      for (int m = 0; m < o_.minibatches; ++m) {
        batches.emplace_back(order.begin() + m * size, order.begin() + (m + 1) * size);
      }
    }
    const auto issue = [&](InFlight& m, std::vector<int> idx) {
      m.idx = std::move(idx);
      const model::Matrix x = Rows(r.observations, m.idx);
      m.mu = policy_->FetchAsync(x);
      m.log_std = log_std_->FetchAsync(zero_);
      if (!value_anchored_) m.value = value_->FetchAsync(x);
    };
    InFlight previous, current;
    issue(current, batches[0]);
    for (size_t k = 0; k < batches.size(); ++k) {
      DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult mu, current.mu.get());
      DELTASERVE_ASSIGN_OR_RETURN(const client::ForwardResult log_std, current.log_std.get());
      client::ForwardResult v;
      if (!value_anchored_) {
        DELTASERVE_ASSIGN_OR_RETURN(v, current.value.get());
      }
      DELTASERVE_RETURN_IF_ERROR(Settle(previous));
      if (progress_.Done()) return absl::OkStatus();
      const absl::Span<const int> idx(current.idx);
      const model::Matrix x = Rows(r.observations, idx);
      const model::Matrix actions = Rows(r.actions, idx);
      const std::vector<double> old_log_prob = Pick(old_log_prob_all, idx);
      const std::vector<float> advantages = NormalizeAdvantages(Pick(gae.advantages, idx));
      const std::vector<float> returns = Pick(gae.returns, idx);
      const uint64_t lag = mu.version > r.oldest_version ? mu.version - r.oldest_version : 0;
      counts_.max_lag = std::max(counts_.max_lag, lag);
      if (k == 0 && o_.max_policy_lag > 0 && lag > o_.max_policy_lag) {
        ++counts_.dropped_rollouts;
        return absl::OkStatus();
      }
      const float ls = log_std.outputs(0, 0);
      const PpoPolicyGradient g =
          PpoPolicyDeltas(mu.outputs, {&ls, 1}, actions, old_log_prob, advantages, o_.policy);
      counts_.rows += static_cast<int64_t>(idx.size());
      for (uint8_t c : g.clipped) counts_.clipped_rows += c;
      if (k == 0) {
        counts_.sum_first_lag += lag;
        double dev = 0;
        for (double ratio : g.ratio) dev += std::abs(ratio - 1.0);
        counts_.sum_first_ratio_dev += dev / static_cast<double>(g.ratio.size());
      }
      client::DeltaSubmission policy_s;
      policy_s.inputs = x;
      policy_s.deltas = g.delta_mu;
      policy_s.version = mu.version;
      client::DeltaSubmission log_std_s;
      log_std_s.inputs = zero_;
      log_std_s.deltas.resize(1, 1);
      log_std_s.deltas(0, 0) = g.grad_log_std[0];
      log_std_s.version = log_std.version;
      client::DeltaSubmission value_s;
      if (value_anchored_) {
        value_s = AnchoredValueSubmission(x, returns);
      } else {
        value_s.inputs = x;
        value_s.deltas = ValueDeltas(v.outputs, returns, o_.vf_coef);
        value_s.version = v.version;
      }
      previous = std::move(current);
      previous.submit_mu = policy_->SubmitDeltaAsync(policy_s);
      previous.submit_log_std = log_std_->SubmitDeltaAsync(log_std_s);
      previous.submit_value = value_->SubmitDeltaAsync(value_s);
      ++counts_.minibatches;
      current = InFlight();
      if (k + 1 < batches.size()) issue(current, batches[k + 1]);
    }
    return Settle(previous);
  }

  std::shared_ptr<client::Replica> shared_replica_;
  bool value_anchored_ = false;
  uint64_t value_version_ = 0;

  const int sim_;
  const PpoOptions o_;
  PpoProgress& progress_;
  std::mt19937_64 rng_;
  std::normal_distribution<double> normal_{0.0, 1.0};
  RewardScaler scaler_;
  std::vector<Pendulum> envs_;
  std::vector<double> episode_returns_;
  std::unique_ptr<Runner> policy_, value_, log_std_;
  const model::Matrix zero_ = model::Matrix::Zero(1, 1);
  Rollout rollout_;
  PpoWorkerCounts counts_;
};

}  // namespace

absl::StatusOr<PpoWorkerCounts> RunPpoSimulator(int sim, const PpoModels& models,
                                                const PpoOptions& options, PpoProgress& progress) {
  DELTASERVE_RETURN_IF_ERROR(ValidatePpoOptions(options));
  Simulator simulator(sim, options, progress);
  DELTASERVE_RETURN_IF_ERROR(simulator.Connect(models));
  return simulator.Run();
}

}  // namespace deltaserve::sim
