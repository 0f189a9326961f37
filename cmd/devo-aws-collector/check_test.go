package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
)

// validate --check reaches AWS: it prints the credentials mode and account
// (never the secret), resolves every queue in every region, and exits
// non-zero naming the queue that is missing with AWS's reason.
func TestValidateCheckReachesAWS(t *testing.T) {
	emu := fauxqs.Start(t)
	emu.MustCreateQueue(t, "present-q", nil)
	path := layout(t, fmt.Sprintf(`
outputs:
  out: {type: console}
inputs:
  aws:
    id: "7"
    regions: [us-east-1]
    endpoint_url: %q
    credentials: {access_key: AKIACHECKEXAMPLE, access_secret: check-secret-value}
    services:
      non-cloudwatch-logs: {types: [flowlogs], sqs_queue_name: present-q}
      cisco-umbrella: {sqs_queue_name: missing-q}
`, emu.URL))
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "--check", "--config", path}, &stdout, &stderr)
	out := stdout.String() + stderr.String()
	if code != exitFailed {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailed, out)
	}
	for _, want := range []string{
		"ok   input aws: ",
		"000000000000",
		"ok   service non-cloudwatch-logs in us-east-1: queue ",
		`Queue "missing-q" used by service "cisco-umbrella" in "us-east-1" region is not available: reason: `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "check-secret-value") {
		t.Errorf("the secret appears in the output:\n%s", out)
	}
}
