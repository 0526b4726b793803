// deltaserve_echo_server: the bare-gRPC floor for bench/transport. It serves
// deltaserve.v1.Trainer with the same messages and no math: Forward answers
// a zero matrix of [rows × --output_dim] at version 0, GetModelInfo a spec of
// --input_dim → --output_dim, and Session echoes each call as its answer (one
// read and one write in flight, like the real server).
//
// --handoff: the Session's SubmitDelta calls are answered by one worker
// thread instead of the reaction that read them, the way the real server
// hands them to its learner: the reaction queues the call and wakes the
// worker, which takes every queued call at once and starts each answer's
// write itself. No step, no metrics, no history: what the hand-off to a
// thread of the server's own, and back, costs on its own.
//
// Weight push floor: a "version" is a ParameterUpdate of --parameters zeros.
// Every SubmitDelta is a step: it serializes the next version ONCE and starts
// a write of those bytes on every WatchParameters stream that has none in
// flight (latest-wins, one write in flight per watcher, like the real
// server's WatchReactor, without its hub or notifier thread), then answers
// with the new version. GetParameters answers the current version's bytes.
// Flags as the real binary's where the bench needs them:
//
//   deltaserve_echo_server --listen=127.0.0.1:0 [--input_dim=4 --output_dim=2
//       --parameters=0 --handoff]
//
// prints "listening on ADDR" and serves until SIGTERM / SIGINT.
#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/base/address.h"
#include "deltaserve/base/cli.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/impl/codegen/proto_utils.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/async_stream.h"
#include "grpcpp/support/byte_buffer.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "host:port or [IPv6]:port (port 0: the OS picks)");
ABSL_FLAG(std::string, config, "", "ignored (the load tools pass it to every server)");
ABSL_FLAG(std::string, log_level, "", "ignored");
ABSL_FLAG(int, input_dim, 4, "GetModelInfo's input_dim");
ABSL_FLAG(int, output_dim, 2, "columns of every Forward answer");
ABSL_FLAG(int, parameters, 0, "length of every ParameterUpdate (WatchParameters, GetParameters)");
ABSL_FLAG(bool, session_cq, false,
          "serve the Session with gRPC's async API, from one thread that polls its own "
          "completion queue, reads each call, answers it and writes the answer");
ABSL_FLAG(bool, session_cq_only, false,
          "as --session_cq, in a server that serves nothing else (every other method unserved)");
ABSL_FLAG(bool, handoff, false,
          "answer the Session's SubmitDelta calls on a worker thread (the real server's hand-off "
          "to its learner, without the step)");

namespace deltaserve::bench {
namespace {

namespace v1 = ::deltaserve::v1;

void Answer(const v1::ForwardRequest& request, int output_dim, v1::ForwardResponse* response) {
  v1::Matrix* outputs = response->mutable_outputs();
  outputs->set_rows(request.inputs().rows());
  outputs->set_cols(static_cast<uint32_t>(output_dim));
  outputs->mutable_data()->Resize(static_cast<int>(request.inputs().rows()) * output_dim, 0.0f);
  response->set_version(0);
}

// A Session call's answer: a Forward's zeros, or an empty SubmitDelta answer.
v1::SessionResponse EchoAnswer(const v1::SessionRequest& request, int output_dim) {
  v1::SessionResponse response;
  response.set_id(request.id());
  if (request.has_forward()) {
    Answer(request.forward(), output_dim, response.mutable_forward());
  } else {
    response.mutable_submit();
  }
  return response;
}

class EchoSession;

// --handoff's worker: one thread, woken per call queued while it sleeps,
// answering everything queued at once (the learner's TakeBatch).
class HandoffWorker {
 public:
  HandoffWorker() : thread_([this] { Run(); }) {}
  ~HandoffWorker() ABSL_LOCKS_EXCLUDED(mu_) {
    {
      absl::MutexLock lock(&mu_);
      stopping_ = true;
    }
    thread_.join();
  }
  HandoffWorker(const HandoffWorker&) = delete;
  HandoffWorker& operator=(const HandoffWorker&) = delete;

