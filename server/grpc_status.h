// The one place where absl::Status becomes a gRPC status: core/ speaks absl, the
// wire speaks grpc::StatusCode, and the canonical codes are numerically the same.
#pragma once

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace flexgs::server {

grpc::Status ToGrpcStatus(const absl::Status& status);

// Canonical upper-case name of a code ("OK", "NOT_FOUND", ...), for metric labels
// and logs.
const char* GrpcCodeName(grpc::StatusCode code);

}  // namespace flexgs::server
