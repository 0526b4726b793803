// Connects to the server at argv[1], runs one Forward of the default model and
// prints "consumer: version V, outputs R x C". Exit 1 on any error.
//
// It also has a base/status_macros.h and a RETURN_IF_ERROR of its own, as
// many projects do: both must be its own, whatever deltaserve's headers
// include (they are installed under include/deltaserve/ and prefix their
// macros).
#include <iostream>

#include "base/status_macros.h"
#include "deltaserve/base/status_macros.h"
#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/spec.h"

// With -Werror, a second definition of RETURN_IF_ERROR would already have
// failed the build; these say which header each name came from.
static_assert(CONSUMER_OWN_BASE_STATUS_MACROS == 1, "base/status_macros.h is the consumer's");
#ifndef DELTASERVE_RETURN_IF_ERROR
#error "deltaserve/base/status_macros.h should define DELTASERVE_RETURN_IF_ERROR"
#endif

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: consumer HOST:PORT\n";
    return 2;
  }
  auto client = deltaserve::client::TrainerClient::Connect(argv[1]);
  if (!client.ok()) {
    std::cerr << "consumer: " << client.status() << "\n";
    return 1;
  }
  auto info = (*client)->GetModelInfo("");
  if (!info.ok()) {
    std::cerr << "consumer: " << info.status() << "\n";
    return 1;
  }
  RETURN_IF_ERROR(info->spec().input_dim() > 0);  // The consumer's own macro.
  deltaserve::model::Matrix inputs =
      deltaserve::model::Matrix::Zero(1, static_cast<Eigen::Index>(info->spec().input_dim()));
  auto result = (*client)->Forward(inputs);
  if (!result.ok()) {
    std::cerr << "consumer: " << result.status() << "\n";
    return 1;
  }
  std::cout << "consumer: version " << result->version << ", outputs " << result->outputs.rows()
            << " x " << result->outputs.cols() << std::endl;
  return 0;
}
