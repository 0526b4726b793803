#include "deltaserve/sim/runner.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <future>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::sim {

absl::string_view TransportName(Transport transport) {
  switch (transport) {
    case Transport::kSession:
      return "session";
    case Transport::kUnary:
      return "unary";
  }
  return "unknown";
}

absl::StatusOr<Transport> ParseTransport(absl::string_view name) {
  for (Transport transport : {Transport::kSession, Transport::kUnary}) {
    if (name == TransportName(transport)) return transport;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("transport: expected 'session' or 'unary', got '", name, "'"));
}

bool AbslParseFlag(absl::string_view text, Transport* transport, std::string* error) {
  absl::StatusOr<Transport> parsed = ParseTransport(text);
  if (!parsed.ok()) {
    *error = std::string(parsed.status().message());
    return false;
  }
  *transport = *parsed;
  return true;
}

std::string AbslUnparseFlag(Transport transport) { return std::string(TransportName(transport)); }

absl::StatusOr<std::unique_ptr<Runner>> Runner::Connect(RunnerOptions options) {
  // The runner's RetryPolicy (retry.h) is the simulators' only retry layer:
  // the client's own SubmitDelta retries would nest inside its backoff.
  if (options.submits_in_flight < 0 || options.submits_in_flight > kMaxSubmitsInFlight) {
    return absl::InvalidArgumentError(absl::StrCat("submits_in_flight: expected 0 to ",
                                                   kMaxSubmitsInFlight, ", got ",
                                                   options.submits_in_flight));
  }
  client::ClientOptions client_options;
  client_options.submit_retries = 0;
  client_options.security = options.security;
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<client::TrainerClient> client,
                              client::TrainerClient::Connect(options.server, client_options));
  RetryCounts counts;
  DELTASERVE_ASSIGN_OR_RETURN(deltaserve::v1::ModelInfo info,
                              WithBackoff<deltaserve::v1::ModelInfo>(options.retry, &counts, [&] {
                                return client->GetModelInfo(options.model);
                              }));
  std::unique_ptr<Runner> runner(new Runner(std::move(options), client, std::move(info)));
  runner->counts_.retries = counts;
  DELTASERVE_RETURN_IF_ERROR(runner->CheckShape());
  const RunnerOptions& o = runner->options_;
  Runner* r = runner.get();
  DELTASERVE_ASSIGN_OR_RETURN(
      runner->policy_,
      WithBackoff<std::unique_ptr<PolicySource>>(o.retry, &runner->counts_.retries, [&] {
        return MakePolicySource(
            o.actions, client, o.model,
            [r](const Eigen::Ref<const model::Matrix>& x) { return r->ForwardOnce(x); },
            o.replica_catch_up);
      }));
  return runner;
}

absl::Status Runner::CheckShape() const {
  if ((options_.input_dim == 0 || options_.input_dim == input_dim()) &&
      (options_.output_dim == 0 || options_.output_dim == output_dim())) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(
      absl::StrCat(options_.task, " needs a model with input_dim ", options_.input_dim, " and ",
                   options_.output_dim, " outputs; model '", info_.spec().name(),
                   "' has input_dim ", input_dim(), " and ", output_dim(), " outputs"));
}

absl::StatusOr<uint64_t> Runner::Act(const Eigen::Ref<const model::Matrix>& inputs,
                                     model::Matrix* outputs) {
  return WithBackoff<uint64_t>(options_.retry, &counts_.retries,
                               [&] { return policy_->Forward(inputs, outputs); });
}

absl::StatusOr<client::ForwardResult> Runner::Fetch(const Eigen::Ref<const model::Matrix>& inputs) {
  return WithBackoff<client::ForwardResult>(options_.retry, &counts_.retries,
                                            [&] { return ForwardOnce(inputs); });
}

Runner::~Runner() {
  for (std::future<SubmitOutcome>& answer : in_flight_) answer.wait();
}

absl::StatusOr<std::shared_ptr<client::Session>> Runner::SessionOrOpen() {
  absl::MutexLock lock(&session_mu_);
  if (session_ == nullptr) {
    // Several calls at once (pieces of a Forward, or submissions in flight
    // beside the simulator's Forward) need room on the stream; one at a time
    // needs one place.
    const int in_flight = options_.session_in_flight > 0 ? options_.session_in_flight
                          : options_.rows_per_forward > 0 || options_.submits_in_flight > 0
                              ? client::kDefaultSessionInFlight
                              : 1;
    DELTASERVE_ASSIGN_OR_RETURN(std::unique_ptr<client::Session> opened,
                                client_->OpenSession(in_flight));
    session_ = std::move(opened);
  }
  return session_;
}