  // `session` stays alive until it has been answered (EchoSession does not
  // finish with calls unanswered).
  void Queue(EchoSession* session, uint64_t id) ABSL_LOCKS_EXCLUDED(mu_) {
    absl::MutexLock lock(&mu_);
    queue_.emplace_back(session, id);
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::vector<std::pair<EchoSession*, uint64_t>> queue_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Session: a read always in flight (while fewer than kMaxQueued answers
// wait), one write in flight, answers in arrival order — the real server's
// shape without its work. With a worker, SubmitDelta calls are answered by
// it (Deliver) and the session finishes only once none is unanswered.
class EchoSession final : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  EchoSession(int output_dim, HandoffWorker* worker) : output_dim_(output_dim), worker_(worker) {
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      reading_ = false;
      if (!ok) {
        read_closed_ = true;
      } else if (worker_ != nullptr && request_.has_submit()) {
        ++unanswered_;
        worker_->Queue(this, request_.id());
      } else {
        queue_.push_back(EchoAnswer(request_, output_dim_));
      }
    });
  }
  void OnWriteDone(bool ok) override {
    Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      writing_ = false;
      queue_.pop_front();
      if (!ok) broken_ = read_closed_ = true, queue_.clear();
    });
  }
  void OnDone() override { delete this; }

  // The worker's answer to call `id` (any thread but a reaction's).
  void Deliver(uint64_t id) ABSL_LOCKS_EXCLUDED(mu_) {
    Advance([&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      --unanswered_;
      if (broken_) return;  // A write failed: the client is gone.
      v1::SessionResponse& response = queue_.emplace_back();
      response.set_id(id);
      response.mutable_submit();
    });
  }

 private:
  static constexpr size_t kMaxQueued = 128;

  struct Actions {
    const v1::SessionResponse* write = nullptr;
    bool read = false;
    bool finish = false;
  };

  // Runs update() under mu_, decides the next operations there and starts
  // them after releasing it; `this` is not touched after a Finish.
  void Advance(absl::FunctionRef<void()> update) ABSL_LOCKS_EXCLUDED(mu_) {
    Actions actions;
    {
      absl::MutexLock lock(&mu_);
      update();
      if (finished_) return;
      if (!writing_ && !queue_.empty()) {
        writing_ = true;
        actions.write = &queue_.front();
      }
      if (!reading_ && !read_closed_ && queue_.size() + unanswered_ < kMaxQueued) {
        reading_ = true;
        actions.read = true;
      }
      if (read_closed_ && !writing_ && queue_.empty() && !reading_ && unanswered_ == 0) {
        finished_ = true;
        actions.finish = true;
      }
    }
    if (actions.write != nullptr) StartWrite(actions.write);
    if (actions.read) StartRead(&request_);
    if (actions.finish) Finish(grpc::Status::OK);
  }

  const int output_dim_;
  HandoffWorker* const worker_;  // null: every call answered in its reaction
  v1::SessionRequest request_;   // Written by gRPC while reading_.
  absl::Mutex mu_;
  std::deque<v1::SessionResponse> queue_ ABSL_GUARDED_BY(mu_);
  size_t unanswered_ ABSL_GUARDED_BY(mu_) = 0;  // Queued to the worker.
  bool reading_ ABSL_GUARDED_BY(mu_) = true;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;  // A write failed.
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

void HandoffWorker::Run() {
  std::vector<std::pair<EchoSession*, uint64_t>> batch;
  for (;;) {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](HandoffWorker* self) ABSL_EXCLUSIVE_LOCKS_REQUIRED(self->mu_) {
            return self->stopping_ || !self->queue_.empty();
          },
          this));
      if (queue_.empty()) return;  // Stopping.
      batch.swap(queue_);
    }
    for (const auto& [session, id] : batch) session->Deliver(id);
    batch.clear();
  }
}

// One version on the wire: a serialized ParameterUpdate, shared (a
// ByteBuffer's copies share its slices) by every write of it.
struct Version {
  uint64_t number = 0;
  grpc::ByteBuffer bytes;
};

class PushWatch;

// The versions and the streams that watch them.
class PushFloor {
 public:
  explicit PushFloor(int parameters) {
    update_.set_model("echo");
    update_.mutable_parameters()->Resize(parameters, 0.0f);
    latest_ = Encode(0);
  }

  std::shared_ptr<const Version> latest() const ABSL_LOCKS_EXCLUDED(latest_mu_) {
    absl::MutexLock lock(&latest_mu_);
    return latest_;
  }

