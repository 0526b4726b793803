#include "deltaserve/client/cli/matrix_text.h"

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "deltaserve/base/status_macros.h"

namespace deltaserve::client::cli {

absl::StatusOr<std::vector<float>> ParseCsvRow(absl::string_view line) {
  std::vector<float> values;
  int column = 0;
  for (absl::string_view field : absl::StrSplit(line, ',')) {
    ++column;
    field = absl::StripAsciiWhitespace(field);
    float value = 0.0f;
    if (field.empty() || !absl::SimpleAtof(field, &value)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "value ", column, " (\"", field, "\") is not a number; expected e.g. 1,2.5,-3"));
    }
    values.push_back(value);
  }
  return values;
}

absl::StatusOr<model::Matrix> RowsToMatrix(const std::vector<std::vector<float>>& rows) {
  if (rows.empty()) return absl::InvalidArgumentError("no input rows");
  const size_t cols = rows.front().size();
  model::Matrix matrix(rows.size(), cols);
  for (size_t r = 0; r < rows.size(); ++r) {
    if (rows[r].size() != cols) {
      return absl::InvalidArgumentError(
          absl::StrCat("row ", r + 1, " has ", rows[r].size(), " values; row 1 has ", cols));
    }
    for (size_t c = 0; c < cols; ++c) matrix(r, c) = rows[r][c];
  }
  return matrix;
}

absl::StatusOr<model::Matrix> ReadCsvMatrix(std::istream& in) {
  std::vector<std::vector<float>> rows;
  std::string line;
  while (std::getline(in, line)) {
    const absl::string_view stripped = absl::StripAsciiWhitespace(line);
    if (stripped.empty() || stripped.front() == '#') continue;
    auto row = ParseCsvRow(stripped);
    if (!row.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("input row ", rows.size() + 1, ": ", row.status().message()));
    }
    rows.push_back(*std::move(row));
  }
  return RowsToMatrix(rows);
}

std::string FormatCsv(const model::Matrix& matrix) {
  std::string out;
  for (Eigen::Index r = 0; r < matrix.rows(); ++r) {
    for (Eigen::Index c = 0; c < matrix.cols(); ++c) {
      if (c > 0) out += ',';
      absl::StrAppendFormat(&out, "%.9g", matrix(r, c));
    }
    out += '\n';
  }
  return out;
}

}  // namespace deltaserve::client::cli
