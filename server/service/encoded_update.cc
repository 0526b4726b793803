#include "deltaserve/server/service/encoded_update.h"

#include "deltaserve/server/service/convert.h"

namespace deltaserve::server {

std::shared_ptr<const EncodedUpdate> EncodedUpdateCache::Encode(
    const std::shared_ptr<const Snapshot>& snapshot) {
  absl::MutexLock lock(&mu_);
  if (cached_ == nullptr || cached_->generation < snapshot->generation ||
      (cached_->generation == snapshot->generation && cached_->version < snapshot->version)) {
    auto encoded = std::make_shared<EncodedUpdate>();
    encoded->version = snapshot->version;
    encoded->generation = snapshot->generation;
    encoded->bytes = SerializeParameterUpdate(model_, *snapshot);
    cached_ = std::move(encoded);
  }
  return cached_;
}

}  // namespace deltaserve::server
