// Probe of the TSan setup (tests/sanitizers/build_sanitized.sh builds it with
// and without tsan_absl_shim.cc and runs it).
// Built with -fsanitize=thread against Debian's Abseil:
//   tsan_probe        must run clean: the counter and `data` are properly
//                     synchronised by absl::Mutex / absl::Notification, which
//                     TSan only sees through tsan_absl_shim.cc;
//   tsan_probe race   must be reported: an unsynchronised counter, so that a
//                     TSan that reports nothing at all fails the check.
#include <cstring>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"

int counter = 0;

int main(int argc, char** argv) {
  const bool race = argc > 1 && std::strcmp(argv[1], "race") == 0;
  absl::Mutex mu;
  auto bump = [&] {
    for (int i = 0; i < 1000; ++i) {
      if (race) {
        ++counter;
      } else {
        absl::MutexLock lock(&mu);
        ++counter;
      }
    }
  };
  std::thread t(bump);
  bump();
  t.join();
  int data = 0;
  absl::Notification published;
  std::thread writer([&] {
    data = 5;
    published.Notify();
  });
  published.WaitForNotification();
  const int seen = data;
  writer.join();
  // A Condition that Abseil evaluates on the unlocking thread.
  bool ready = false;
  int payload = 0;
  std::thread producer([&] {
    absl::MutexLock lock(&mu);
    payload = 7;
    ready = true;
  });
  int consumed;
  {
    absl::MutexLock lock(&mu);
    mu.Await(absl::Condition(&ready));
    consumed = payload;
  }
  producer.join();
  {
    absl::MutexLock lock(&mu);  // After Await: the producer's writes are ordered before.
    ready = false;
  }
  return seen == 5 && consumed == 7 && counter > 0 ? 0 : 1;
}