  // Encodes version latest + 1 once and pokes every watch; returns its number.
  uint64_t Step() ABSL_LOCKS_EXCLUDED(step_mu_, latest_mu_, watches_mu_);

  void Add(PushWatch* watch) ABSL_LOCKS_EXCLUDED(watches_mu_) {
    absl::MutexLock lock(&watches_mu_);
    watches_.push_back(watch);
  }
  void Remove(PushWatch* watch) ABSL_LOCKS_EXCLUDED(watches_mu_) {
    absl::MutexLock lock(&watches_mu_);
    watches_.erase(std::find(watches_.begin(), watches_.end(), watch));
  }

 private:
  std::shared_ptr<const Version> Encode(uint64_t number) ABSL_EXCLUSIVE_LOCKS_REQUIRED(step_mu_) {
    auto version = std::make_shared<Version>();
    version->number = number;
    update_.set_version(number);
    bool own_buffer = false;
    (void)grpc::SerializationTraits<v1::ParameterUpdate>::Serialize(update_, &version->bytes,
                                                                    &own_buffer);
    return version;
  }

  absl::Mutex step_mu_;  // One step at a time, in version order.
  v1::ParameterUpdate update_ ABSL_GUARDED_BY(step_mu_);
  mutable absl::Mutex latest_mu_;
  std::shared_ptr<const Version> latest_ ABSL_GUARDED_BY(latest_mu_);
  absl::Mutex watches_mu_;
  std::vector<PushWatch*> watches_ ABSL_GUARDED_BY(watches_mu_);
};

// One WatchParameters stream: writes the newest version whenever no write is
// in flight and it has not written that version yet. Only OnCancel and a
// failed write finish the stream, never Poke, so OnDone (which takes the
// floor's watches_mu_) never runs inside Step's loop over the watches.
class PushWatch final : public grpc::ServerWriteReactor<grpc::ByteBuffer> {
 public:
  explicit PushWatch(PushFloor* floor) : floor_(floor) {
    floor_->Add(this);
    Poke();  // The current version at once.
  }

  // Starts a write of the newest version if none is in flight and it is new.
  void Poke() ABSL_LOCKS_EXCLUDED(mu_) {
    const grpc::ByteBuffer* write = nullptr;
    {
      absl::MutexLock lock(&mu_);
      if (done_ || in_flight_ != nullptr) return;
      std::shared_ptr<const Version> latest = floor_->latest();
      if (sent_any_ && latest->number <= sent_) return;
      sent_any_ = true;
      sent_ = latest->number;
      in_flight_ = std::move(latest);
      write = &in_flight_->bytes;
    }
    StartWrite(write);  // Not under mu_: OnWriteDone may run inline.
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      in_flight_.reset();
      if (!ok || cancelled_) return FinishLocked();
    }
    Poke();
  }
  void OnCancel() override {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
    if (in_flight_ == nullptr) FinishLocked();
  }
  void OnDone() override {
    floor_->Remove(this);
    delete this;
  }

 private:
  // OnDone runs only after this reaction returns, so finishing under mu_
  // cannot re-enter it.
  void FinishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (done_) return;
    done_ = true;
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "watch cancelled by the client"));
  }

  PushFloor* const floor_;
  absl::Mutex mu_;
  std::shared_ptr<const Version> in_flight_ ABSL_GUARDED_BY(mu_);  // null: none
  bool sent_any_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

uint64_t PushFloor::Step() {
  absl::MutexLock step(&step_mu_);
  std::shared_ptr<const Version> next = Encode(latest()->number + 1);
  const uint64_t number = next->number;
  {
    absl::MutexLock lock(&latest_mu_);
    latest_ = std::move(next);
  }
  absl::MutexLock lock(&watches_mu_);
  for (PushWatch* watch : watches_) watch->Poke();
  return number;
}

using Trainer = v1::Trainer;
// Every method on the callback API: the plain echo and --handoff.
using EchoBase = Trainer::WithRawCallbackMethod_WatchParameters<
    Trainer::WithRawCallbackMethod_GetParameters<Trainer::CallbackService>>;
