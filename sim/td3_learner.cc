#include "deltaserve/sim/td3_learner.h"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/mlp.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/sim/algorithms/td3.h"
#include "deltaserve/sim/envs/pendulum_env.h"
#include "deltaserve/sim/reporting.h"
#include "deltaserve/sim/retry.h"

namespace deltaserve::sim {

absl::Status ValidateTd3Options(const Td3Options& o) {
  const auto bad = [](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("TD3 needs ", what));
  };
  if (o.steps < 1) return bad(absl::StrCat("steps >= 1, got ", o.steps));
  if (o.hidden < 1) return bad(absl::StrCat("hidden >= 1, got ", o.hidden));
  if (o.batch < 1) return bad(absl::StrCat("batch >= 1, got ", o.batch));
  if (o.policy_delay < 1) return bad(absl::StrCat("policy_delay >= 1, got ", o.policy_delay));
  if (o.in_flight < 1) return bad(absl::StrCat("in_flight >= 1, got ", o.in_flight));
  if (o.learning_starts < 0) {
    return bad(absl::StrCat("learning_starts >= 0, got ", o.learning_starts));
  }
  if (o.buffer_capacity < 0) {
    return bad(absl::StrCat("buffer_capacity >= 0, got ", o.buffer_capacity));
  }
  if (o.window < 1) return bad(absl::StrCat("window >= 1, got ", o.window));
  if (!(o.gamma >= 0 && o.gamma <= 1)) return bad(absl::StrCat("gamma in [0, 1], got ", o.gamma));
  if (!(o.tau > 0 && o.tau <= 1)) return bad(absl::StrCat("tau in (0, 1], got ", o.tau));
  if (!(o.lr > 0) || !std::isfinite(o.lr)) return bad(absl::StrCat("a finite lr > 0, got ", o.lr));
  for (const auto& [name, value] :
       {std::pair<const char*, double>{"exploration_noise", o.exploration_noise},
        {"target_noise", o.target_noise},
        {"target_noise_clip", o.target_noise_clip}}) {
    if (!(value >= 0) || !std::isfinite(value)) {
      return bad(absl::StrCat("a finite ", name, " >= 0, got ", value));
    }
  }
  if (o.steps > INT32_MAX) return bad(absl::StrCat("steps <= ", INT32_MAX, ", got ", o.steps));
  return absl::OkStatus();
}

std::string Td3ServerConfig(const Td3Options& o) {
  const auto model = [&](const std::string& name, int input_dim, const char* last, int seed,
                         const char* extra) {
    return absl::StrFormat(
        "models {\n  name: \"%s\"\n  input_dim: %d\n"
        "  layers { units: %d activation: ACTIVATION_RELU }\n"
        "  layers { units: %d activation: ACTIVATION_RELU }\n"
        "  layers { units: 1 activation: ACTIVATION_%s }\n"
        "  seed: %d\n  optimizer { kind: ADAM learning_rate: %g }\n"
        "  samples_per_step: %d\n%s}\n",
        name, input_dim, o.hidden, o.hidden, last, seed, o.lr, o.batch, extra);
  };
  const char* critic_surrogate = "  surrogate { mode: ANCHORED reduction: MEAN }\n";
  return model(o.actor_model, 3, "TANH", 1, "") +
         model(o.q1_model, 4, "IDENTITY", 2, critic_surrogate) +
         model(o.q2_model, 4, "IDENTITY", 3, critic_surrogate);
}

namespace {

constexpr int kObs = Pendulum::kObservationDim;
constexpr int kAct = 1;
constexpr double kActionScale = Pendulum::kMaxTorque;

double CpuSeconds() {
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
         1e-6 * static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec);
}

// [left | right], row by row.
model::Matrix Concat(const model::Matrix& left, const model::Matrix& right) {
  model::Matrix out(left.rows(), left.cols() + right.cols());
  out.leftCols(left.cols()) = left;
  out.rightCols(right.cols()) = right;
  return out;
}

// GetParameters of each model, one round at a time, on a thread of its own:
// the main loop asks for a round and takes its answers at a later step,
// never waiting (the Python example's GetParameters futures).
class ParameterFetcher {
 public:
  ParameterFetcher(std::shared_ptr<client::TrainerClient> client, std::vector<std::string> models)
      : client_(std::move(client)), models_(std::move(models)), thread_([this] { Loop(); }) {}

  ~ParameterFetcher() {
    {
      absl::MutexLock lock(&mu_);
      stop_ = true;
    }
    thread_.join();
  }

