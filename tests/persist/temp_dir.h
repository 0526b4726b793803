// A fresh directory per test (mkdtemp under TEST_TMPDIR or /tmp), removed
// with its contents when the object goes out of scope.
#ifndef DELTASERVE_TESTS_PERSIST_TEMP_DIR_H_
#define DELTASERVE_TESTS_PERSIST_TEMP_DIR_H_

#include <stdlib.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace deltaserve::testing {

class TempDir {
 public:
  TempDir() {
    std::string pattern = ::testing::TempDir() + "deltaserve-XXXXXX";
    char* made = ::mkdtemp(pattern.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << pattern;
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_PERSIST_TEMP_DIR_H_
