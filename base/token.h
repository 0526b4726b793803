// Bearer tokens: how deltaserve makes them and how it stores them (as a
// SHA-256 digest, never the token itself). OpenSSL's libcrypto; shared by the
// server (checks tokens) and deltaserve-cli (makes them).
#ifndef DELTASERVE_BASE_TOKEN_H_
#define DELTASERVE_BASE_TOKEN_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace deltaserve::base {

using Sha256Digest = std::array<uint8_t, 32>;

// SHA-256 of `data`'s bytes.
Sha256Digest Sha256(absl::string_view data);

// The digest as 64 lowercase hex digits (the AuthConfig's token_sha256).
std::string Sha256Hex(absl::string_view data);

// Parses 64 hex digits (either case) into a digest; INVALID_ARGUMENT saying
// what was expected otherwise.
absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex);

// True iff a == b, in time independent of where they differ (CRYPTO_memcmp).
bool DigestsEqual(const Sha256Digest& a, const Sha256Digest& b);

// A new token: 32 bytes (256 bits) from OpenSSL's CSPRNG (RAND_bytes), as 64
// lowercase hex digits, so it is safe in metadata, files and shells.
// INTERNAL if the CSPRNG fails (never returns a weak token).
absl::StatusOr<std::string> NewToken();

}  // namespace deltaserve::base

#endif  // DELTASERVE_BASE_TOKEN_H_
