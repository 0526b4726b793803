// libFuzzer target: the SubmitDelta request path.
//
//   bytes → deltaserve.v1.SubmitDeltaRequest (binary, or text format when the
//   first byte is '#') → server::SubmissionFromProto → Trainer::Submit → the
//   learner's callback
//
// against two small models on fresh Trainers, each with samples_per_step 3
// so that the fuzzed submission lands on a partly filled accumulator:
//   "sgd":  3 → 4 tanh → 2 identity, SGD, ANCHORED, max_staleness 1; two
//           steps before the input (version 2: versions 0 is too stale, 1
//           and 2 are accepted, ≥ 3 is from the future);
//   "adam": 3 → 4 relu → 2 sigmoid, Adam with clip_norm 1, CURRENT, MEAN,
//           staleness_scaled_lr; one step before the input (version 1).
// Before the input, one 1-row submission leaves 1 row accumulated.
//
// Invariant: no crash or sanitizer report, every queued submission gets its
// callback, and
//   - rejected (by the conversion, by Submit or in the callback): version and
//     parameters bit-identical to before, and the accumulator untouched: a
//     1-row submission does not step (1 + 1 < 3 rows) and the next one steps
//     to parameters bit-identical to a Trainer that never saw the input;
//   - accepted: staleness = version − request version; not stepped → the
//     snapshot is bit-identical to before; stepped → version + 1;
// and then a valid samples_per_step submission is applied and steps.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "deltaserve/server/core/trainer.h"
#include "deltaserve/server/service/convert.h"
#include "deltaserve/tests/fuzz/fuzz_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"
#include "deltaserve/v1/trainer.pb.h"

