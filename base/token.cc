#include "deltaserve/base/token.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace deltaserve::base {
namespace {

std::string ToHex(const uint8_t* bytes, size_t size) {
  return absl::BytesToHexString(absl::string_view(reinterpret_cast<const char*>(bytes), size));
}

}  // namespace

Sha256Digest Sha256(absl::string_view data) {
  Sha256Digest digest;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest.data());
  return digest;
}

std::string Sha256Hex(absl::string_view data) {
  const Sha256Digest digest = Sha256(data);
  return ToHex(digest.data(), digest.size());
}

absl::StatusOr<Sha256Digest> ParseSha256Hex(absl::string_view hex) {
  const bool well_formed = hex.size() == 64 && hex.find_first_not_of("0123456789abcdefABCDEF") ==
                                                   absl::string_view::npos;
  if (!well_formed) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected 64 hex digits (a SHA-256), got ", hex.size(), " characters"));
  }
  const std::string bytes = absl::HexStringToBytes(hex);
  Sha256Digest digest;
  for (size_t i = 0; i < digest.size(); ++i) digest[i] = static_cast<uint8_t>(bytes[i]);
  return digest;
}

bool DigestsEqual(const Sha256Digest& a, const Sha256Digest& b) {
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<std::string> NewToken() {
  uint8_t bytes[32];
  if (RAND_bytes(bytes, sizeof bytes) != 1) {
    return absl::InternalError("OpenSSL's RAND_bytes failed: no token made");
  }
  return ToHex(bytes, sizeof bytes);
}

}  // namespace deltaserve::base
