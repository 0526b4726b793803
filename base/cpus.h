// How many CPUs this process may use: the ones its affinity mask allows
// (taskset, a container's --cpuset-cpus, Slurm's CPU binding), capped by the
// cgroup v2 CPU quota of the cgroup it runs in (a container's --cpus, a
// Kubernetes CPU limit). std::thread::hardware_concurrency counts every CPU
// of the host instead, which is what a server sizing its thread pools must
// not use inside a container.
#ifndef DELTASERVE_BASE_CPUS_H_
#define DELTASERVE_BASE_CPUS_H_

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace deltaserve::base {

// At least 1. Reads /proc/self/cgroup and the cpu.max of its cgroup and of
// every cgroup above it (the smallest quota wins) at each call; a missing or
// unreadable file means no quota there.
int UsableCpus();

// The CPUs a cgroup v2 `cpu.max` line ("QUOTA PERIOD", e.g. "150000 100000")
// allows, rounded up: 2 for that line. nullopt for "max PERIOD" (no quota)
// or a line that is not two positive integers.
std::optional<int> CpusFromCgroupMax(absl::string_view cpu_max);

// The smallest quota among `cgroup` ("/a/b", as /proc/self/cgroup names it)
// and the cgroups above it, read from ROOT/a/b/cpu.max, ROOT/a/cpu.max
// (ROOT: /sys/fs/cgroup); nullopt if none has one.
std::optional<int> CpusAllowedByCgroups(const std::string& root, std::string cgroup);

}  // namespace deltaserve::base

#endif  // DELTASERVE_BASE_CPUS_H_
