#include "deltaserve/proto/grpc_status.h"

#include <string>

#include "gtest/gtest.h"

namespace deltaserve {
namespace {

// Every canonical code, OK .. UNAUTHENTICATED.
constexpr int kCodes = static_cast<int>(absl::StatusCode::kUnauthenticated) + 1;

TEST(GrpcStatus, OkIsOkBothWays) {
  EXPECT_TRUE(ToGrpcStatus(absl::OkStatus()).ok());
  EXPECT_TRUE(FromGrpcStatus(grpc::Status::OK).ok());
}

TEST(GrpcStatus, EveryCodeAndItsMessageSurviveTheRoundTrip) {
  for (int code = 1; code < kCodes; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), "why: expected 3 columns");
    const grpc::Status wire = ToGrpcStatus(status);
    EXPECT_EQ(static_cast<int>(wire.error_code()), code);
    EXPECT_EQ(wire.error_message(), "why: expected 3 columns");
    EXPECT_EQ(FromGrpcStatus(wire), status) << code;
  }
}

TEST(GrpcStatus, TheNamedCodesMatch) {
  EXPECT_EQ(ToGrpcStatus(absl::InvalidArgumentError("x")).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(ToGrpcStatus(absl::UnauthenticatedError("x")).error_code(),
            grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::ABORTED, "x")).code(),
            absl::StatusCode::kAborted);
  EXPECT_EQ(FromGrpcStatus(grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED, "x")).code(),
            absl::StatusCode::kResourceExhausted);
}

TEST(CallError, EveryCodeAndItsMessageSurviveTheRoundTrip) {
  for (int code = 1; code < kCodes; ++code) {
    const absl::Status status(static_cast<absl::StatusCode>(code), "stale: 3 versions behind");
    v1::CallError error;
    ToCallError(status, &error);
    EXPECT_EQ(error.code(), code);
    EXPECT_EQ(error.message(), "stale: 3 versions behind");
    EXPECT_EQ(FromCallError(error), status) << code;
  }
}

TEST(CallError, CarriesTheSameNumberAsTheGrpcStatus) {
  v1::CallError error;
  ToCallError(absl::NotFoundError("no model \"m\""), &error);
  EXPECT_EQ(error.code(), static_cast<int>(grpc::StatusCode::NOT_FOUND));
}

}  // namespace
}  // namespace deltaserve
