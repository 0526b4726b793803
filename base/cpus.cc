#include "deltaserve/base/cpus.h"

#include <sched.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"

namespace deltaserve::base {
namespace {

// The affinity mask's CPUs; the host's if the mask cannot be read.
int AffinityCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  const long online = sysconf(_SC_NPROCESSORS_ONLN);
  return online > 0 ? static_cast<int>(online) : 1;
}

// The cgroup v2 path of this process ("0::/PATH" in /proc/self/cgroup), or
// nullopt on a cgroup v1 host.
std::optional<std::string> CgroupPath() {
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    absl::string_view rest = line;
    if (absl::ConsumePrefix(&rest, "0::")) return std::string(rest);
  }
  return std::nullopt;
}

}  // namespace

std::optional<int> CpusFromCgroupMax(absl::string_view cpu_max) {
  const std::vector<absl::string_view> parts =
      absl::StrSplit(absl::StripAsciiWhitespace(cpu_max), ' ', absl::SkipEmpty());
  int64_t quota = 0;
  int64_t period = 0;
  if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &quota) ||
      !absl::SimpleAtoi(parts[1], &period) || quota <= 0 || period <= 0) {
    return std::nullopt;  // "max PERIOD" among them: no quota.
  }
  const int64_t cpus = (quota + period - 1) / period;
  return static_cast<int>(std::min<int64_t>(cpus, INT32_MAX));
}

std::optional<int> CpusAllowedByCgroups(const std::string& root, std::string cgroup) {
  std::optional<int> cpus;
  // The cgroup and each one above it: a quota on any of them caps it (a
  // systemd slice, a pod's cgroup above its container's).
  while (!cgroup.empty() && cgroup != "/") {
    std::ifstream in(root + cgroup + "/cpu.max");
    std::string line;
    if (std::getline(in, line)) {
      if (std::optional<int> quota = CpusFromCgroupMax(line); quota.has_value()) {
        cpus = std::min(cpus.value_or(*quota), *quota);
      }
    }
    const size_t slash = cgroup.find_last_of('/');
    cgroup = slash == 0 || slash == std::string::npos ? "/" : cgroup.substr(0, slash);
  }
  return cpus;
}

int UsableCpus() {
  int cpus = AffinityCpus();
  if (std::optional<std::string> cgroup = CgroupPath(); cgroup.has_value()) {
    if (std::optional<int> quota = CpusAllowedByCgroups("/sys/fs/cgroup", *cgroup)) {
      cpus = std::min(cpus, *quota);
    }
  }
  return std::max(1, cpus);
}

}  // namespace deltaserve::base
