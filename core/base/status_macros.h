// Small helpers for absl::Status plumbing used across core/.
#pragma once

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define FLEXGS_CONCAT_INNER_(a, b) a##b
#define FLEXGS_CONCAT_(a, b) FLEXGS_CONCAT_INNER_(a, b)

// Returns early from the enclosing function if `expr` (an absl::Status) is not OK.
#define FLEXGS_RETURN_IF_ERROR(expr)                 \
  do {                                               \
    ::absl::Status flexgs_status_ = (expr);          \
    if (!flexgs_status_.ok()) return flexgs_status_; \
  } while (0)

// `lhs = value of expr` for an absl::StatusOr<T> expression, or returns its error.
#define FLEXGS_ASSIGN_OR_RETURN(lhs, expr) \
  FLEXGS_ASSIGN_OR_RETURN_IMPL_(FLEXGS_CONCAT_(flexgs_statusor_, __LINE__), lhs, expr)
#define FLEXGS_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                  \
  if (!tmp.ok()) return tmp.status();                 \
  lhs = std::move(tmp).value()