  // If a round has answered, moves its parameters (one per model, in the
  // constructor's order) into *out and returns true; starts the next round
  // unless one is running. The round's error, if it failed, except
  // UNAVAILABLE (the trainer is away): that round is skipped (false) and
  // counted in *skipped.
  absl::StatusOr<bool> TakeAndRequest(std::vector<client::Parameters>* out, int64_t* skipped) {
    absl::MutexLock lock(&mu_);
    bool took = false;
    if (answered_) {
      answered_ = false;
      if (absl::IsUnavailable(status_)) {
        ++*skipped;
      } else {
        DELTASERVE_RETURN_IF_ERROR(status_);
        *out = std::move(answers_);
        took = true;
      }
    }
    if (!requested_ && !running_) requested_ = true;
    return took;
  }

  // Waits for a running or requested round; its error, if any (UNAVAILABLE
  // too: the run ends with the trainer away).
  absl::Status Drain() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ParameterFetcher* f)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) { return !f->requested_ && !f->running_; },
        this));
    return status_;
  }

 private:
  void Loop() {
    while (true) {
      {
        absl::MutexLock lock(&mu_);
        mu_.Await(absl::Condition(
            +[](ParameterFetcher* f)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(f->mu_) { return f->requested_ || f->stop_; },
            this));
        if (stop_) return;
        requested_ = false;
        running_ = true;
      }
      std::vector<client::Parameters> answers;
      absl::Status status;
      for (const std::string& model : models_) {
        absl::StatusOr<client::Parameters> p = client_->GetParameters(model);
        if (!p.ok()) {
          status = p.status();
          break;
        }
        answers.push_back(*std::move(p));
      }
      absl::MutexLock lock(&mu_);
      answers_ = std::move(answers);
      status_ = status;
      answered_ = true;
      running_ = false;
    }
  }

  const std::shared_ptr<client::TrainerClient> client_;
  const std::vector<std::string> models_;
  absl::Mutex mu_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  bool requested_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  bool answered_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
  std::vector<client::Parameters> answers_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // last: started once everything above exists
};

// One network the client computes with: its model, its spec's Mlp, the
// newest fetched weights, the target network and its version bookkeeping.
struct Network {
  std::string name;
  std::unique_ptr<model::Mlp> mlp;
  std::vector<float> params;  // newest fetched
  std::vector<float> target;  // Polyak average
  uint64_t version = 0;       // newest version an answer named (what submissions carry)
};

class Learner {
 public:
  explicit Learner(const Td3Options& options)
      : o_(options),
        rng_(options.seed * 0x9E3779B97F4A7C15ULL + 1),
        env_(options.seed),
        buffer_(
            options.buffer_capacity > 0 ? options.buffer_capacity : static_cast<int>(options.steps),
            kObs, kAct),
        window_(static_cast<size_t>(options.window)) {}

