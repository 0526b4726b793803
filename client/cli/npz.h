// NumPy .npz files (a zip of .npy arrays, stored uncompressed, as np.savez
// writes them) and the mapping between a model's flat parameters and the
// tensors of the equivalent torch.nn.Sequential of Linear layers:
// layer i is module 2·i (an activation module follows each hidden layer),
// so its tensors are "<2i>.weight" [units × fan_in] and "<2i>.bias" [units]
// — what Sequential.state_dict() names them. `deltaserve-cli export` adds a
// scalar uint64 "version" and, for a model that normalises its inputs,
// float64 "normalizer.mean" [input_dim], "normalizer.var" [input_dim] and the
// scalar "normalizer.count".
#ifndef DELTASERVE_CLIENT_CLI_NPZ_H_
#define DELTASERVE_CLIENT_CLI_NPZ_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "deltaserve/model/normalization.h"
#include "deltaserve/v1/config.pb.h"

namespace deltaserve::client::cli {

// One array: float32 values, float64 values (`is_float64`), or a uint64
// scalar (shape {}, `scalar`).
struct NpyArray {
  std::string name;             // Without ".npy".
  std::vector<uint64_t> shape;  // {} for a scalar.
  std::vector<float> values;    // Row-major (C order); empty for a uint64 scalar.
  bool is_uint64_scalar = false;
  uint64_t scalar = 0;
  // Written as float64 from `doubles` (not `values`). Read: every float
  // array also has its exact values in `doubles`.
  bool is_float64 = false;
  std::vector<double> doubles = {};
};

// Writes `arrays` as an .npz (zip, stored) to `path`.
absl::Status WriteNpz(const std::string& path, const std::vector<NpyArray>& arrays);

// Reads an .npz written by WriteNpz or np.savez (not savez_compressed):
// arrays of dtype float32 or float64 (→ float32) in C order, and integer
// scalars. INVALID_ARGUMENT saying what is unsupported or malformed.
absl::StatusOr<std::vector<NpyArray>> ReadNpz(const std::string& path);

// The model's tensors, named as above, plus "version".
std::vector<NpyArray> TensorsFromParameters(const deltaserve::v1::ModelSpec& spec,
                                            const std::vector<float>& parameters, uint64_t version);

// "normalizer.mean", "normalizer.var" and "normalizer.count" (float64) for
// `statistics`.
std::vector<NpyArray> TensorsFromStatistics(const model::RunningMeanStd& statistics);

// The statistics in such tensors, with `config`'s clip and epsilon; null
// when there are none. INVALID_ARGUMENT naming the tensor that is missing
// (some but not all present) or of the wrong shape, or when the values are
// not valid statistics.
absl::StatusOr<std::shared_ptr<const model::RunningMeanStd>> StatisticsFromTensors(
    const deltaserve::v1::ModelSpec& spec, const std::vector<NpyArray>& arrays);

// The flat parameter buffer from such tensors (extra "version" and
// "normalizer.*" ignored).
// INVALID_ARGUMENT naming the tensor that is missing, unexpected, or of the
// wrong shape.
absl::StatusOr<std::vector<float>> ParametersFromTensors(const deltaserve::v1::ModelSpec& spec,
                                                         const std::vector<NpyArray>& arrays);

}  // namespace deltaserve::client::cli

#endif  // DELTASERVE_CLIENT_CLI_NPZ_H_