namespace deltaserve::fuzz {
namespace {

struct Model {
  server::TrainerOptions options;
  int warmup_steps;  // Full steps before the input.
  // Parameters after warm-up, 1 + 1 + 1 rows (primer, middle, completion)
  // on a Trainer that saw nothing else.
  std::vector<float> reference;
};

server::TrainerOptions SgdOptions() {
  return server::testing::TrainerOptionsBuilder("sgd", /*input_dim=*/3)
      .Layers({{4, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
      .Seed(5)
      .Sgd(0.05f)
      .Surrogate(model::SurrogateConfig::Mode::kAnchored)
      .SamplesPerStep(3)
      .MaxStaleness(1)
      .Build();
}

server::TrainerOptions AdamOptions() {
  return server::testing::TrainerOptionsBuilder("adam", /*input_dim=*/3)
      .Layers({{4, model::Activation::kRelu}, {2, model::Activation::kSigmoid}})
      .Seed(9)
      .Adam(0.01f)
      .ClipNorm(1.0f)
      .Surrogate(model::SurrogateConfig::Mode::kCurrent, model::SurrogateConfig::Reduction::kMean)
      .SamplesPerStep(3)
      .StalenessScaledLr()
      .Build();
}

void MustApply(server::Trainer& trainer, server::Submission s, bool expect_step,
               absl::string_view what) {
  SubmitOutcome outcome = SubmitAndWait(trainer, std::move(s));
  Check(outcome.accepted(),
        absl::StrCat(what, ": a valid submission was rejected: ", outcome.status().ToString()));
  Check(outcome.result->stepped == expect_step,
        absl::StrCat(what, ": stepped=", outcome.result->stepped, ", expected ", expect_step,
                     " (rows accumulated are wrong)"));
}

// Warm-up steps, then the 1-row primer: version = warmup_steps, 1 row held.
std::unique_ptr<server::Trainer> Prepared(const Model& m) {
  std::unique_ptr<server::Trainer> trainer = MustCreate(m.options);
  const int sps = static_cast<int>(m.options.samples_per_step);
  for (int i = 0; i < m.warmup_steps; ++i) {
    MustApply(*trainer, KnownGood(*trainer, sps, trainer->snapshot()->version, i), true, "warm-up");
  }
  MustApply(*trainer, KnownGood(*trainer, 1, trainer->snapshot()->version, 10), false, "primer");
  return trainer;
}

// Middle and completion rows after the (rejected) input; returns the
// parameters of the completed step.
std::vector<float> Finish(server::Trainer& trainer, absl::string_view why) {
  const uint64_t v = trainer.snapshot()->version;
  MustApply(trainer, KnownGood(trainer, 1, v, 20), false, absl::StrCat(why, ", middle row"));
  MustApply(trainer, KnownGood(trainer, 1, v, 30), true, absl::StrCat(why, ", completion row"));
  Check(trainer.snapshot()->version == v + 1,
        absl::StrCat(why, ": completion stepped to version ", trainer.snapshot()->version,
                     ", expected ", v + 1));
  return trainer.snapshot()->parameters;
}

std::vector<Model>& Models() {
  static std::vector<Model>* models = [] {
    auto* m = new std::vector<Model>{{SgdOptions(), 2, {}}, {AdamOptions(), 1, {}}};
    for (Model& model : *m) {
      std::unique_ptr<server::Trainer> trainer = Prepared(model);
      model.reference = Finish(*trainer, "reference run");
    }
    return m;
  }();
  return *models;
}

void RunOne(const Model& m, const deltaserve::v1::SubmitDeltaRequest& request) {
  std::unique_ptr<server::Trainer> trainer = Prepared(m);
  const std::shared_ptr<const server::Snapshot> before = trainer->snapshot();
  const std::string why = absl::StrCat("model \"", m.options.name, "\"");

  absl::Status rejected;
  absl::StatusOr<server::Submission> submission = server::SubmissionFromProto(request);
  if (!submission.ok()) {
    rejected = submission.status();
  } else {
    const uint64_t request_version = submission->version;
    const Eigen::Index request_rows = submission->inputs.rows();
    const bool asked = submission->return_input_gradient;
    SubmitOutcome outcome = SubmitAndWait(*trainer, *std::move(submission));
    if (!outcome.accepted()) {
      rejected = outcome.status();
    } else {
      const server::SubmitResult& r = *outcome.result;
      // return_input_gradient: [rows x input_dim] of finite values; else 0 x 0.
      const model::Matrix& dx = r.input_gradient;
      Check(asked ? dx.rows() == request_rows && dx.cols() == 3 && dx.allFinite() : dx.size() == 0,
            absl::StrCat(why, ": input_gradient [", dx.rows(), " x ", dx.cols(),
                         "] for return_input_gradient=", asked, " and ", request_rows, " rows"));
      Check(r.staleness == before->version - request_version,
            absl::StrCat(why, ": staleness ", r.staleness, " for request version ", request_version,
                         " at version ", before->version));
      if (r.stepped) {
        Check(
            r.version == before->version + 1 && trainer->snapshot()->version == r.version,
            absl::StrCat(why, ": a stepping submission answered version ", r.version, " (snapshot ",
                         trainer->snapshot()->version, ") from ", before->version));
      } else {
        Check(r.version == before->version,
              absl::StrCat(why, ": a non-stepping submission answered version ", r.version));
        ExpectUnchanged(*trainer, before->parameters, before->version,
                        absl::StrCat(why, ": accepted without a step"));
      }
      ExpectValidStep(*trainer, absl::StrCat(why, ": an accepted input"));
      return;
    }
  }
  Check(!rejected.ok(), "rejected with OK");
  CheckBounded(rejected, why);
  const std::string after = absl::StrCat(why, ": rejected (", rejected.ToString(), ")");
  ExpectUnchanged(*trainer, before->parameters, before->version, after);
  Check(BitIdentical(Finish(*trainer, after), m.reference),
        absl::StrCat(after,
                     ": the next step differs from a Trainer that never saw the input "
                     "(the accumulator or optimizer state changed)"));
  ExpectValidStep(*trainer, after);
}

}  // namespace
}  // namespace deltaserve::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  deltaserve::v1::SubmitDeltaRequest request;
  if (!deltaserve::fuzz::ParseInput(data, size, &request)) return 0;
  deltaserve::fuzz::CheckModelLookup(request.model());
  for (const deltaserve::fuzz::Model& m : deltaserve::fuzz::Models()) {
    deltaserve::fuzz::RunOne(m, request);
  }
  return 0;
}
