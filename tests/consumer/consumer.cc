// Connects to the server at argv[1], runs one Forward of the default model and
// prints "consumer: version V, outputs R x C". Exit 1 on any error.
#include <iostream>

#include "deltaserve/client/trainer_client.h"
#include "deltaserve/model/spec.h"

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
