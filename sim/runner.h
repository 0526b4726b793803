// Runner: what every simulator binary shares — the connection to one model
// on a deltaserve server, the source of its actions, the retry policy
// (sim/retry.h) on every RPC, and the counts its summary line reports.
//
//   DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<Runner> runner, Runner::Connect(options));
//   DELTASERVE_ASSIGN_OR_RETURN(uint64_t version, runner->Act(observations, &logits));
//   ...
//   DELTASERVE_ASSIGN_OR_RETURN(client::SubmitDeltaResult result, runner->Submit(acted, build));
//   // or, acting on while the answer travels (options.submits_in_flight):
//   DELTASERVE_RETURN_IF_ERROR(runner->SubmitAsync(acted, build));
//   ...
//   DELTASERVE_RETURN_IF_ERROR(runner->Drain());   // every answer in before the summary
//
// Every Forward and SubmitDelta goes over options.transport: a Session
// stream (default) or unary rpcs.
//
// Not thread-safe: one Runner per simulator thread. (SubmitAsync's
// submissions run on threads of their own; the Runner guards what they share.)
#ifndef DELTASERVE_SIM_RUNNER_H_
#define DELTASERVE_SIM_RUNNER_H_

#include <cstdint>
#include <deque>
#include <future>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/client/session.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/spec.h"
#include "deltaserve/sim/policy_source.h"
#include "deltaserve/sim/retry.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::sim {

// How Forward and SubmitDelta reach the server.
enum class Transport {
  kSession,  // "session": one Session stream (client/session.h), reopened after it ends
  kUnary,    // "unary": one rpc per call
};

// "session" or "unary".
absl::string_view TransportName(Transport transport);
// The Transport `name` names; INVALID_ARGUMENT naming the choices otherwise.
absl::StatusOr<Transport> ParseTransport(absl::string_view name);
// Abseil flag support: a Transport flag takes TransportName's values.
bool AbslParseFlag(absl::string_view text, Transport* transport, std::string* error);
std::string AbslUnparseFlag(Transport transport);

inline constexpr int kMaxSubmitsInFlight = 32;

struct RunnerOptions {
  std::string server = "127.0.0.1:50051";  // host:port or unix:PATH
  std::string model;                       // "" = the server's default model
  std::string actions = "roundtrip";       // PolicySource kind: roundtrip | replica
  // How a replica gets the weights of a SubmitDelta answer before acting on
  // (SubmitAsync): fetched by one round trip, or awaited from the push.
  ReplicaCatchUp replica_catch_up = ReplicaCatchUp::kAnswer;
  Transport transport = Transport::kSession;
  // Rows per Forward call when a simulator asks for several at once (its
  // --envs): 0 = all of them in one call; 1 = one call per environment
  // step. On a Session the calls are all in flight together (the server's
  // batcher can stack them again); unary sends them one after another.
  int rows_per_forward = 0;
  // Calls a Session may have unanswered at once (client/session.h); 0 = the
  // default: 1 unless rows_per_forward or submits_in_flight is set.
  // FetchAsync and SubmitDeltaAsync need more than 1 to overlap.
  int session_in_flight = 0;
  // SubmitAsync: at most this many submissions unanswered at once (each
  // with its retries, sim/retry.h); one more waits for the oldest answer.
  // 0 = SubmitAsync waits for its own answer, as Submit does. At most
  // kMaxSubmitsInFlight; more is INVALID_ARGUMENT from Connect.
  int submits_in_flight = 0;
  // The model shape the task needs, checked by Connect; 0 = any.
  int input_dim = 0;
  int output_dim = 0;
  std::string task = "this simulator";  // named in the shape error
  RetryPolicy retry;
  // TLS and token (client/channel_security.h; the --tls_* and --token_file
  // flags of client/security_flags.h).
  client::SecurityOptions security;
};

// What a run cost, for its summary line.
struct RunnerCounts {
  int submits = 0;  // batches accepted by SubmitDelta
  int steps = 0;    // of those, the ones that completed an optimizer step
  RetryCounts retries;
};

class Runner {
 public:
  // Connects to options.server, fetches the model's ModelInfo, checks its
  // shape and builds the PolicySource (a Replica fetches the parameters).
  // The RPCs retry as sim/retry.h says. FAILED_PRECONDITION if the shape is
  // not the one asked for, INVALID_ARGUMENT for an unknown actions kind,
  // otherwise the client's or the server's status.
  static absl::StatusOr<std::unique_ptr<Runner>> Connect(RunnerOptions options);

  // Waits for the submissions still in flight (their errors unreported:
  // call Drain first to see them).
  ~Runner();

  const deltaserve::v1::ModelInfo& info() const { return info_; }
  int input_dim() const { return static_cast<int>(info_.spec().input_dim()); }
  int output_dim() const { return static_cast<int>(info_.output_dim()); }
  const RunnerCounts& counts() const { return counts_; }

  // The outputs to act on for `inputs` ([rows × input_dim]) from the
  // PolicySource, written into *outputs; returns the version that made them.
  absl::StatusOr<uint64_t> Act(const Eigen::Ref<const model::Matrix>& inputs,
                               model::Matrix* outputs);

  // The outputs for `inputs` at the server's latest version (a Forward round
  // trip, whatever options.actions is).
  absl::StatusOr<client::ForwardResult> Fetch(const Eigen::Ref<const model::Matrix>& inputs);

