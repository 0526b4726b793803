#include "deltaserve/client/cli/matrix_text.h"

#include <sstream>

#include "gtest/gtest.h"

namespace deltaserve::client::cli {
namespace {

TEST(ParseCsvRow, ReadsFloatsIgnoringSpaces) {
  auto row = ParseCsvRow(" 1, 2.5 ,-3,1e-2");
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(*row, (std::vector<float>{1.0f, 2.5f, -3.0f, 0.01f}));
}

TEST(ParseCsvRow, NamesTheFirstValueThatIsNotANumber) {
  auto row = ParseCsvRow("1,x,3");
  EXPECT_EQ(row.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(row.status().message().find("value 2"), absl::string_view::npos) << row.status();
  EXPECT_EQ(ParseCsvRow("1,,3").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(ReadCsvMatrix, OneRowPerLineSkippingBlanksAndComments) {
  std::istringstream in("# header\n1,2\n\n3,4\n5,6\n");
  auto m = ReadCsvMatrix(in);
  ASSERT_TRUE(m.ok()) << m.status();
  ASSERT_EQ(m->rows(), 3);
  ASSERT_EQ(m->cols(), 2);
  EXPECT_EQ((*m)(1, 0), 3.0f);
  EXPECT_EQ((*m)(2, 1), 6.0f);
}

TEST(ReadCsvMatrix, RaggedRowsAndEmptyInputAreInvalid) {
  std::istringstream ragged("1,2\n3\n");
  auto m = ReadCsvMatrix(ragged);
  EXPECT_EQ(m.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(m.status().message().find("row 2 has 1"), absl::string_view::npos) << m.status();
  std::istringstream empty("\n# nothing\n");
  EXPECT_EQ(ReadCsvMatrix(empty).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FormatCsv, RoundTripsFloat32Exactly) {
  model::Matrix m(2, 2);
  m << 0.1f, -1.0f / 3.0f, 1e-7f, 12345.678f;
  std::istringstream in(FormatCsv(m));
  auto back = ReadCsvMatrix(in);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, m);
}

}  // namespace
}  // namespace deltaserve::client::cli
