#include "deltaserve/server/core/forward_batcher.h"

#include <algorithm>
#include <optional>
#include <system_error>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "deltaserve/base/check.h"
#include "deltaserve/base/cpus.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/errors.h"

namespace deltaserve::server {

absl::StatusOr<std::unique_ptr<ForwardBatcher>> ForwardBatcher::Create(
    const Trainer* trainer, ForwardBatchingOptions options, ModelMetrics* metrics) {
  if (options.max_batch_rows == 0) {
    return absl::InvalidArgumentError("max_batch_rows: expected >= 1 (1 = no batching), got 0");
  }
  if (options.max_queue_delay < absl::ZeroDuration() ||
      options.max_queue_delay == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_queue_delay: expected a finite duration >= 0, got ",
                     absl::FormatDuration(options.max_queue_delay)));
  }
  return std::unique_ptr<ForwardBatcher>(new ForwardBatcher(trainer, options, metrics));
}

ForwardBatcher::ForwardBatcher(const Trainer* trainer, ForwardBatchingOptions options,
                               ModelMetrics* metrics)
    : trainer_(trainer),
      options_(options),
      metrics_(metrics),
      macs_per_row_(model::MultiplyAddsPerRow(trainer->mlp().spec())),
      max_gradient_threads_(options_.gradient_threads != 0
                                ? options_.gradient_threads
                                : static_cast<uint32_t>(base::UsableCpus())) {
  if (options_.max_batch_rows == 1) return;
  thread_ = std::thread([this] { Loop(); });
}

ForwardBatcher::~ForwardBatcher() { Stop(); }

bool ForwardBatcher::ComputesInline(Eigen::Index rows) const {
  // rows ≤ max_request_rows (< 2^32) and macs_per_row_ < 2^31: no overflow.
  return options_.max_batch_rows == 1 ||
         static_cast<uint64_t>(rows) * macs_per_row_ < options_.min_batch_macs;
}

bool ForwardBatcher::ComputesGradientInline(Eigen::Index rows) const {
  // The forward product and the backward one, which costs about as much;
  // x / k < m is x < k·m without the overflow of k·m.
  return options_.max_batch_rows == 1 ||
         2 * static_cast<uint64_t>(rows) * macs_per_row_ / kGradientInlineFactor <
             options_.min_batch_macs;
}

namespace {

// RESOURCE_EXHAUSTED for a full queue of `what` requests.
absl::Status QueueFull(absl::string_view model, absl::string_view what) {
  return absl::ResourceExhaustedError(
      absl::StrCat("model \"", model, "\": ", ForwardBatcher::kMaxQueuedRequests, " ", what,
                   " requests already waiting for the batcher; retry later"));
}

}  // namespace

absl::Status ForwardBatcher::Enqueue(model::Matrix inputs, Done done) {
  DELTASERVE_RETURN_IF_ERROR(trainer_->ValidateForwardInputs(inputs));
  if (ComputesInline(inputs.rows())) return ComputeHere(inputs, std::move(done));
  absl::MutexLock lock(&mu_);
  if (stopping_) return ShuttingDown(trainer_->name());
  if (queue_.size() >= kMaxQueuedRequests) return QueueFull(trainer_->name(), "Forward");
  queued_rows_ += static_cast<size_t>(inputs.rows());
  queue_.push_back(Request{std::move(inputs), std::move(done), absl::Now()});
  return absl::OkStatus();
}

absl::Status ForwardBatcher::EnqueueInputGradient(model::Matrix inputs, model::Matrix deltas,
                                                  GradientDone done) {
  DELTASERVE_RETURN_IF_ERROR(trainer_->ValidateInputGradientRequest(inputs, deltas));
  absl::ReleasableMutexLock lock(&gradient_mu_);
  if (gradients_stopping_) return ShuttingDown(trainer_->name());
  if (ComputesGradientInline(inputs.rows())) {
    lock.Release();
    std::move(done)(trainer_->InputGradient(inputs, deltas));
    return absl::OkStatus();
  }
  if (gradients_.size() >= kMaxQueuedRequests) return QueueFull(trainer_->name(), "InputGradient");
  gradients_.push_back(GradientRequest{std::move(inputs), std::move(deltas), std::move(done)});
  // A thread for every waiting gradient, up to the cap: one already started
  // and idle takes it, otherwise a new one does.
  if (gradients_.size() > idle_gradient_threads_ &&
      gradient_threads_.size() < max_gradient_threads_) {
    ++idle_gradient_threads_;
    try {
      gradient_threads_.emplace_back([this] { GradientLoop(); });
    } catch (const std::system_error& error) {  // Out of threads: the ones there are serve.
      --idle_gradient_threads_;
      if (gradient_threads_.empty()) {
        gradients_.pop_back();  // Refused: `done` is not called.
        return absl::ResourceExhaustedError(absl::StrCat(
            "model \"", trainer_->name(), "\": cannot start a thread for InputGradient requests (",
            error.what(), "); retry later"));
      }
    }
  }
  return absl::OkStatus();
}

absl::Status ForwardBatcher::ComputeHere(const model::Matrix& inputs, Done done) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return ShuttingDown(trainer_->name());
  }
  std::shared_ptr<const Snapshot> snapshot = trainer_->snapshot();
  ForwardResult result;
  Trainer::ForwardScratch scratch;
  absl::Status status = trainer_->ForwardAt(*snapshot, inputs, &result.outputs, scratch);
  if (status.ok()) status = Trainer::CheckForwardOutputs(result.outputs);
  if (!status.ok()) {
    std::move(done)(status);
    return absl::OkStatus();
  }
  if (metrics_ != nullptr) metrics_->RecordForwardBatch(static_cast<uint64_t>(inputs.rows()));
  result.version = snapshot->version;
  std::move(done)(std::move(result));
  return absl::OkStatus();
}

