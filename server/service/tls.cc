#include "deltaserve/server/service/tls.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/base/address.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/server/core/log.h"
#include "grpcpp/security/tls_certificate_provider.h"
#include "grpcpp/security/tls_credentials_options.h"

namespace deltaserve::server {
namespace {

constexpr char kKeyName[] = "key.pem";
constexpr char kCertName[] = "cert.pem";
constexpr char kCaName[] = "ca.pem";

struct BioDeleter {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Deleter {
  void operator()(X509* cert) const { X509_free(cert); }
};
struct KeyDeleter {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using Bio = std::unique_ptr<BIO, BioDeleter>;
using Cert = std::unique_ptr<X509, X509Deleter>;
using Key = std::unique_ptr<EVP_PKEY, KeyDeleter>;

Bio MemoryBio(const std::string& pem) {
  return Bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

absl::StatusOr<std::string> ReadPem(absl::string_view flag, const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, "=", path, ": cannot open"));
  }
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

// The certificates in a PEM bundle, in order; INVALID_ARGUMENT if none.
absl::StatusOr<std::vector<Cert>> ParseCertificates(absl::string_view flag, const std::string& path,
                                                    const std::string& pem) {
  std::vector<Cert> certs;
  Bio bio = MemoryBio(pem);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--", flag, "=", path, ": no PEM certificate (expected BEGIN CERTIFICATE)"));
  }
  return certs;
}

struct Pems {
  std::string cert, key, ca;
};

absl::StatusOr<Pems> ReadAndValidate(const TlsFiles& files) {
  if (files.cert_file.empty() || files.key_file.empty()) {
    return absl::InvalidArgumentError("TLS needs both --tls_cert_file and --tls_key_file");
  }
  Pems pems;
  DELTASERVE_ASSIGN_OR_RETURN(pems.cert, ReadPem("tls_cert_file", files.cert_file));
  DELTASERVE_ASSIGN_OR_RETURN(pems.key, ReadPem("tls_key_file", files.key_file));
  DELTASERVE_ASSIGN_OR_RETURN(std::vector<Cert> chain,
                              ParseCertificates("tls_cert_file", files.cert_file, pems.cert));
  Bio key_bio = MemoryBio(pems.key);
  Key key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key_file=", files.key_file, ": no unencrypted PEM private key (BEGIN PRIVATE KEY)"));
  }
  if (X509_check_private_key(chain.front().get(), key.get()) != 1) {
    return absl::InvalidArgumentError(absl::StrCat("--tls_key_file=", files.key_file,
                                                   " is not the key of the certificate in "
                                                   "--tls_cert_file=",
                                                   files.cert_file));
  }
  if (!files.client_ca_file.empty()) {
    DELTASERVE_ASSIGN_OR_RETURN(pems.ca, ReadPem("tls_client_ca_file", files.client_ca_file));
    DELTASERVE_RETURN_IF_ERROR(
        ParseCertificates("tls_client_ca_file", files.client_ca_file, pems.ca).status());
  }
  return pems;
}

absl::Status WriteFile(const std::string& path, const std::string& contents) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat(path, ": ", std::strerror(errno)));
  const ssize_t written = write(fd, contents.data(), contents.size());
  const bool ok = written == static_cast<ssize_t>(contents.size()) && fsync(fd) == 0;
  close(fd);
  if (!ok) return absl::InternalError(absl::StrCat(path, ": write failed"));
  return absl::OkStatus();
}

std::string GenerationDir(const std::string& dir, int generation) {
  return absl::StrCat(dir, "/gen-", generation);
}

void RemoveGeneration(const std::string& dir, int generation) {
  const std::string gen = GenerationDir(dir, generation);
  for (const char* name : {kKeyName, kCertName, kCaName}) unlink((gen + "/" + name).c_str());
  rmdir(gen.c_str());
}

}  // namespace

