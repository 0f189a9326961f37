package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// validate --check reaches AWS: it prints the credentials mode and account
// (never the secret), resolves every queue in every region, and exits
// non-zero naming the queue that is missing with AWS's reason.
func TestValidateCheckReachesAWS(t *testing.T) {
	emu := fauxqs.Start(t)
	emu.MustCreateQueue(t, "present-q", nil)
	c := certs.New(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: c})
	path := layout(t, fmt.Sprintf(`
outputs:
  out: {type: console}
  good: {type: devo_platform, config: {address: 127.0.0.1, port: %[2]d, chain: %[3]s, cert: %[4]s, key: %[5]s}}
  rogue: {type: devo_platform, config: {address: 127.0.0.1, port: %[2]d, chain: %[3]s, cert: %[6]s, key: %[7]s}}
inputs:
  aws:
    id: "7"
    regions: [us-east-1]
    endpoint_url: %[1]q
    credentials: {access_key: AKIACHECKEXAMPLE, access_secret: check-secret-value}
    services:
      non-cloudwatch-logs: {types: [flowlogs], sqs_queue_name: present-q}
      cisco-umbrella: {sqs_queue_name: missing-q}
`, emu.URL, rs.TLSPort, c.CA, c.ClientCert, c.ClientKey, c.RogueCert, c.RogueKey))
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
		"ok   output good: connected to 127.0.0.1",
		"output rogue: OutputConnectionError(1): Client certificate rejected",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "check-secret-value") {
		t.Errorf("the secret appears in the output:\n%s", out)
	}
}

// A service's own endpoints map wins over the input's endpoint_url.
func TestValidateCheckHonoursServiceEndpoints(t *testing.T) {
	emu := fauxqs.Start(t)
	emu.MustCreateQueue(t, "svc-q", nil)
	path := layout(t, fmt.Sprintf(`
outputs:
  out: {type: console}
inputs:
  aws:
    id: "8"
    regions: [us-east-1]
    endpoint_url: http://127.0.0.1:1
    endpoints: {sts: %[1]q}
    credentials: {access_key: AKIACHECKEXAMPLE, access_secret: check-secret-value}
    services:
      cisco-umbrella: {sqs_queue_name: svc-q, endpoints: {sqs: %[1]q}}
`, emu.URL))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "--check", "--config", path}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "ok   service cisco-umbrella in us-east-1: queue ") {
		t.Errorf("queue not resolved through the service's endpoint:\n%s", stdout.String())
	}
}