void Runner::DropSession(const std::shared_ptr<client::Session>& ended) {
  absl::MutexLock lock(&session_mu_);
  if (session_ == ended) session_.reset();
}

absl::StatusOr<client::ForwardResult> Runner::ForwardOnce(
    const Eigen::Ref<const model::Matrix>& inputs) {
  if (options_.rows_per_forward > 0 && inputs.rows() > options_.rows_per_forward) {
    return ForwardInPieces(inputs);
  }
  if (options_.transport == Transport::kUnary) return client_->Forward(inputs, options_.model);
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<client::Session> session, SessionOrOpen());
  absl::StatusOr<client::ForwardResult> result = session->ForwardSync(inputs, options_.model);
  if (absl::IsUnavailable(result.status())) DropSession(session);
  return result;
}

absl::StatusOr<client::ForwardResult> Runner::ForwardInPieces(
    const Eigen::Ref<const model::Matrix>& inputs) {
  const Eigen::Index rows = inputs.rows();
  const Eigen::Index piece = options_.rows_per_forward;
  client::ForwardResult all;
  all.outputs.resize(rows, output_dim());
  all.version = UINT64_MAX;
  const auto take = [&](Eigen::Index first, absl::StatusOr<client::ForwardResult> answer) {
    if (!answer.ok()) return answer.status();
    all.outputs.middleRows(first, answer->outputs.rows()) = answer->outputs;
    all.version = std::min(all.version, answer->version);
    return absl::OkStatus();
  };
  if (options_.transport == Transport::kUnary) {
    for (Eigen::Index first = 0; first < rows; first += piece) {
      DELTASERVE_RETURN_IF_ERROR(
          take(first, client_->Forward(inputs.middleRows(first, std::min(piece, rows - first)),
                                       options_.model)));
    }
    return all;
  }
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<client::Session> session, SessionOrOpen());
  std::vector<std::future<absl::StatusOr<client::ForwardResult>>> answers;
  for (Eigen::Index first = 0; first < rows; first += piece) {
    answers.push_back(
        session->Forward(inputs.middleRows(first, std::min(piece, rows - first)), options_.model));
  }
  absl::Status status;
  const auto deadline =
      std::chrono::steady_clock::now() + absl::ToChronoMilliseconds(client_->options().timeout);
  for (size_t i = 0; i < answers.size(); ++i) {
    if (answers[i].wait_until(deadline) != std::future_status::ready) {
      status.Update(absl::DeadlineExceededError("Session Forward: no answer within the timeout"));
      continue;
    }
    status.Update(take(static_cast<Eigen::Index>(i) * piece, answers[i].get()));
  }
  if (absl::IsUnavailable(status)) DropSession(session);
  DELTASERVE_RETURN_IF_ERROR(status);
  return all;
}

absl::StatusOr<client::SubmitDeltaResult> Runner::SubmitOnce(
    const client::DeltaSubmission& submission) {
  if (options_.transport == Transport::kUnary)
    return client_->SubmitDelta(submission, options_.model);
  DELTASERVE_ASSIGN_OR_RETURN(std::shared_ptr<client::Session> session, SessionOrOpen());
  absl::StatusOr<client::SubmitDeltaResult> result =
      session->SubmitDeltaSync(submission, options_.model);
  if (absl::IsUnavailable(result.status())) DropSession(session);
  return result;
}

namespace {

template <typename T>
std::future<absl::StatusOr<T>> Ready(absl::StatusOr<T> value) {
  std::promise<absl::StatusOr<T>> promise;
  promise.set_value(std::move(value));
  return promise.get_future();
}

}  // namespace

std::future<absl::StatusOr<client::ForwardResult>> Runner::FetchAsync(
    const Eigen::Ref<const model::Matrix>& inputs) {
  if (options_.transport == Transport::kUnary) {
    return Ready(client_->Forward(inputs, options_.model));
  }
  absl::StatusOr<std::shared_ptr<client::Session>> session = SessionOrOpen();
  if (!session.ok()) return Ready<client::ForwardResult>(session.status());
  return (*session)->Forward(inputs, options_.model);
}

std::future<absl::StatusOr<client::SubmitDeltaResult>> Runner::SubmitDeltaAsync(
    const client::DeltaSubmission& submission) {
  if (options_.transport == Transport::kUnary) {
    return Ready(client_->SubmitDelta(submission, options_.model));
  }
  absl::StatusOr<std::shared_ptr<client::Session>> session = SessionOrOpen();
  if (!session.ok()) return Ready<client::SubmitDeltaResult>(session.status());
  return (*session)->SubmitDelta(submission, options_.model);
}