absl::StatusOr<std::unique_ptr<ServerTls>> ServerTls::Create(TlsFiles files) {
  DELTASERVE_RETURN_IF_ERROR(ReadAndValidate(files).status());
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/deltaserve-tls-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("cannot create a private directory for the TLS files (",
                                            pattern, "): ", std::strerror(errno),
                                            "; set TMPDIR to a writable directory"));
  }
  std::unique_ptr<ServerTls> tls(new ServerTls(std::move(files), pattern));
  {
    absl::MutexLock lock(&tls->mu_);
    DELTASERVE_RETURN_IF_ERROR(tls->Stage());
  }
  const std::string current = tls->dir_ + "/current/";
  auto provider = std::make_shared<grpc::experimental::FileWatcherCertificateProvider>(
      current + kKeyName, current + kCertName, tls->mutual() ? current + kCaName : "",
      kTlsRefreshSeconds);
  grpc::experimental::TlsServerCredentialsOptions options(provider);
  options.watch_identity_key_cert_pairs();
  if (tls->mutual()) {
    options.watch_root_certs();
    options.set_cert_request_type(GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
  }
  tls->credentials_ = grpc::experimental::TlsServerCredentials(options);
  LogInfo("TLS: serving ", tls->files_.cert_file,
          tls->mutual()
              ? absl::StrCat("; mutual TLS with clients signed by ", tls->files_.client_ca_file)
              : std::string());
  return tls;
}

ServerTls::ServerTls(TlsFiles files, std::string dir)
    : files_(std::move(files)), dir_(std::move(dir)) {}

ServerTls::~ServerTls() {
  absl::MutexLock lock(&mu_);
  unlink((dir_ + "/current").c_str());
  for (int g = 1; g <= generation_; ++g) RemoveGeneration(dir_, g);
  rmdir(dir_.c_str());
}

absl::Status ServerTls::Stage() {
  DELTASERVE_ASSIGN_OR_RETURN(Pems pems, ReadAndValidate(files_));
  const int next = generation_ + 1;
  const std::string gen = GenerationDir(dir_, next);
  if (mkdir(gen.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat(gen, ": ", std::strerror(errno)));
  }
  DELTASERVE_RETURN_IF_ERROR(WriteFile(absl::StrCat(gen, "/", kKeyName), pems.key));
  DELTASERVE_RETURN_IF_ERROR(WriteFile(absl::StrCat(gen, "/", kCertName), pems.cert));
  if (mutual()) DELTASERVE_RETURN_IF_ERROR(WriteFile(absl::StrCat(gen, "/", kCaName), pems.ca));
  // One rename switches key, certificate and CA together: gRPC never reads a
  // key from one generation and a certificate from another.
  const std::string link = dir_ + "/current";
  const std::string temp = link + ".new";
  unlink(temp.c_str());
  if (symlink(absl::StrCat("gen-", next).c_str(), temp.c_str()) != 0 ||
      rename(temp.c_str(), link.c_str()) != 0) {
    return absl::InternalError(absl::StrCat(link, ": ", std::strerror(errno)));
  }
  generation_ = next;
  // gRPC may still be reading the previous generation; the one before is done.
  if (next > 2) RemoveGeneration(dir_, next - 2);
  return absl::OkStatus();
}

absl::Status ServerTls::Reload() {
  absl::MutexLock lock(&mu_);
  DELTASERVE_RETURN_IF_ERROR(Stage());
  LogInfo("TLS: reloaded ", files_.cert_file, mutual() ? " and " + files_.client_ca_file : "");
  return absl::OkStatus();
}

absl::Status CheckListenExposure(absl::string_view listen_address, bool has_auth_file,
                                 bool allow_unauthenticated) {
  if (has_auth_file || allow_unauthenticated || base::IsLoopbackAddress(listen_address)) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "refusing to listen on ", listen_address,
      " without --auth_file: anyone who reaches it could rewrite the model. Pass "
      "--auth_file=FILE (and --tls_cert_file/--tls_key_file; see docs/security.md), listen on "
      "127.0.0.1 or unix:PATH, or pass --allow_unauthenticated to accept that risk"));
}

}  // namespace deltaserve::server