  // Issued now, answered later: several calls in flight on the Session at
  // once, in the order issued. No retries (the caller decides what to do
  // with an error; Submit retries an ABORTED submission). With
  // Transport::kUnary the call is made at once and the future is ready.
  std::future<absl::StatusOr<client::ForwardResult>> FetchAsync(
      const Eigen::Ref<const model::Matrix>& inputs);
  std::future<absl::StatusOr<client::SubmitDeltaResult>> SubmitDeltaAsync(
      const client::DeltaSubmission& submission);
  // Counts a SubmitDeltaAsync answer as Submit counts its own.
  void CountSubmit(const client::SubmitDeltaResult& result) {
    ++counts_.submits;
    if (result.stepped) ++counts_.steps;
  }

  // The model's current parameters.
  absl::StatusOr<client::Parameters> GetParameters();

  // Sends build(acted) with SubmitWithRetry (ABORTED → Fetch the inputs
  // again and send build(fresh)); returns the accepted submission's answer.
  // `metrics` go with every attempt (DeltaSubmission::metrics; the server
  // keeps those of the one it applies). If the PolicySource wants them
  // (a replica with ReplicaCatchUp::kAnswer), the submission asks for the
  // newest parameters and the answer's are offered to it.
  absl::StatusOr<client::SubmitDeltaResult> Submit(
      const client::ForwardResult& acted, const SubmissionBuilder& build,
      const std::map<std::string, double>& metrics = {});

  // Submit without waiting for the answer: sends build(acted) on a thread of
  // its own (retried exactly as Submit) and returns once it is on its way,
  // first waiting for the oldest unanswered one if options.submits_in_flight
  // are. Answers are taken in order of sending, here and in Drain: each
  // counts in counts() as Submit's do; the first failed one (after its
  // retries) is returned by this call or the next, or by Drain, and the
  // simulator is expected to stop. `build` and `metrics` are copied; `build`
  // must own what it reads. Before returning it waits (up to the client's
  // timeout) until the PolicySource acts with the weights of the newest
  // answer taken, so a simulator on a replica runs ahead of the weights by
  // the submissions in flight and no more. With submits_in_flight 0 it is
  // Submit followed by that wait for its own answer's weights (without it a
  // replica acted on weights up to one watch pacing interval old, and the
  // CartPole demo's policy saturated on most seeds: docs/demo.md).
  absl::Status SubmitAsync(const client::ForwardResult& acted, SubmissionBuilder build,
                           std::map<std::string, double> metrics = {});
  // Waits for every submission in flight; the first failure among them, if any.
  absl::Status Drain();
  // Submissions sent by SubmitAsync whose answer has not been taken yet.
  int submits_in_flight() const { return static_cast<int>(in_flight_.size()); }

 private:
  // One SubmitAsync submission's end: its answer and what its retries cost.
  struct SubmitOutcome {
    absl::StatusOr<client::SubmitDeltaResult> result = absl::UnknownError("not sent");
    RetryCounts retries;
  };

  Runner(RunnerOptions options, std::shared_ptr<client::TrainerClient> client,
         deltaserve::v1::ModelInfo info)
      : options_(std::move(options)), client_(std::move(client)), info_(std::move(info)) {}

  absl::Status CheckShape() const;
  // One Forward / SubmitDelta over the chosen transport (no retries here). A
  // Session that ended (UNAVAILABLE) is dropped and the next call opens one.
  absl::StatusOr<client::ForwardResult> ForwardOnce(const Eigen::Ref<const model::Matrix>& inputs);
  // One call of at most rows_per_forward rows each; outputs stacked, the
  // oldest version of the answers.
  absl::StatusOr<client::ForwardResult> ForwardInPieces(
      const Eigen::Ref<const model::Matrix>& inputs);
  absl::StatusOr<client::SubmitDeltaResult> SubmitOnce(const client::DeltaSubmission& submission);
  // The open Session (opened now if there is none); shared with the
  // SubmitAsync threads. DropSession forgets `ended` if it is still the one.
  absl::StatusOr<std::shared_ptr<client::Session>> SessionOrOpen() ABSL_LOCKS_EXCLUDED(session_mu_);
  void DropSession(const std::shared_ptr<client::Session>& ended) ABSL_LOCKS_EXCLUDED(session_mu_);
  // Takes the answers in order of sending while more than `keep` are in
  // flight (waiting for them) or the oldest has one; counts them.
  absl::Status TakeAnswers(int keep);
  // `build`'s submission for `acted` with `metrics`, asking for the
  // parameters if the PolicySource wants them. Thread-safe.
  client::DeltaSubmission Complete(const SubmissionBuilder& build,
                                   const client::ForwardResult& acted,
                                   const std::map<std::string, double>& metrics) const;
  // A SubmitAsync answer taken: its version, and its parameters offered to
  // the PolicySource.
  void Take(client::SubmitDeltaResult& answer);

  const RunnerOptions options_;
  const std::shared_ptr<client::TrainerClient> client_;
  const deltaserve::v1::ModelInfo info_;
  std::unique_ptr<PolicySource> policy_;
  absl::Mutex session_mu_;
  // Transport::kSession: null until first use.
  std::shared_ptr<client::Session> session_ ABSL_GUARDED_BY(session_mu_);
  RunnerCounts counts_;
  uint64_t answered_version_ = 0;  // the newest version a taken answer reported
  // Last, so that it goes first: each future's destructor waits for its thread.
  std::deque<std::future<SubmitOutcome>> in_flight_;
};

}  // namespace deltaserve::sim

#endif  // DELTASERVE_SIM_RUNNER_H_
