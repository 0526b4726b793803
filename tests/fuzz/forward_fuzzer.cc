// libFuzzer target: the Forward request path.
//
//   bytes → deltaserve.v1.ForwardRequest (binary, or text format when the
//   first byte is '#') → wire::MatrixFromProto → Trainer::Forward
//
// on a fresh Trainer of a small model (input 3 → 4 tanh → 3 relu → 2
// identity), so that each input is judged on its own, deterministically.
// Invariant: no crash or sanitizer report; an accepted Forward returns
// [rows × 2] at version 0, each row bit-identical to Mlp::Forward of that row
// alone on the snapshot (not of the whole batch: Eigen's GEMM blocks by the
// batch's size, so its rows' last bits depend on the batch — a 14-row batch
// of rows like (1, 2, 0) differed from each row alone by 2 ulps — while
// Trainer::Forward computes every row the same way whatever the batch); a
// rejection is INVALID_ARGUMENT or RESOURCE_EXHAUSTED; either way (Forward never writes) the
// parameters are bit-identical to the initial ones, and a valid submission
// afterwards is applied and advances the version.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/proto/wire.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/tests/fuzz/fuzz_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::fuzz {
namespace {

server::TrainerOptions ForwardOptions() {
  return server::testing::TrainerOptionsBuilder("fwd", /*input_dim=*/3)
      .Layers({{4, model::Activation::kTanh},
               {3, model::Activation::kRelu},
               {2, model::Activation::kIdentity}})
      .Seed(11)
      .Sgd(0.05f)
      .SamplesPerStep(2)
      .Build();
}

bool SameBits(const model::Matrix& a, const model::Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         (a.size() == 0 ||
          std::memcmp(a.data(), b.data(), static_cast<size_t>(a.size()) * sizeof(float)) == 0);
}

void RunOne(const deltaserve::v1::ForwardRequest& request) {
  std::unique_ptr<server::Trainer> trainer = MustCreate(ForwardOptions());
  const std::vector<float> initial = trainer->snapshot()->parameters;

  CheckModelLookup(request.model());
  absl::StatusOr<model::Matrix> inputs = wire::MatrixFromProto("inputs", request.inputs());
  if (!inputs.ok()) {
    CheckBounded(inputs.status(), "MatrixFromProto");
    Check(inputs.status().code() == absl::StatusCode::kInvalidArgument,
          absl::StrCat("MatrixFromProto rejected with a code other than INVALID_ARGUMENT: ",
                       inputs.status().ToString()));
  } else {
    // The read-only input gradient of the same inputs (δ = 1): the same
    // refusals as Forward, and nothing changes (ExpectUnchanged below).
    // Rows beyond max_request_rows are refused before δ is looked at; δ then
    // has one row, so a huge row count with no columns (many_rows_no_cols)
    // costs the harness no allocation of its own.
    const Eigen::Index delta_rows =
        static_cast<size_t>(inputs->rows()) <= trainer->options().max_request_rows ? inputs->rows()
                                                                                   : 1;
    const model::Matrix deltas = model::Matrix::Ones(delta_rows, 2);
    absl::StatusOr<server::InputGradientResult> gradient = trainer->InputGradient(*inputs, deltas);
    if (gradient.ok()) {
      Check(gradient->version == 0 && gradient->input_gradient.rows() == inputs->rows() &&
                gradient->input_gradient.cols() == 3 && gradient->input_gradient.allFinite(),
            absl::StrCat("InputGradient returned [", gradient->input_gradient.rows(), " x ",
                         gradient->input_gradient.cols(), "] at version ", gradient->version));
    } else {
      CheckBounded(gradient.status(), "InputGradient");
      const absl::StatusCode code = gradient.status().code();
      Check(code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kResourceExhausted,
            absl::StrCat("InputGradient rejected with a code other than INVALID_ARGUMENT or "
                         "RESOURCE_EXHAUSTED: ",
                         gradient.status().ToString()));
    }
    absl::StatusOr<server::ForwardResult> result = trainer->Forward(*inputs);
    if (result.ok()) {
      Check(result->version == 0, absl::StrCat("Forward answered version ", result->version));
      Check(result->outputs.rows() == inputs->rows() && result->outputs.cols() == 2,
            absl::StrCat("Forward returned [", result->outputs.rows(), " x ",
                         result->outputs.cols(), "] for ", inputs->rows(), " input rows"));
      for (Eigen::Index r = 0; r < inputs->rows(); ++r) {
        const model::Matrix row = inputs->row(r);
        absl::StatusOr<model::Matrix> expected = trainer->mlp().Forward(initial, row);
        Check(expected.ok(), absl::StrCat("Mlp::Forward refused a row Trainer::Forward accepted: ",
                                          expected.status().ToString()));
        Check(SameBits(result->outputs.row(r), *expected),
              absl::StrCat("row ", r,
                           " of Trainer::Forward differs from Mlp::Forward of that "
                           "row alone on the same parameters"));
      }
    } else {
      // INVALID_ARGUMENT (shape, values), RESOURCE_EXHAUSTED (max_request_rows).
      CheckBounded(result.status(), "Forward");
      const absl::StatusCode code = result.status().code();
      Check(code == absl::StatusCode::kInvalidArgument ||
                code == absl::StatusCode::kResourceExhausted,
            absl::StrCat("Forward rejected with a code other than INVALID_ARGUMENT or "
                         "RESOURCE_EXHAUSTED: ",
                         result.status().ToString()));
    }
  }
  ExpectUnchanged(*trainer, initial, 0, "Forward");
  ExpectValidStep(*trainer, "Forward");
}

}  // namespace
}  // namespace deltaserve::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  deltaserve::v1::ForwardRequest request;
  if (!deltaserve::fuzz::ParseInput(data, size, &request)) return 0;
  deltaserve::fuzz::RunOne(request);
  return 0;
}
