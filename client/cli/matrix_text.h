// CSV text ⇄ model::Matrix for deltaserve-cli: one sample per line, values
// separated by commas (spaces around them are ignored).
#ifndef DELTASERVE_CLIENT_CLI_MATRIX_TEXT_H_
#define DELTASERVE_CLIENT_CLI_MATRIX_TEXT_H_

#include <istream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "deltaserve/model/spec.h"

namespace deltaserve::client::cli {

// "1, 2.5,-3" → {1, 2.5, -3}. INVALID_ARGUMENT naming the first value that
// is empty or not a float.
absl::StatusOr<std::vector<float>> ParseCsvRow(absl::string_view line);

// Rows → [rows × cols] matrix. INVALID_ARGUMENT if there are no rows or the
// rows differ in length (names the first offending row, 1-based).
absl::StatusOr<model::Matrix> RowsToMatrix(const std::vector<std::vector<float>>& rows);

// Every non-blank line of `in` not starting with '#' is one row.
absl::StatusOr<model::Matrix> ReadCsvMatrix(std::istream& in);

// One line per row, values joined by ',' with %.9g (round-trips float32),
// each line ending in '\n'.
std::string FormatCsv(const model::Matrix& matrix);

}  // namespace deltaserve::client::cli

#endif  // DELTASERVE_CLIENT_CLI_MATRIX_TEXT_H_
