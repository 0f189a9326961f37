package s3sqs

import (
	"os"
	"testing"
)

// TestMain poisons every payload block as it is freed, so that any test
// whose events are read after their fate (a block freed too early) sees
// garbage instead of a plausible payload.
func TestMain(m *testing.M) {
	poisonFreed = true
	os.Exit(m.Run())
}
