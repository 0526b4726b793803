// Reader for the golden files written by tools/make_golden.py.
//
// A file is a list of records, one per line: `name token token ...`; lines
// starting with `#` are comments. `case NAME` starts a new case, so a file is
// a list of cases (a file without `case` lines is one case named "").
#ifndef DELTASERVE_TESTS_MODEL_GOLDEN_FILE_H_
#define DELTASERVE_TESTS_MODEL_GOLDEN_FILE_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::model::testing {

class GoldenCase {
 public:
  explicit GoldenCase(std::string name) : name_(std::move(name)) {}

  const std::string& name() const { return name_; }
  void Add(std::string key, std::vector<std::string> tokens) {
    records_[std::move(key)] = std::move(tokens);
  }

  // The tokens after `key`; NOT_FOUND if absent.
  absl::StatusOr<std::vector<std::string>> Tokens(const std::string& key) const;
  // `key v` → v.
  absl::StatusOr<double> Scalar(const std::string& key) const;
  // `key n v0 .. v(n-1)` → the n floats.
  absl::StatusOr<std::vector<float>> Vector(const std::string& key) const;
  // `key rows cols v...` → the row-major matrix.
  absl::StatusOr<Matrix> MatrixRecord(const std::string& key) const;

 private:
  std::string name_;
  std::map<std::string, std::vector<std::string>> records_;
};

// Parses the file at `path`; NOT_FOUND if it cannot be opened.
absl::StatusOr<std::vector<GoldenCase>> ReadGoldenFile(const std::string& path);

}  // namespace deltaserve::model::testing

#endif  // DELTASERVE_TESTS_MODEL_GOLDEN_FILE_H_