  absl::Status Connect() {
    client::ClientOptions client_options;
    client_options.security = o_.security;
    client_options.timeout = absl::Seconds(60);
    DELTASERVE_ASSIGN_OR_RETURN(client_, client::TrainerClient::Connect(o_.server, client_options));
    nets_[0].name = o_.actor_model;
    nets_[1].name = o_.q1_model;
    nets_[2].name = o_.q2_model;
    // Check all three before changing any.
    for (int k = 0; k < 3; ++k) {
      Network& net = nets_[k];
      DELTASERVE_ASSIGN_OR_RETURN(const deltaserve::v1::ModelInfo info,
                                  client_->GetModelInfo(net.name));
      const int want_in = k == 0 ? kObs : kObs + kAct;
      const char* role = k == 0 ? "the actor" : "a critic";
      if (static_cast<int>(info.spec().input_dim()) != want_in ||
          static_cast<int>(info.output_dim()) != 1) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "model '%s' is %d -> %d; TD3 on Pendulum needs %s of %d inputs%s and 1 output",
            net.name, info.spec().input_dim(), info.output_dim(), role, want_in,
            k == 0 ? " (the observation)" : " (observation and action)"));
      }
      if (k > 0 && (info.spec().surrogate().mode() != deltaserve::v1::SurrogateConfig::ANCHORED ||
                    info.spec().surrogate().reduction() != deltaserve::v1::SurrogateConfig::MEAN)) {
        return absl::FailedPreconditionError(absl::StrFormat(
            "critic '%s' needs surrogate { mode: ANCHORED reduction: MEAN } (the client sends the "
            "TD target as the acted output with delta 0), got mode %s reduction %s",
            net.name, deltaserve::v1::SurrogateConfig::Mode_Name(info.spec().surrogate().mode()),
            deltaserve::v1::SurrogateConfig::Reduction_Name(info.spec().surrogate().reduction())));
      }
      DELTASERVE_ASSIGN_OR_RETURN(model::MlpSpec spec, wire::MlpSpecFromProto(info.spec()));
      DELTASERVE_ASSIGN_OR_RETURN(model::Mlp mlp, model::Mlp::Create(std::move(spec)));
      net.mlp = std::make_unique<model::Mlp>(std::move(mlp));
    }
    std::mt19937_64 init_rng(o_.seed * 1000003ULL + 7);
    for (Network& net : nets_) {
      std::vector<int> units;
      for (const model::LayerSpec& layer : net.mlp->spec().layers) units.push_back(layer.units);
      if (o_.import_initial_weights) {
        net.params = TorchDefaultInit(init_rng, net.mlp->input_dim(), units);
        DELTASERVE_ASSIGN_OR_RETURN(net.version, client_->ImportParameters(net.name, net.params));
      } else {
        DELTASERVE_ASSIGN_OR_RETURN(client::Parameters p, client_->GetParameters(net.name));
        net.params = std::move(p.parameters);
        net.version = p.version;
      }
      net.target = net.params;
    }
    DELTASERVE_ASSIGN_OR_RETURN(session_, client_->OpenSession(SessionInFlight()));
    fetcher_ = std::make_unique<ParameterFetcher>(
        client_, std::vector<std::string>{nets_[0].name, nets_[1].name, nets_[2].name});
    return absl::OkStatus();
  }

  // Creates the learning-curve CSV (before Connect changes any model).
  absl::Status OpenCsv() {
    if (o_.csv.empty()) return absl::OkStatus();
    csv_ = std::fopen(o_.csv.c_str(), "w");
    if (csv_ == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("cannot write the CSV file ", o_.csv));
    }
    std::fputs("episode,env_steps,wall_seconds,return,average\n", csv_);
    return absl::OkStatus();
  }

  ~Learner() {
    if (csv_ != nullptr) std::fclose(csv_);
  }

  absl::StatusOr<Td3Result> Run() {
    std::FILE* const csv = csv_;
    const auto start = std::chrono::steady_clock::now();
    const double cpu_start = CpuSeconds();
    const auto wall = [&] {
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    };
    absl::Status status = Loop([&](int64_t steps, double episode_return) {
      result_.returns.push_back(episode_return);
      window_.Add(episode_return);
      const double t = wall();
      const int episode = static_cast<int>(result_.returns.size());
      if (csv != nullptr) {
        std::fprintf(csv, "%d,%lld,%.3f,%.3f,%.3f\n", episode, static_cast<long long>(steps), t,
                     episode_return, window_.mean());
        std::fflush(csv);
      }
      if (o_.print_every > 0 && episode % o_.print_every == 0) {
        Report("episode %d  steps %d  wall %.1fs  return %.1f  avg%d %.1f\n", episode, steps, t,
               episode_return, o_.window, window_.mean());
      }
      if (o_.on_episode) o_.on_episode(episode);
    });
    if (status.ok()) status = Drain();
    DELTASERVE_RETURN_IF_ERROR(status);
    result_.seconds = wall();
    result_.cpu_seconds = CpuSeconds() - cpu_start;
    result_.average = window_.mean();
    return result_;
  }

 private:
  // Every unanswered call keeps what it sent, to be sent again on a new
  // Session (Reconnect).
  struct CriticCall {
    int net;                             // 1 or 2
    client::DeltaSubmission submission;  // with its request_id
    std::future<absl::StatusOr<client::SubmitDeltaResult>> answer;
  };
  struct ActorChain {
    model::Matrix observations;  // s
    model::Matrix sa;            // the InputGradient's inputs: (s, s_a·π(s))
    std::future<absl::StatusOr<client::InputGradientResult>> gradient;
  };
  struct ActorCall {
    client::DeltaSubmission submission;  // with its request_id
    std::future<absl::StatusOr<client::SubmitDeltaResult>> answer;
  };

  // Unanswered calls one Session holds at most: more than the loop ever
  // leaves unanswered (2·in_flight + 2 critic submissions, in_flight + 1
  // actor steps), so issuing never blocks.
  size_t SessionInFlight() const { return 8 * static_cast<size_t>(o_.in_flight) + 8; }

  // The answer `*answer` (an element of the call deques) brings. While it is
  // UNAVAILABLE: Reconnect, which replaces every unanswered call's future,
  // this one's too, and wait again.
  template <typename T>
  absl::StatusOr<T> Await(std::future<absl::StatusOr<T>>* answer) {
    for (;;) {
      absl::StatusOr<T> got = answer->get();
      if (!absl::IsUnavailable(got.status())) {
        if (got.ok()) outage_start_.reset();
        return got;
      }
      DELTASERVE_RETURN_IF_ERROR(Reconnect(got.status()));
    }
  }

  // After an UNAVAILABLE answer `why`: backs off (sim/retry.h's initial and
  // largest waits), opens a new Session and sends every unanswered call
  // again on it, SubmitDeltas with their request_id. `why`, annotated, once
  // the trainer has been unreachable for retry_for.
  absl::Status Reconnect(const absl::Status& why) {
    if (o_.retry_for <= absl::ZeroDuration()) return why;
    const RetryPolicy policy;
    const absl::Time now = absl::Now();
    if (!outage_start_.has_value()) {
      outage_start_ = now;
      backoff_ = policy.initial_backoff;
    }
    const absl::Duration away = now - *outage_start_;
    if (away + backoff_ > o_.retry_for) {
      return absl::UnavailableError(absl::StrCat(
          "the trainer at ", o_.server, " has been unreachable for ", absl::FormatDuration(away),
          " (retry_for ", absl::FormatDuration(o_.retry_for), "); last: ", why.message()));
    }
    absl::SleepFor(backoff_);
    backoff_ = std::min(2 * backoff_, policy.max_backoff);
    session_.reset();  // Ends the old stream; whatever it left unanswered is sent below.
    DELTASERVE_ASSIGN_OR_RETURN(session_, client_->OpenSession(SessionInFlight()));
    ++result_.reconnects;
    for (CriticCall& call : critic_calls_) {
      call.answer = session_->SubmitDelta(call.submission, nets_[call.net].name);
    }
    for (ActorChain& chain : chains_) {
      chain.gradient =
          session_->InputGradient(chain.sa, model::Matrix::Ones(o_.batch, 1), nets_[1].name);
    }
    for (ActorCall& call : actor_calls_) {
      call.answer = session_->SubmitDelta(call.submission, nets_[0].name);
    }
    result_.resent_calls +=
        static_cast<int64_t>(critic_calls_.size() + chains_.size() + actor_calls_.size());
    return absl::OkStatus();
  }

  template <typename Episode>
  absl::Status Loop(Episode&& on_episode) {
    Pendulum::Observation obs = env_.observation();
    double episode_return = 0;
    std::uniform_real_distribution<double> uniform(-kActionScale, kActionScale);
    std::normal_distribution<double> normal(0.0, 1.0);  // scaled below: std 0 is allowed
    model::Matrix one(1, kObs);
    for (int64_t step = 0; step < o_.steps; ++step) {
      double action;
      if (step < o_.learning_starts) {
        action = uniform(rng_);
      } else {
        for (int c = 0; c < kObs; ++c) one(0, c) = obs[c];
        DELTASERVE_RETURN_IF_ERROR(nets_[0].mlp->Forward(nets_[0].params, one, ws_act_));
        const double mean = ws_act_.output()(0, 0) * kActionScale;
        action = std::clamp(mean + kActionScale * o_.exploration_noise * normal(rng_),
                            -kActionScale, kActionScale);
      }
      const Pendulum::StepResult r = env_.Step(action);
      const Pendulum::Observation next = env_.observation();
      const float a = static_cast<float>(action);
      // Pendulum never terminates: truncation keeps the bootstrap (terminated = 0).
      buffer_.Add(obs, {&a, 1}, r.reward, next, false);
      obs = next;
      episode_return += r.reward;
      ++result_.env_steps;
      if (r.truncated) {
        on_episode(step + 1, episode_return);
        // Reported with the actor's next SubmitDelta (the server's /metrics).
        pending_metrics_ = {{"episode_return", episode_return},
                            {"episode_length", static_cast<double>(Pendulum::kMaxSteps)}};
        obs = env_.Reset();
        episode_return = 0;
      }
      DELTASERVE_RETURN_IF_ERROR(PumpActor(/*keep=*/o_.in_flight));
      if (step < o_.learning_starts) continue;
      buffer_.Sample(rng_, o_.batch, &batch_);
      DELTASERVE_RETURN_IF_ERROR(CriticStep());
      if (step % o_.policy_delay == 0) {
        DELTASERVE_RETURN_IF_ERROR(ActorStep());
        DELTASERVE_RETURN_IF_ERROR(UpdateTargets());
      }
    }
    return absl::OkStatus();
  }

  // y from the targets, then SubmitDelta to q1 and q2 (ỹ = y, δ = 0).
  absl::Status CriticStep() {
    const Td3Batch& b = batch_;
    DELTASERVE_RETURN_IF_ERROR(
        nets_[0].mlp->Forward(nets_[0].target, b.next_observations, ws_target_actor_));
    const model::Matrix a2 = SmoothedTargetActions(ws_target_actor_.output(), rng_, o_.target_noise,
                                                   o_.target_noise_clip, kActionScale);
    const model::Matrix sa2 = Concat(b.next_observations, a2);
    DELTASERVE_RETURN_IF_ERROR(nets_[1].mlp->Forward(nets_[1].target, sa2, ws_q1_));
    DELTASERVE_RETURN_IF_ERROR(nets_[2].mlp->Forward(nets_[2].target, sa2, ws_q2_));
    const std::vector<float> y =
        Td3Targets(b.rewards, {ws_q1_.output().data(), b.rewards.size()},
                   {ws_q2_.output().data(), b.rewards.size()}, b.terminated, o_.gamma);
    client::DeltaSubmission s;
    s.inputs = Concat(b.observations, b.actions);
    s.acted_outputs = model::Matrix(Eigen::Map<const model::Matrix>(y.data(), o_.batch, 1));
    s.deltas = model::Matrix::Zero(o_.batch, 1);
    for (int k = 1; k <= 2; ++k) {
      s.version = nets_[k].version;
      s.request_id = client::NewRequestId();
      auto answer = session_->SubmitDelta(s, nets_[k].name);
      critic_calls_.push_back({k, s, std::move(answer)});
    }
    ++result_.critic_submits;
    while (critic_calls_.size() > static_cast<size_t>(2 * o_.in_flight)) {
      DELTASERVE_RETURN_IF_ERROR(TakeCritic());
    }
    return absl::OkStatus();
  }

  absl::Status TakeCritic() {
    DELTASERVE_ASSIGN_OR_RETURN(const client::SubmitDeltaResult answer,
                                Await(&critic_calls_.front().answer));
    Network& net = nets_[critic_calls_.front().net];
    critic_calls_.pop_front();
    net.version = std::max(net.version, answer.version);
    result_.max_critic_staleness = std::max(result_.max_critic_staleness, answer.staleness);
    return absl::OkStatus();
  }

  // InputGradient on q1 at (s, s_a·π(s)), π at the actor's newest fetched
  // weights; the actor's SubmitDelta follows in PumpActor.
  absl::Status ActorStep() {
    Network& actor = nets_[0];
    DELTASERVE_RETURN_IF_ERROR(actor.mlp->Forward(actor.params, batch_.observations, ws_pi_));
    const model::Matrix a = ws_pi_.output() * static_cast<float>(kActionScale);
    const model::Matrix sa = Concat(batch_.observations, a);
    ActorChain chain;
    chain.observations = batch_.observations;
    chain.sa = sa;
    chain.gradient = session_->InputGradient(sa, model::Matrix::Ones(o_.batch, 1), nets_[1].name);
    chains_.push_back(std::move(chain));
    return PumpActor(/*keep=*/o_.in_flight);
  }

  // Sends the actor's SubmitDelta for every InputGradient that has answered,
  // waits (oldest first) while more than `keep` actor steps (gradient or
  // submission) are unanswered, and takes the actor's answers that arrived.
  absl::Status PumpActor(int keep) {
    const auto ready = [](auto& future) {
      return future.wait_for(std::chrono::seconds(0)) == std::future_status::ready;
    };
    while (!chains_.empty() && ready(chains_.front().gradient)) {
      DELTASERVE_RETURN_IF_ERROR(SubmitActor());
    }
    while (chains_.size() + actor_calls_.size() > static_cast<size_t>(keep)) {
      if (actor_calls_.empty()) {
        DELTASERVE_RETURN_IF_ERROR(SubmitActor());
      } else {
        DELTASERVE_RETURN_IF_ERROR(TakeActor());
      }
    }
    while (!actor_calls_.empty() && ready(actor_calls_.front().answer)) {
      DELTASERVE_RETURN_IF_ERROR(TakeActor());
    }
    return absl::OkStatus();
  }

  // The oldest chain's gradient (waiting for it) → the actor's SubmitDelta,
  // δ = −s_a·∂Q1/∂a/N.
  absl::Status SubmitActor() {
    DELTASERVE_ASSIGN_OR_RETURN(const client::InputGradientResult g,
                                Await(&chains_.front().gradient));
    ActorChain chain = std::move(chains_.front());
    chains_.pop_front();
    client::DeltaSubmission s;
    s.inputs = std::move(chain.observations);
    s.deltas = Td3ActorDeltas(g.input_gradient.rightCols(kAct), kActionScale);
    s.version = nets_[0].version;
    s.metrics = std::move(pending_metrics_);
    s.request_id = client::NewRequestId();
    pending_metrics_.clear();
    auto answer = session_->SubmitDelta(s, nets_[0].name);
    actor_calls_.push_back({std::move(s), std::move(answer)});
    ++result_.actor_submits;
    return absl::OkStatus();
  }

  // The oldest actor SubmitDelta's answer (waiting for it).
  absl::Status TakeActor() {
    DELTASERVE_ASSIGN_OR_RETURN(const client::SubmitDeltaResult answer,
                                Await(&actor_calls_.front().answer));
    actor_calls_.pop_front();
    nets_[0].version = std::max(nets_[0].version, answer.version);
    result_.max_actor_staleness = std::max(result_.max_actor_staleness, answer.staleness);
    return absl::OkStatus();
  }

  // Takes the last GetParameters round if it has answered (and asks for the
  // next), then θ' ← (1 − τ)·θ' + τ·θ for each model, θ its newest weights.
  absl::Status UpdateTargets() {
    std::vector<client::Parameters> fetched;
    DELTASERVE_ASSIGN_OR_RETURN(const bool took,
                                fetcher_->TakeAndRequest(&fetched, &result_.skipped_fetch_rounds));
    if (took) {
      ++result_.fetch_rounds;
      for (int k = 0; k < 3; ++k) {
        if (fetched[k].parameters.size() != nets_[k].params.size()) {
          return absl::InternalError(absl::StrCat("server sent ", fetched[k].parameters.size(),
                                                  " parameters for '", nets_[k].name,
                                                  "', expected ", nets_[k].params.size()));
        }
        nets_[k].params = std::move(fetched[k].parameters);
        nets_[k].version = std::max(nets_[k].version, fetched[k].version);
      }
    }
    for (Network& net : nets_) Polyak(absl::MakeSpan(net.target), net.params, o_.tau);
    return absl::OkStatus();
  }

  absl::Status Drain() {
    while (!critic_calls_.empty()) DELTASERVE_RETURN_IF_ERROR(TakeCritic());
    DELTASERVE_RETURN_IF_ERROR(PumpActor(/*keep=*/0));
    return fetcher_->Drain();
  }

  const Td3Options o_;
  std::mt19937_64 rng_;
  Pendulum env_;
  ReplayBuffer buffer_;
  ReturnWindow window_;
  Td3Batch batch_;
  std::shared_ptr<client::TrainerClient> client_;
  std::unique_ptr<client::Session> session_;
  Network nets_[3];  // actor, q1, q2
  model::Mlp::Workspace ws_act_, ws_pi_, ws_target_actor_, ws_q1_, ws_q2_;
  std::deque<CriticCall> critic_calls_;
  std::deque<ActorChain> chains_;
  std::deque<ActorCall> actor_calls_;
  std::optional<absl::Time> outage_start_;  // First UNAVAILABLE since the last answer.
  absl::Duration backoff_;                  // Reconnect's next wait.
  std::map<std::string, double> pending_metrics_;
  std::FILE* csv_ = nullptr;
  Td3Result result_;
  // Last: destroyed first, joining its thread while the client is alive.
  std::unique_ptr<ParameterFetcher> fetcher_;
};

}  // namespace

absl::StatusOr<Td3Result> RunTd3(const Td3Options& options) {
  DELTASERVE_RETURN_IF_ERROR(ValidateTd3Options(options));
  Learner learner(options);
  DELTASERVE_RETURN_IF_ERROR(learner.OpenCsv());
  DELTASERVE_RETURN_IF_ERROR(learner.Connect());
  return learner.Run();
}

}  // namespace deltaserve::sim