void ForwardBatcher::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  {
    absl::MutexLock lock(&gradient_mu_);
    gradients_stopping_ = true;  // From now on no gradient thread starts.
  }
  // Once; a concurrent caller waits here until the threads have exited.
  std::call_once(join_once_, [this] {
    std::vector<std::thread> gradient_threads;
    {
      absl::MutexLock lock(&gradient_mu_);
      gradient_threads.swap(gradient_threads_);
    }
    for (std::thread& thread : gradient_threads) thread.join();
    if (thread_.joinable()) thread_.join();
  });
}

size_t ForwardBatcher::queued() const {
  absl::MutexLock lock(&mu_);
  return queue_.size();
}

size_t ForwardBatcher::queued_gradients() const {
  absl::MutexLock lock(&gradient_mu_);
  return gradients_.size();
}

size_t ForwardBatcher::gradient_threads_started() const {
  absl::MutexLock lock(&gradient_mu_);
  return gradient_threads_.size();
}

void ForwardBatcher::Loop() {
  for (std::deque<Request> batch = TakeBatch(); !batch.empty(); batch = TakeBatch()) Run(batch);
}

std::deque<ForwardBatcher::Request> ForwardBatcher::TakeBatch() {
  std::deque<Request> batch;
  std::deque<Request> abandoned;
  {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](ForwardBatcher* b)
             ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) { return b->stopping_ || !b->queue_.empty(); },
        this));
    if (options_.max_queue_delay > absl::ZeroDuration() && !stopping_) {  // Step 2.
      const absl::Time deadline = queue_.front().arrival + options_.max_queue_delay;
      mu_.AwaitWithDeadline(absl::Condition(
                                +[](ForwardBatcher* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->mu_) {
                                  return b->stopping_ ||
                                         b->queued_rows_ >= b->options_.max_batch_rows;
                                },
                                this),
                            deadline);
    }
    if (stopping_) {
      abandoned.swap(queue_);
      queued_rows_ = 0;
    } else {  // Step 3: whole requests, in order, while they fit.
      size_t rows = 0;
      while (!queue_.empty()) {
        const size_t next = static_cast<size_t>(queue_.front().inputs.rows());
        if (!batch.empty() && rows + next > options_.max_batch_rows) break;
        rows += next;
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
      DELTASERVE_DCHECK(!batch.empty() && rows <= queued_rows_,
                        "a batch takes at least one request, and only queued rows");
      queued_rows_ -= rows;
      DELTASERVE_DCHECK(queue_.empty() == (queued_rows_ == 0));
    }
  }
  for (Request& request : abandoned) std::move(request.done)(ShuttingDown(trainer_->name()));
  return batch;
}

void ForwardBatcher::GradientLoop() {
  for (bool computed = false;; computed = true) {
    std::optional<GradientRequest> request;
    std::deque<GradientRequest> abandoned;
    {
      absl::MutexLock lock(&gradient_mu_);
      if (computed) ++idle_gradient_threads_;  // Counted as idle when started.
      gradient_mu_.Await(absl::Condition(
          +[](ForwardBatcher* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(b->gradient_mu_) {
            return b->gradients_stopping_ || !b->gradients_.empty();
          },
          this));
      if (gradients_stopping_) {
        abandoned.swap(gradients_);
      } else {
        request = std::move(gradients_.front());
        gradients_.pop_front();
        DELTASERVE_DCHECK(idle_gradient_threads_ > 0);
        --idle_gradient_threads_;
      }
    }
    if (!request.has_value()) {
      for (GradientRequest& gone : abandoned) std::move(gone.done)(ShuttingDown(trainer_->name()));
      return;
    }
    std::move(request->done)(trainer_->InputGradient(request->inputs, request->deltas));
  }
}

void ForwardBatcher::Run(std::deque<Request>& batch) {
  std::shared_ptr<const Snapshot> snapshot = trainer_->snapshot();  // One version for all.
  const model::Matrix* inputs = &batch.front().inputs;
  if (batch.size() > 1) {
    Eigen::Index rows = 0;
    for (const Request& request : batch) rows += request.inputs.rows();
    stacked_.resize(rows, inputs->cols());
    Eigen::Index row = 0;
    for (const Request& request : batch) {
      stacked_.middleRows(row, request.inputs.rows()) = request.inputs;
      row += request.inputs.rows();
    }
    inputs = &stacked_;
  }
  const absl::Status computed = trainer_->ForwardAt(*snapshot, *inputs, &outputs_, scratch_);
  if (metrics_ != nullptr && computed.ok()) {
    metrics_->RecordForwardBatch(static_cast<uint64_t>(inputs->rows()));
  }
  Eigen::Index row = 0;
  for (Request& request : batch) {  // Step 4.
    const Eigen::Index rows = request.inputs.rows();
    auto mine = outputs_.middleRows(row, rows);
    row += rows;
    absl::Status status = computed;
    if (status.ok()) status = Trainer::CheckForwardOutputs(mine);
    if (!status.ok()) {
      std::move(request.done)(status);
      continue;
    }
    std::move(request.done)(ForwardResult{mine, snapshot->version});
  }
}

}  // namespace deltaserve::server
