// libFuzzer target: recovery from a state directory (what --state_dir reads
// at start), for files a crash, a bad disk or a hostile hand left there.
//
//   bytes = u32 L | L bytes: a checkpoint file | the rest: a journal segment
//   → written as DIR/m/checkpoint-<its seq>.ckpt and DIR/m/journal-…1.log
//   → persist::ModelStore::Recover, then Trainer::Create with persistence
//     (3 → 4 tanh → 2, Adam) on the same files.
//
// Invariant: no crash or sanitizer report; Recover is OK or DATA_LOSS;
// Trainer::Create is OK, DATA_LOSS or FAILED_PRECONDITION (another network
// or optimizer); a Trainer that restored has finite parameters, takes a
// valid step (version + 1) and, restarted on its own directory, comes back
// with bit-identical parameters.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "deltaserve/model/validate.h"
#include "deltaserve/server/core/log.h"
#include "deltaserve/server/persist/model_store.h"
#include "deltaserve/tests/fuzz/fuzz_util.h"
#include "deltaserve/tests/server/trainer_options_builder.h"

namespace deltaserve::fuzz {
namespace {

// tmpfs when there is one: fsync is free there, so an input costs
// microseconds, not a disk flush.
std::string Root() {
  const char* shm = "/dev/shm";
  const std::string base = std::filesystem::is_directory(shm) ? shm : "/tmp";
  return absl::StrCat(base, "/deltaserve-state-fuzz-", ::getpid());
}

server::TrainerOptions Options(const std::string& dir) {
  return server::testing::TrainerOptionsBuilder("m", /*input_dim=*/3)
      .Layers({{4, model::Activation::kTanh}, {2, model::Activation::kIdentity}})
      .Seed(5)
      .Adam(0.01f)
      .SamplesPerStep(1)
      .Normalize()  // Checkpoints and imports carry input statistics.
      .PersistIn(dir)
      .Build();
}

void Write(const std::string& path, const uint8_t* data, size_t size) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
}

// Writes the input's files into a fresh `dir`.
void Lay(const std::string& dir, const uint8_t* data, size_t size) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  uint32_t length = 0;
  if (size >= 4) std::memcpy(&length, data, 4);
  const size_t body = size >= 4 ? size - 4 : 0;
  const size_t ckpt = std::min<size_t>(length, body);
  const uint8_t* at = data + (size >= 4 ? 4 : size);
  if (ckpt > 0) {
    auto decoded =
        persist::DecodeCheckpoint(absl::string_view(reinterpret_cast<const char*>(at), ckpt));
    const uint64_t seq = decoded.ok() ? decoded->journal_seq() : 0;
    Write(dir + "/" + persist::CheckpointFileName(seq), at, ckpt);
  }
  Write(dir + "/" + persist::SegmentFileName(1), at + ckpt, body - ckpt);
}

void Run(const uint8_t* data, size_t size) {
  const std::string dir = Root() + "/m";
  Lay(dir, data, size);
  {
    auto store = persist::ModelStore::Open(persist::FileSystem::Default(), dir, 3);
    Check(store.ok(), "ModelStore::Open failed");
    absl::StatusOr<persist::Recovered> recovered = (*store)->Recover();
    if (!recovered.ok()) CheckBounded(recovered.status(), "Recover");
    Check(recovered.ok() || absl::IsDataLoss(recovered.status()),
          absl::StrCat("Recover: unexpected ", recovered.status().ToString()));
  }
  Lay(dir, data, size);  // Recover may have cut or renamed files.
  absl::StatusOr<std::unique_ptr<server::Trainer>> trainer = server::Trainer::Create(Options(dir));
  if (!trainer.ok()) {
    CheckBounded(trainer.status(), "Trainer::Create");
    Check(absl::IsDataLoss(trainer.status()) || absl::IsFailedPrecondition(trainer.status()),
          absl::StrCat("Trainer::Create: unexpected ", trainer.status().ToString()));
    return;
  }
  const std::shared_ptr<const server::Snapshot> restored = (*trainer)->snapshot();
  Check(model::CheckFinite("restored", restored->parameters).ok(),
        "restored parameters are not finite");
  server::Submission s;
  s.inputs = model::Matrix::Constant(1, 3, 0.25f);
  s.deltas = model::Matrix::Constant(1, 2, 0.5f);
  s.version = restored->version;
  const SubmitOutcome outcome = SubmitAndWait(**trainer, std::move(s));
  Check(outcome.accepted(),
        absl::StrCat("a valid step after restore failed: ", outcome.status().ToString()));
  Check(outcome.result->stepped && outcome.result->version == restored->version + 1,
        "the valid step did not advance the version by one");
  const std::shared_ptr<const server::Snapshot> before = (*trainer)->snapshot();
  trainer->reset();  // Final checkpoint.
  auto again = server::Trainer::Create(Options(dir));
  Check(again.ok(), absl::StrCat("restart after a good run failed: ", again.status().ToString()));
  Check((*again)->snapshot()->version == before->version &&
            (*again)->snapshot()->parameters == before->parameters,
        "restart did not restore the state bit for bit");
}

}  // namespace
}  // namespace deltaserve::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  deltaserve::server::SetLogLevel(deltaserve::server::LogLevel::kError);
  deltaserve::fuzz::Run(data, size);
  return 0;
}
