// DELTASERVE_RETURN_IF_ERROR and DELTASERVE_ASSIGN_OR_RETURN for absl::Status /
// absl::StatusOr, which Abseil 20220623 does not provide. Prefixed so that
// they never collide with a consumer's own RETURN_IF_ERROR.
#ifndef DELTASERVE_BASE_STATUS_MACROS_H_
#define DELTASERVE_BASE_STATUS_MACROS_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"

// Returns `expr` from the enclosing function if it is not OK.
#define DELTASERVE_RETURN_IF_ERROR(expr)      \
  do {                                        \
    const ::absl::Status _ds_status = (expr); \
    if (!_ds_status.ok()) return _ds_status;  \
  } while (false)

#define DELTASERVE_STATUS_CONCAT_INNER_(a, b) a##b
#define DELTASERVE_STATUS_CONCAT_(a, b) DELTASERVE_STATUS_CONCAT_INNER_(a, b)

// `DELTASERVE_ASSIGN_OR_RETURN(auto x, MakeX());` declares x from an OK StatusOr, or
// returns its status from the enclosing function.
#define DELTASERVE_ASSIGN_OR_RETURN(lhs, rexpr) \
  DELTASERVE_ASSIGN_OR_RETURN_IMPL_(DELTASERVE_STATUS_CONCAT_(_ds_statusor_, __LINE__), lhs, rexpr)

#define DELTASERVE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                      \
  if (!statusor.ok()) return std::move(statusor).status();      \
  lhs = std::move(statusor).value()

#endif  // DELTASERVE_BASE_STATUS_MACROS_H_
