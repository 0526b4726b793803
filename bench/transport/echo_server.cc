// deltaserve_echo_server: the bare-gRPC floor for bench/transport. It serves
// deltaserve.v1.Trainer with the same messages and no math: Forward answers
// a zero matrix of [rows × --output_dim] at version 0, SubmitDelta an empty
// response, GetModelInfo a spec of --input_dim → --output_dim, and Session
// echoes each call as its answer (one read and one write in flight, like the
// real server). Flags as the real binary's where the bench needs them:
//
//   deltaserve_echo_server --listen=127.0.0.1:0 [--input_dim=4 --output_dim=2]
//
// prints "listening on ADDR" and serves until SIGTERM / SIGINT.
#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <deque>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"

ABSL_FLAG(std::string, listen, "127.0.0.1:0", "host:port (port 0: the OS picks)");
ABSL_FLAG(std::string, config, "", "ignored (the load tools pass it to every server)");
ABSL_FLAG(std::string, log_level, "", "ignored");
ABSL_FLAG(int, input_dim, 4, "GetModelInfo's input_dim");
ABSL_FLAG(int, output_dim, 2, "columns of every Forward answer");

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

// Session: a read always in flight (while fewer than kMaxQueued answers
// wait), one write in flight, answers in arrival order — the real server's
// shape without its work.
class EchoSession final : public grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse> {
 public:
  explicit EchoSession(int output_dim) : output_dim_(output_dim) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    reading_ = false;
    if (!ok) {
      read_closed_ = true;
    } else {
      v1::SessionResponse& response = queue_.emplace_back();
      response.set_id(request_.id());
      if (request_.has_forward()) {
        Answer(request_.forward(), output_dim_, response.mutable_forward());
      } else {
        response.mutable_submit();
      }
    }
    AdvanceLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    queue_.pop_front();
    if (!ok) read_closed_ = true, queue_.clear();
    AdvanceLocked();
  }
  void OnDone() override { delete this; }

 private:
  static constexpr size_t kMaxQueued = 128;

  // Only ever called from reactions (gRPC threads), so starting operations
  // under mu_ cannot re-enter it.
  void AdvanceLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (finished_) return;
    if (!writing_ && !queue_.empty()) {
      writing_ = true;
      StartWrite(&queue_.front());
    }
    if (!reading_ && !read_closed_ && queue_.size() < kMaxQueued) {
      reading_ = true;
      StartRead(&request_);
    }
    if (read_closed_ && !writing_ && queue_.empty() && !reading_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  const int output_dim_;
  v1::SessionRequest request_;
  absl::Mutex mu_;
  std::deque<v1::SessionResponse> queue_ ABSL_GUARDED_BY(mu_);
  bool reading_ ABSL_GUARDED_BY(mu_) = true;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool read_closed_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

class EchoService final : public v1::Trainer::CallbackService {
 public:
  EchoService(int input_dim, int output_dim) : input_dim_(input_dim), output_dim_(output_dim) {}

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
                                        v1::SubmitDeltaResponse*) override {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<v1::SessionRequest, v1::SessionResponse>* Session(
      grpc::CallbackServerContext*) override {
    return new EchoSession(output_dim_);
  }

 private:
  const int input_dim_;
  const int output_dim_;
};

int Main() {
  // SIGTERM / SIGINT are taken by sigwait below, not by a handler.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // Before gRPC starts threads.
  EchoService service(absl::GetFlag(FLAGS_input_dim), absl::GetFlag(FLAGS_output_dim));
  grpc::ServerBuilder builder;
  int port = 0;
  const std::string listen = absl::GetFlag(FLAGS_listen);
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "deltaserve_echo_server: cannot listen on %s\n", listen.c_str());
    return 2;
  }
  std::printf("listening on %s:%d\n", listen.substr(0, listen.rfind(':')).c_str(), port);
  std::fflush(stdout);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  server->Shutdown(std::chrono::system_clock::now());
  return 0;
}

}  // namespace
}  // namespace deltaserve::bench

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return deltaserve::bench::Main();
}
