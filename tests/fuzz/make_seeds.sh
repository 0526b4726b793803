#!/usr/bin/env bash
# Regenerates the binary seeds of tests/fuzz/corpus from the text seeds next
# to them: corpus/forward_fuzzer/NAME.txt → NAME.bin (a ForwardRequest in
# protobuf wire format, via protoc --encode), likewise for
# submit_delta_fuzzer (SubmitDeltaRequest). The fuzzers read a file that
# starts with '#' as text format and anything else as wire format, so both
# forms are seeds. config_fuzzer reads text only: its seeds are the .txt.
# Run after editing a text seed or the proto; commit the .bin files.
#   tests/fuzz/make_seeds.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
proto_root=$(cd "$here/../../proto" && pwd)
for pair in forward_fuzzer=deltaserve.v1.ForwardRequest \
            submit_delta_fuzzer=deltaserve.v1.SubmitDeltaRequest; do
  target=${pair%%=*}
  message=${pair#*=}
  for text in "$here/corpus/$target"/*.txt; do
    protoc --encode="$message" -I "$proto_root" "$proto_root/deltaserve/v1/trainer.proto" \
      <"$text" >"${text%.txt}.bin"
  done
  echo "$target: $(ls "$here/corpus/$target"/*.bin | wc -l) binary seeds"
done
