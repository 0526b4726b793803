// Helpers shared by the server tests: specs and matrices from literals.
// No gRPC (the core tests link none); the gRPC fixture is loopback_server.h.
#ifndef DELTASERVE_TESTS_SERVER_TEST_UTIL_H_
#define DELTASERVE_TESTS_SERVER_TEST_UTIL_H_

#include <memory>
#include <string>
#include <vector>

#include "deltaserve/model/spec.h"
#include "deltaserve/server/core/snapshot.h"
#include "deltaserve/v1/config.pb.h"
#include "deltaserve/v1/trainer.pb.h"
#include "google/protobuf/text_format.h"
#include "gtest/gtest.h"

namespace deltaserve::server::testing {

// A message from protobuf text format; fails the test if it doesn't parse.
template <typename Message>
Message ParseText(const std::string& text) {
  Message message;
  EXPECT_TRUE(google::protobuf::TextFormat::ParseFromString(text, &message)) << text;
  return message;
}

// A snapshot of `version` with parameters {version, 2, 3}.
inline std::shared_ptr<const Snapshot> MakeSnapshot(uint64_t version) {
  auto s = std::make_shared<Snapshot>();
  s->version = version;
  s->parameters = {1.0f * version, 2.0f, 3.0f};
  return s;
}

inline deltaserve::v1::Matrix WireMatrix(uint32_t rows, uint32_t cols, std::vector<float> data) {
  deltaserve::v1::Matrix m;
  m.set_rows(rows);
  m.set_cols(cols);
  for (float v : data) m.add_data(v);
  return m;
}

inline model::Matrix CoreMatrix(int rows, int cols, const std::vector<float>& data) {
  model::Matrix m(rows, cols);
  for (int i = 0; i < rows * cols; ++i) m.data()[i] = data[i];
  return m;
}

}  // namespace deltaserve::server::testing

#endif  // DELTASERVE_TESTS_SERVER_TEST_UTIL_H_