// The same with the Session on the async API (--session_cq).
using CqEchoBase = Trainer::WithCallbackMethod_GetModelInfo<Trainer::WithCallbackMethod_Forward<
    Trainer::WithCallbackMethod_SubmitDelta<Trainer::WithRawCallbackMethod_GetParameters<
        Trainer::WithRawCallbackMethod_WatchParameters<Trainer::WithAsyncMethod_Session<
            Trainer::WithCallbackMethod_InputGradient<Trainer::WithCallbackMethod_ListModels<
                Trainer::WithCallbackMethod_GetMetricsHistory<Trainer::Service>>>>>>>>>;

// Every method but the Session, on `Base`; sizes from the flags.
template <class Base>
class EchoMethods : public Base {
 public:
  EchoMethods()
      : input_dim_(absl::GetFlag(FLAGS_input_dim)),
        output_dim_(absl::GetFlag(FLAGS_output_dim)),
        push_(absl::GetFlag(FLAGS_parameters)) {}

  int output_dim() const { return output_dim_; }

  grpc::ServerUnaryReactor* GetModelInfo(grpc::CallbackServerContext* context,
                                         const v1::GetModelInfoRequest*,
                                         v1::ModelInfo* info) override {
    info->mutable_spec()->set_name("echo");
    info->mutable_spec()->set_input_dim(static_cast<uint32_t>(input_dim_));
    info->set_output_dim(static_cast<uint32_t>(output_dim_));
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* Forward(grpc::CallbackServerContext* context,
                                    const v1::ForwardRequest* request,
                                    v1::ForwardResponse* response) override {
    Answer(*request, output_dim_, response);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* SubmitDelta(grpc::CallbackServerContext* context,
                                        const v1::SubmitDeltaRequest*,
                                        v1::SubmitDeltaResponse* response) override {
    response->set_version(push_.Step());
    response->set_stepped(true);
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerUnaryReactor* GetParameters(grpc::CallbackServerContext* context,
                                          const grpc::ByteBuffer*,
                                          grpc::ByteBuffer* response) override {
    *response = push_.latest()->bytes;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerWriteReactor<grpc::ByteBuffer>* WatchParameters(grpc::CallbackServerContext*,
                                                              const grpc::ByteBuffer*) override {
    return new PushWatch(&push_);
  }

 protected:
  const int input_dim_;
  const int output_dim_;
  PushFloor push_;
};

class EchoService final : public EchoMethods<EchoBase> {
 public:
  // `worker` (null: none) must outlive the server.
  explicit EchoService(HandoffWorker* worker) : worker_(worker) {}

  grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse>* Session(
      grpc::CallbackServerContext*) override {
    return new EchoSession(output_dim_, worker_);
  }

 private:
  HandoffWorker* const worker_;  // null without --handoff
};

// --session_cq: the Session on gRPC's async API, every stream served by the
// one thread that polls `cq`: it reads a call, answers it and starts the
// answer's write itself, then asks for the next read (one read and one write
// in flight per stream, answers in arrival order, at most kMaxQueued
// waiting). What a learner that drives its own streams' I/O would cost.
//
// --session_cq_only: the same, in a server with no other method served (every
// method on the async API, only the Session asked for), so that the thread
// polling `cq` is the only one gRPC has to poll with.
template <class Service>
class CqSession {
 public:
  // Asks for the next Session stream; deletes itself when it has ended.
  CqSession(Service* service, int output_dim, grpc::ServerCompletionQueue* cq)
      : service_(service), output_dim_(output_dim), cq_(cq) {
    service_->RequestSession(&context_, &stream_, cq_, cq_, &accepted_);
  }

  // The event of `tag` (one of this stream's), with gRPC's `ok`.
  static void Handle(void* tag, bool ok) {
    auto* event = static_cast<Event*>(tag);
    event->session->On(event->kind, ok);
  }

 private:
  static constexpr size_t kMaxQueued = 128;
  enum class Kind { kAccepted, kRead, kWritten, kFinished };
  struct Event {
    CqSession* session;
    Kind kind;
  };

  void On(Kind kind, bool ok) {
    switch (kind) {
      case Kind::kAccepted:
        if (!ok) return delete this;                // The server is shutting down.
        new CqSession(service_, output_dim_, cq_);  // The next stream.
        Read();
        return;
      case Kind::kRead:
        reading_ = false;
        if (!ok) {
          read_closed_ = true;
        } else {
          queue_.push_back(EchoAnswer(request_, output_dim_));
        }
        break;
      case Kind::kWritten:
        writing_ = false;
        queue_.pop_front();
        if (!ok) read_closed_ = true, queue_.clear();
        break;
      case Kind::kFinished:
        return delete this;
    }
    if (!writing_ && !queue_.empty()) {
      writing_ = true;
      stream_.Write(queue_.front(), &written_);
    }
    if (!reading_ && !read_closed_ && queue_.size() < kMaxQueued) Read();
    if (read_closed_ && !reading_ && !writing_ && queue_.empty()) {
      stream_.Finish(grpc::Status::OK, &finished_);
    }
  }

  void Read() {
    reading_ = true;
    stream_.Read(&request_, &read_);
  }

  Service* const service_;
  const int output_dim_;
  grpc::ServerCompletionQueue* const cq_;
  grpc::ServerContext context_;
  grpc::ServerAsyncReaderWriter<v1::SessionResponse, v1::SessionRequest> stream_{&context_};
  v1::SessionRequest request_;
  std::deque<v1::SessionResponse> queue_;
  bool reading_ = false;
  bool writing_ = false;
  bool read_closed_ = false;
  Event accepted_{this, Kind::kAccepted};
  Event read_{this, Kind::kRead};
  Event written_{this, Kind::kWritten};
  Event finished_{this, Kind::kFinished};
};

// Every method on the async API; only the Session is ever asked for.
using CqOnlyService = Trainer::AsyncService;

// Serves `cq`'s Session streams of `service` until the queue shuts down.
template <class Service>
std::thread ServeSessions(Service* service, grpc::ServerCompletionQueue* cq) {
  new CqSession<Service>(service, absl::GetFlag(FLAGS_output_dim), cq);
  return std::thread([cq] {
    void* tag = nullptr;
    bool ok = false;
    while (cq->Next(&tag, &ok)) CqSession<Service>::Handle(tag, ok);
  });
}

int Main() {
  // SIGTERM / SIGINT are taken by sigwait below, not by a handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // Before gRPC starts threads.
  // Declared first: destroyed (its thread joined) after the server has shut
  // down, when no session can still queue a call.
  std::unique_ptr<HandoffWorker> worker;
  if (absl::GetFlag(FLAGS_handoff)) worker = std::make_unique<HandoffWorker>();
  const bool session_cq_only = absl::GetFlag(FLAGS_session_cq_only);
  const bool session_cq = absl::GetFlag(FLAGS_session_cq) || session_cq_only;
  std::unique_ptr<grpc::Service> service;
  if (session_cq_only) {
    service = std::make_unique<CqOnlyService>();
  } else if (session_cq) {
    service = std::make_unique<EchoMethods<CqEchoBase>>();
  } else {
    service = std::make_unique<EchoService>(worker.get());
  }
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  absl::StatusOr<deltaserve::base::Address> address = deltaserve::base::ParseAddress(listen);
  if (!address.ok()) {
    std::fprintf(stderr, "deltaserve_echo_server: --listen %s\n",
                 std::string(address.status().message()).c_str());
    return 2;
  }
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service.get());
  std::unique_ptr<grpc::ServerCompletionQueue> cq;
  if (session_cq) cq = builder.AddCompletionQueue();
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "deltaserve_echo_server: cannot listen on %s\n", listen.c_str());
    return 2;
  }
  std::thread session_thread;
  if (session_cq_only) {
    session_thread = ServeSessions(static_cast<CqOnlyService*>(service.get()), cq.get());
  } else if (session_cq) {
    session_thread = ServeSessions(static_cast<EchoMethods<CqEchoBase>*>(service.get()), cq.get());
  }
  address->port = static_cast<uint16_t>(port);
  std::printf("listening on %s\n", deltaserve::base::FormatAddress(*address).c_str());
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server->Shutdown(std::chrono::system_clock::now());
  if (session_cq) {
    cq->Shutdown();  // Next returns false once every event is drained.
    session_thread.join();
  }
  return 0;
}

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  deltaserve::base::DisableMutexDeadlockDetection();
  return deltaserve::bench::Main();
}
