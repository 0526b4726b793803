// Certificates for the TLS tests, made in the test with the openssl command
// (Debian's openssl package; scripts/install_deps.sh installs it): a CA, and
// leaf certificates it signs for the server (SAN localhost, 127.0.0.1, ::1)
// or for a client. ECDSA P-256, valid for a day. A failing openssl command
// fails the test with its output; nothing is skipped.
#ifndef DELTASERVE_TESTS_SECURITY_TEST_PKI_H_
#define DELTASERVE_TESTS_SECURITY_TEST_PKI_H_

#include <sys/stat.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace deltaserve::testing {

// Runs `command` with sh; fails the test (with the output) unless it exits 0.
inline void RunOrFail(const std::string& command) {
  FILE* pipe = popen((command + " 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr) << command;
  std::string output;
  char buffer[512];
  while (fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
  const int status = pclose(pipe);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << command << "\nfailed:\n" << output;
}

inline std::string ReadFileOrDie(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  EXPECT_TRUE(file.good()) << path;
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

inline void WriteFileOrDie(const std::string& path, const std::string& contents) {
  std::ofstream file(path, std::ios::binary | std::ios::trunc);
  file << contents;
  ASSERT_TRUE(file.good()) << path;
}

// A directory of certificates: <dir>/<name>.pem and <dir>/<name>.key.
class TestPki {
 public:
  explicit TestPki(const std::string& name)
      : dir_(absl::StrCat(::testing::TempDir(), "/pki_", name, "_", getpid())) {
    mkdir(dir_.c_str(), 0700);
  }

  std::string cert(const std::string& name) const { return absl::StrCat(dir_, "/", name, ".pem"); }
  std::string key(const std::string& name) const { return absl::StrCat(dir_, "/", name, ".key"); }
  const std::string& dir() const { return dir_; }

  // A self-signed CA `name`.
  void MakeCa(const std::string& name) {
    RunOrFail(absl::StrCat("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes",
                           " -days 1 -subj /CN=", name, " -keyout ", key(name), " -out ",
                           cert(name)));
  }

  // A certificate `name` signed by CA `ca`: for a server (SAN localhost,
  // 127.0.0.1, ::1 and `extra_dns`) or a client (clientAuth).
  void MakeLeaf(const std::string& ca, const std::string& name, bool server,
                const std::string& extra_dns = "") {
    const std::string ext = absl::StrCat(dir_, "/", name, ".ext");
    WriteFileOrDie(ext, server ? absl::StrCat("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
                                              extra_dns.empty() ? "" : ",DNS:" + extra_dns,
                                              "\nextendedKeyUsage=serverAuth\n")
                               : "extendedKeyUsage=clientAuth\n");
    const std::string csr = absl::StrCat(dir_, "/", name, ".csr");
    RunOrFail(absl::StrCat("openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes",
                           " -subj /CN=", name, " -keyout ", key(name), " -out ", csr));
    RunOrFail(absl::StrCat("openssl x509 -req -days 1 -in ", csr, " -CA ", cert(ca), " -CAkey ",
                           key(ca), " -CAcreateserial -extfile ", ext, " -out ", cert(name)));
  }

 private:
  std::string dir_;
};

}  // namespace deltaserve::testing

#endif  // DELTASERVE_TESTS_SECURITY_TEST_PKI_H_
