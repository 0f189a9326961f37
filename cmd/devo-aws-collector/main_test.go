package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// layout writes <base>/config/config.yaml with body and the fake
// certificate files (generated, so validation parses them) the example
// names under <base>/certs.
func layout(t *testing.T, body string) string {
	t.Helper()
	base := t.TempDir()
	for _, d := range []string{"config", "certs"} {
		if err := os.MkdirAll(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	set := certs.New(t)
	for dst, src := range map[string]string{"chain.crt": set.CA, "acme_corp.crt": set.ClientCert, "acme_corp.key": set.ClientKey} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(base, "certs", dst), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(base, "config", "config.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateCompleteExampleListsEveryService(t *testing.T) {
	example, err := os.ReadFile("../../internal/config/testdata/example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := layout(t, string(example))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"validate", "--config", path}, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	out := stdout.String()
	for _, svc := range []string{"service-events-all", "sqs-cloudwatch-consumer", "audit-events-all", "metrics-all",
		"ec2", "non-cloudwatch-logs", "cwl_lambda", "cwl_all", "aws-guardduty", "cisco-umbrella", "devo_1", "us-east-1", "eu-west-1"} {
		if !strings.Contains(out, svc) {
			t.Errorf("validate output does not mention %q:\n%s", svc, out)
		}
	}
}

func TestValidateFiveMistakesPrintsFiveLines(t *testing.T) {
	path := layout(t, `
outputs:
  out: {type: carrier_pigeon}
inputs:
  aws:
    id: "1"
    regions: [us-east-1, mars-north-1]
    credentials: {access_key: AKIAEXAMPLE}
    services:
      metrics-all:
        types: [metrics]
        metric_namespaces: [AWS/EC2]
        request_period_in_seconds: 7
      service-events-all:
        tag: 42
        sqs_queue_name: q.fifo
`)
	var stdout, stderr bytes.Buffer
	code := run([]string{"validate", "--config", path}, &stdout, &stderr)
	if code != exitConfig {
		t.Fatalf("exit %d, want %d\n%s", code, exitConfig, stderr.String())
	}
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(stderr.String()), "\n") {
		if strings.Contains(l, "Error(") || strings.Contains(l, "Exception(") {
			problems = append(problems, l)
		}
	}
	if len(problems) != 5 {
		t.Fatalf("got %d problem lines, want 5:\n%s", len(problems), stderr.String())
	}
	for _, want := range []string{
		`OutputConfigurationError(1): Output type "carrier_pigeon" does not exist`,
		`"inputs.aws.regions" contains an invalid region name: "mars-north-1"`,
		`"inputs.aws.credentials"`,
		`"request_period_in_seconds" must have one of the following values`,
		`"inputs.aws.services.service-events-all.tag" property must be a string`,
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("missing %q in:\n%s", want, stderr.String())
		}
	}
}

func TestConfigPathFollowsDevoLayout(t *testing.T) {
	t.Setenv("CONFIG_FILE", "")
	if got := configPath(""); got != filepath.Join("config", "config.yaml") {
		t.Errorf("default path %q", got)
	}
	t.Setenv("CONFIG_FILE", "collector.json")
	if got := configPath(""); got != filepath.Join("config", "collector.json") {
		t.Errorf("CONFIG_FILE path %q", got)
	}
	if got := configPath("/x/y.yaml"); got != "/x/y.yaml" {
		t.Errorf("flag path %q", got)
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != exitOK || !strings.HasPrefix(out.String(), "devo-aws-collector ") {
		t.Errorf("version: exit %d, %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != exitUsage {
		t.Errorf("unknown command exit %d", code)
	}
}
