// What each load-tool thread does against the server: a Simulator is one
// simulator's loop (Forward, and after every K forwards one SubmitDelta of
// the K batches with δ = y − target(X) and the oldest version it acted on);
// a Watcher holds one WatchParameters stream open and checks what it
// receives. Every loop ends at the shared deadline or when Stop() is
// called; every call carries a deadline, so a thread never outlives
// `end + timeout` by much.
#ifndef DELTASERVE_BENCH_LOAD_WORKLOAD_H_
#define DELTASERVE_BENCH_LOAD_WORKLOAD_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "deltaserve/bench/load/latency_histogram.h"
#include "deltaserve/bench/load/rpc_stats.h"
#include "deltaserve/client/channel_security.h"
#include "deltaserve/v1/trainer.grpc.pb.h"
#include "grpcpp/client_context.h"

namespace deltaserve::load {

struct WorkloadOptions {
  std::string target;                // the server's address (local only, see IsLocalTarget)
  client::ChannelSecurity security;  // TLS and token of every connection
  std::string model;                 // "" = the default model
  int input_dim = 0;                 // from GetModelInfo
  int output_dim = 0;
  uint64_t parameter_count = 0;
  int rows = 1;                                // rows per Forward
  int submit_every = 4;                        // Forwards per SubmitDelta
  absl::Duration timeout = absl::Seconds(10);  // deadline of every unary call
  absl::Time end;                              // no new call starts after this
  std::string request_id_prefix;               // unique per run; "" = no request_id
  uint64_t seed = 1;
};

// The end of the run, shared by every thread, and every open watch's context
// so that Stop can cancel them. Thread-safe.
class RunControl {
 public:
  explicit RunControl(absl::Time end) : end_(end) {}
  // True once the deadline passed or Stop was called.
  bool Done() const { return stopped_.load() || absl::Now() >= end_; }
  // Ends the run now: Done() becomes true and open watches are cancelled.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps up to `duration`, less if the run ends first.
  void SleepFor(absl::Duration duration) const;
  // A watch's context, cancelled by Stop. Register returns false (and does
  // not register) if the run is already done. Unregister before destroying.
  bool Register(grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(mu_);
  void Unregister(grpc::ClientContext* context) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  const absl::Time end_;
  std::atomic<bool> stopped_{false};
  absl::Mutex mu_;
  std::set<grpc::ClientContext*> contexts_ ABSL_GUARDED_BY(mu_);
};

// When each model version was first reported by a SubmitDelta response that
// stepped, so a watcher can measure how long after that the push reached it
// ("watch lag"; ≤ 0 when the push beat the response, recorded as 0). Keeps
// the most recent kSlots versions; racy by design (a torn slot only loses or
// skews one sample). Thread-safe.
class VersionClock {
 public:
  static constexpr int kSlots = 4096;
  void Stepped(uint64_t version, absl::Time when);
  // Time since `version` was reported, or nullopt if it is not (or no longer)
  // known.
  std::optional<absl::Duration> Since(uint64_t version, absl::Time now) const;

 private:
  struct Slot {
    std::atomic<uint64_t> version{0};
    std::atomic<int64_t> unix_nanos{0};
  };
  std::array<Slot, kSlots> slots_;
};

// Everything the threads count, read by the reporter.
struct LoadStats {
  RpcStats forward;
  RpcStats submit;
  // One "call" per delivered update (latency = watch lag) and one per stream
  // that ended: CANCELLED at the end of the run is not counted.
  RpcStats watch;
  std::atomic<uint64_t> watch_streams{0};  // streams opened (first + reconnects)
  std::atomic<uint64_t> duplicates{0};     // SubmitDeltaResponse.duplicate = true
};

// An insecure channel of its own (a separate connection: local subchannel
// pool), with 64 MiB message limits like the client library's.
std::shared_ptr<grpc::Channel> NewConnection(const std::string& target,
                                             const client::ChannelSecurity& security);

// One simulator's loop until `control` is done. `client_id` picks its seed
// and request ids.
void RunSimulator(int client_id, const WorkloadOptions& options, RunControl* control,
                  VersionClock* clock, LoadStats* stats);

// One watcher's loop: reads updates, reconnects (after 100 ms) when a stream
// ends with an error before the run is done.
void RunWatcher(const WorkloadOptions& options, RunControl* control, const VersionClock* clock,
                LoadStats* stats);

}  // namespace deltaserve::load

#endif  // DELTASERVE_BENCH_LOAD_WORKLOAD_H_