absl::StatusOr<client::Parameters> Runner::GetParameters() {
  return WithBackoff<client::Parameters>(options_.retry, &counts_.retries,
                                         [&] { return client_->GetParameters(options_.model); });
}

absl::StatusOr<client::SubmitDeltaResult> Runner::Submit(
    const client::ForwardResult& acted, const SubmissionBuilder& build,
    const std::map<std::string, double>& metrics) {
  const SubmissionBuilder with_metrics = [&](const client::ForwardResult& outputs) {
    return Complete(build, outputs, metrics);
  };
  SubmitRpcs rpcs;
  rpcs.submit = [&](const client::DeltaSubmission& submission) { return SubmitOnce(submission); };
  rpcs.refetch = [&](const model::Matrix& inputs) { return ForwardOnce(inputs); };
  DELTASERVE_ASSIGN_OR_RETURN(
      client::SubmitDeltaResult result,
      SubmitWithRetry(options_.retry, rpcs, with_metrics, acted, &counts_.retries));
  ++counts_.submits;
  if (result.stepped) ++counts_.steps;
  if (result.parameters != nullptr) policy_->Offer(result.parameters);
  return result;
}

absl::Status Runner::SubmitAsync(const client::ForwardResult& acted, SubmissionBuilder build,
                                 std::map<std::string, double> metrics) {
  if (options_.submits_in_flight == 0) {
    DELTASERVE_ASSIGN_OR_RETURN(const client::SubmitDeltaResult answer,
                                Submit(acted, build, metrics));
    answered_version_ = std::max(answered_version_, answer.version);
  } else {
    DELTASERVE_RETURN_IF_ERROR(TakeAnswers(options_.submits_in_flight - 1));
  }
  // A replica acts next with the weights of its own newest answer, not older
  // (fetched, or awaited from the push: options_.replica_catch_up). The push
  // trails the answer (the server paces each watch stream, 10 ms or more), and
  // a simulator that acted on meanwhile sent several δs from the same old
  // weights, which drove the demo's softmax to saturate (docs/demo.md).
  policy_->AwaitVersion(answered_version_, client_->options().timeout);
  if (options_.submits_in_flight == 0) return absl::OkStatus();
  in_flight_.push_back(std::async(
      std::launch::async,
      [this, acted, build = std::move(build), metrics = std::move(metrics)]() -> SubmitOutcome {
        const SubmissionBuilder with_metrics = [&](const client::ForwardResult& outputs) {
          return Complete(build, outputs, metrics);
        };
        // SubmitOnce and ForwardOnce touch only the client (thread-safe) and
        // the Session under session_mu_.
        SubmitRpcs rpcs;
        rpcs.submit = [this](const client::DeltaSubmission& submission) {
          return SubmitOnce(submission);
        };
        rpcs.refetch = [this](const model::Matrix& inputs) { return ForwardOnce(inputs); };
        SubmitOutcome outcome;
        outcome.result =
            SubmitWithRetry(options_.retry, rpcs, with_metrics, acted, &outcome.retries);
        return outcome;
      }));
  return absl::OkStatus();
}

absl::Status Runner::Drain() { return TakeAnswers(0); }

client::DeltaSubmission Runner::Complete(const SubmissionBuilder& build,
                                         const client::ForwardResult& acted,
                                         const std::map<std::string, double>& metrics) const {
  client::DeltaSubmission submission = build(acted);
  if (!metrics.empty()) submission.metrics = metrics;
  submission.return_parameters = policy_->WantsParameters();
  return submission;
}

void Runner::Take(client::SubmitDeltaResult& answer) {
  answered_version_ = std::max(answered_version_, answer.version);
  if (answer.parameters != nullptr) policy_->Offer(std::move(answer.parameters));
}

absl::Status Runner::TakeAnswers(int keep) {
  while (!in_flight_.empty() &&
         (static_cast<int>(in_flight_.size()) > keep ||
          in_flight_.front().wait_for(std::chrono::seconds(0)) == std::future_status::ready)) {
    SubmitOutcome outcome = in_flight_.front().get();
    in_flight_.pop_front();
    counts_.retries.refetches += outcome.retries.refetches;
    counts_.retries.backoffs += outcome.retries.backoffs;
    DELTASERVE_RETURN_IF_ERROR(outcome.result.status());
    ++counts_.submits;
    if (outcome.result->stepped) ++counts_.steps;
    Take(*outcome.result);
  }
  return absl::OkStatus();
}

}  // namespace deltaserve::sim
