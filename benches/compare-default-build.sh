#!/bin/bash
# gzip: ours (zlib-rs) against tower-http in its default build (miniz_oxide),
# which cannot share one build with ours. Runs both benches back to back and
# prints throughput and size ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
args=(-- --warm-up-time 1 --measurement-time 5 gzip/)
cargo bench --features compression-full --bench compression "${args[@]}" | tee /tmp/armor-gzip.txt | grep -E "^compression|output size|gzip " || true
(cd benches/tower-http-default && cargo bench --bench gzip "${args[@]}") | tee /tmp/default-gzip.txt | grep -E "output size" || true
mean() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['mean']['point_estimate'])" "$1"; }
for body in json-64k html-1m; do
  ours=$(mean "target/criterion/compression_$body/gzip_armor/new/estimates.json")
  theirs=$(mean "benches/tower-http-default/target/criterion/compression_$body/gzip_tower-http-default-build/new/estimates.json")
  ours_size=$(grep -E "^  $body +gzip " /tmp/armor-gzip.txt | sed -E 's/.*-> ([0-9]+) .*/\1/')
  theirs_size=$(grep -E "$body gzip" /tmp/default-gzip.txt | sed -E 's/.*-> ([0-9]+) bytes/\1/')
  python3 -c "import sys; o,t,os_,ts=map(float,sys.argv[1:]); print(f'$body gzip: throughput {t/o:.2f}x tower-http default build, size {os_/ts:.4f} of its size')" "$ours" "$theirs" "$ours_size" "$theirs_size"
done
