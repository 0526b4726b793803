#include "deltaserve/tests/model/golden_file.h"

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::model::testing {
namespace {

absl::StatusOr<double> ParseDouble(const std::string& key, const std::string& token) {
  // strtod rather than absl::SimpleAtod: it accepts "nan"/"inf" spellings too.
  char* end = nullptr;
  const double value = std::strtod(token.c_str(), &end);
  if (token.empty() || *end != '\0') {
    return absl::InvalidArgumentError(absl::StrCat(key, ": expected a number, got ", token));
  }
  return value;
}

absl::StatusOr<size_t> ParseCount(const std::string& key, const std::string& token) {
  size_t value = 0;
  if (!absl::SimpleAtoi(token, &value)) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": expected a count, got ", token));
  }
  return value;
}

absl::StatusOr<std::vector<float>> ParseFloats(const std::string& key,
                                               const std::vector<std::string>& tokens, size_t first,
                                               size_t count) {
  if (tokens.size() != first + count) {
    return absl::InvalidArgumentError(
        absl::StrCat(key, ": expected ", count, " values, got ", tokens.size() - first));
  }
  std::vector<float> values;
  values.reserve(count);
  for (size_t i = first; i < tokens.size(); ++i) {
    DELTASERVE_ASSIGN_OR_RETURN(double v, ParseDouble(key, tokens[i]));
    values.push_back(static_cast<float>(v));
  }
  return values;
}

}  // namespace

absl::StatusOr<std::vector<std::string>> GoldenCase::Tokens(const std::string& key) const {
  auto it = records_.find(key);
  if (it == records_.end()) {
    return absl::NotFoundError(absl::StrCat("case '", name_, "' has no record ", key));
  }
  return it->second;
}

absl::StatusOr<double> GoldenCase::Scalar(const std::string& key) const {
  DELTASERVE_ASSIGN_OR_RETURN(auto tokens, Tokens(key));
  if (tokens.size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat(key, ": expected one value"));
  }
  return ParseDouble(key, tokens[0]);
}

absl::StatusOr<std::vector<float>> GoldenCase::Vector(const std::string& key) const {
  DELTASERVE_ASSIGN_OR_RETURN(auto tokens, Tokens(key));
  if (tokens.empty()) return absl::InvalidArgumentError(absl::StrCat(key, ": empty"));
  DELTASERVE_ASSIGN_OR_RETURN(size_t count, ParseCount(key, tokens[0]));
  return ParseFloats(key, tokens, 1, count);
}

absl::StatusOr<Matrix> GoldenCase::MatrixRecord(const std::string& key) const {
  DELTASERVE_ASSIGN_OR_RETURN(auto tokens, Tokens(key));
  if (tokens.size() < 2) return absl::InvalidArgumentError(absl::StrCat(key, ": no shape"));
  DELTASERVE_ASSIGN_OR_RETURN(size_t rows, ParseCount(key, tokens[0]));
  DELTASERVE_ASSIGN_OR_RETURN(size_t cols, ParseCount(key, tokens[1]));
  DELTASERVE_ASSIGN_OR_RETURN(auto values, ParseFloats(key, tokens, 2, rows * cols));
  return Matrix(ConstMatrixMap(values.data(), static_cast<Eigen::Index>(rows),
                               static_cast<Eigen::Index>(cols)));
}

absl::StatusOr<std::vector<GoldenCase>> ReadGoldenFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open golden file ", path));
  std::vector<GoldenCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string key;
    words >> key;
    std::vector<std::string> tokens;
    for (std::string token; words >> token;) tokens.push_back(token);
    if (key == "case") {
      cases.emplace_back(tokens.empty() ? "" : tokens[0]);
      continue;
    }
    if (cases.empty()) cases.emplace_back("");
    cases.back().Add(std::move(key), std::move(tokens));
  }
  return cases;
}

}  // namespace deltaserve::model::testing
