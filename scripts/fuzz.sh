#!/usr/bin/env bash
# Runs every fuzz target of the format parsers for FUZZTIME each (default 5m),
# one after another. A failure that wrote a crasher under testdata/fuzz/ fails
# the run. A failure with no crasher and only "context deadline exceeded" is
# Go 1.26's fuzz coordinator race at the -fuzztime deadline
# (golang/go#75804, fixed in Go 1.27): that target is run once more.
set -u
cd "$(dirname "$0")/.."
FUZZTIME=${FUZZTIME:-5m}
targets=(
	"./internal/format/cloudtrail FuzzReader"
	"./internal/format/vpcflow FuzzReader"
	"./internal/format/cloudfront FuzzReader"
	"./internal/format/umbrella FuzzReader"
	"./internal/format/s3notify FuzzParse"
	"./internal/format/eventbridge FuzzParseSplit"
	"./internal/format/lines FuzzNext"
	"./internal/format/jsonpay FuzzAppend"
	"./internal/format/internal/jsontext FuzzValue"
)
failed=0
for t in "${targets[@]}"; do
	read -r pkg fn <<<"$t"
	for attempt in 1 2; do
		before=$(find "$pkg/testdata/fuzz/$fn" -type f 2>/dev/null | wc -l)
		out=$(go test -run='^$' -fuzz="^$fn\$" -fuzztime="$FUZZTIME" "$pkg" 2>&1)
		rc=$?
		after=$(find "$pkg/testdata/fuzz/$fn" -type f 2>/dev/null | wc -l)
		if [ $rc -eq 0 ]; then
			echo "ok   $pkg $fn ($FUZZTIME)"
			break
		fi
		if [ "$after" -eq "$before" ] && grep -q "context deadline exceeded" <<<"$out" && [ $attempt -eq 1 ]; then
			echo "note $pkg $fn: deadline race without a crasher (golang/go#75804), running it again"
			continue
		fi
		echo "FAIL $pkg $fn"
		echo "$out" | grep -v '^fuzz: elapsed' | tail -30
		failed=1
		break
	done
done
exit $failed
