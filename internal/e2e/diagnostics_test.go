package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// validInput is an input block with one service; cases append or replace
// services after it.
const validInput = `inputs:
  aws:
    id: "1"
    regions: [eu-west-1]
    credentials: {}
    services:
`

// devoOut is a devo_platform output named devo_eu with the given chain,
// cert and key (tokens replaced by file paths, see diagnose).
func devoOut(chain, cert, key string) string {
	return "outputs:\n  devo_eu:\n    type: devo_platform\n    config: {address: collector-eu.devo.io, port: 443, chain: " +
		chain + ", cert: " + cert + ", key: " + key + "}\n"
}

var goodOut = devoOut("CA_PEM", "CLIENT_CRT", "CLIENT_KEY")

// diagnosticCases are mistakes a user moving a Devo configuration over
// makes. Each must exit with want and print every string of lines: what is
// wrong, where (the key path), and the fix where one can be suggested.
var diagnosticCases = []struct {
	name  string
	body  string
	want  int
	lines []string
}{
	{"misspelt service name", goodOut + validInput + "      service-event-all:\n        sqs_queue_name: events.fifo\n", 2, []string{
		`AwsServiceConfigurationError(108): "inputs.aws.services.service-event-all": unknown service "service-event-all"`,
		`did you mean "service-events-all"?`}},
	{"misspelt service name and a misspelt key inside it", goodOut + validInput + "      service-event-all:\n        sqs_queue_nmae: events.fifo\n", 2, []string{
		`unknown service "service-event-all"`, `did you mean "service-events-all"?`,
		`"inputs.aws.services.service-event-all.sqs_queue_nmae": unknown key — did you mean "sqs_queue_name"?`}},
	{"misspelt service name with no value", goodOut + validInput + "      service-event-all:\n", 2, []string{
		`unknown service "service-event-all"`, `did you mean "service-events-all"?`}},
	{"feature name instead of service name", goodOut + validInput + "      guardduty: {}\n", 2, []string{
		`unknown service "guardduty"`, `did you mean "aws-guardduty"?`}},
	{"unknown key next to the missing mandatory one", goodOut + validInput + "      service-events-all:\n        sqs_queue_nmae: events.fifo\n", 2, []string{
		`"inputs.aws.services.service-events-all.sqs_queue_nmae": unknown key — did you mean "sqs_queue_name"?`,
		`"inputs.aws.services.service-events-all.sqs_queue_name" mandatory property is missing or empty`}},
	{"misspelt optional key", goodOut + validInput + "      service-events-all:\n        sqs_queue_name: events.fifo\n        auto_event_typ: true\n", 2, []string{
		`"inputs.aws.services.service-events-all.auto_event_typ": unknown key — did you mean "auto_event_type"?`}},
	{"yes for a boolean", goodOut + validInput + "      service-events-all:\n        sqs_queue_name: events.fifo\n        auto_event_type: yes\n", 2, []string{
		`"inputs.aws.services.service-events-all.auto_event_type" property must be a string — it must be a boolean: true or false (found "yes")`}},
	{"metrics service without namespaces", goodOut + validInput + "      metrics-all: {}\n", 2, []string{
		`AwsServiceConfigurationError(0): Mandatory property "metric_namespaces" is missing (at inputs.aws.services.metrics-all.metric_namespaces)`,
		`e.g. metric_namespaces: [AWS/EC2`}},
	{"devo output over TCP", "outputs:\n  devo_eu: {type: devo_platform, config: {address: collector-eu.devo.io, port: 443, type: TCP, chain: CA_PEM, cert: CLIENT_CRT, key: CLIENT_KEY}}\n" + validInput + "      aws-guardduty: {}\n", 2, []string{
		`OutputConfigurationError(4): Devo Sender is not allowed to run without SSL feature (at outputs.devo_eu.config)`, `set type: SSL (or remove type)`}},
	{"devo output without certificates", "outputs:\n  devo_eu: {type: devo_platform, config: {address: collector-eu.devo.io, port: 443}}\n" + validInput + "      aws-guardduty: {}\n", 2, []string{
		`(at outputs.devo_eu.config)`, `add chain, cert, key`}},
	{"certificate file missing", devoOut("chain.crt", "CLIENT_CRT", "CLIENT_KEY") + validInput + "      aws-guardduty: {}\n", 2, []string{
		`OutputConfigurationError(3): File "BASE/certs/chain.crt" does not exist (at outputs.devo_eu.config.chain)`,
		`relative paths are looked up in certs/`}},
	{"junk PEM as chain", devoOut("JUNK_PEM", "CLIENT_CRT", "CLIENT_KEY") + validInput + "      aws-guardduty: {}\n", 2, []string{
		`OutputConfigurationError(106): File "JUNK_PEM" is not a PEM certificate chain: no PEM block found (expected -----BEGIN CERTIFICATE-----) (at outputs.devo_eu.config.chain)`}},
	{"every bad file in one run", devoOut("JUNK_PEM", "CLIENT_KEY", "CA_PEM") + validInput + "      aws-guardduty: {}\n", 2, []string{
		`(at outputs.devo_eu.config.chain)`,
		`File "CLIENT_KEY" is not a PEM certificate: found a "PRIVATE KEY" PEM block, expected CERTIFICATE (at outputs.devo_eu.config.cert)`,
		`File "CA_PEM" is not a PEM private key: found a "CERTIFICATE" PEM block, expected a PRIVATE KEY (at outputs.devo_eu.config.key)`,
		`3 configuration problem(s)`}},
	{"key of another certificate", devoOut("CA_PEM", "CLIENT_CRT", "ROGUE_KEY") + validInput + "      aws-guardduty: {}\n", 2, []string{
		`OutputConfigurationError(107): "outputs.devo_eu.config.key" does not belong to the certificate "outputs.devo_eu.config.cert"`}},
	{"misspelt output type", "outputs:\n  devo_eu: {type: devo_platfrom}\n" + validInput + "      aws-guardduty: {}\n", 2, []string{
		`OutputConfigurationError(1): Output type "devo_platfrom" does not exist (at outputs.devo_eu.type) — did you mean "devo_platform"?`}},
	{"port as text", "outputs:\n  relay: {type: relay, config: {address: relay.local, port: http, type: TCP}}\n" + validInput + "      aws-guardduty: {}\n", 2, []string{
		`"outputs.relay.config.port" has an unsupported value "http", allowed: an integer from 1 to 65535`}},
	{"misspelt region", goodOut + strings.Replace(validInput, "[eu-west-1]", "[eu-wst-1]", 1) + "      aws-guardduty: {}\n", 2, []string{
		`"inputs.aws.regions" contains an invalid region name: "eu-wst-1"`}},
	{"half a credential pair", goodOut + strings.Replace(validInput, "credentials: {}", "credentials: {access_key: AKIAEXAMPLE}", 1) + "      aws-guardduty: {}\n", 2, []string{
		`"inputs.aws.credentials" does not match any authentication mode (found: ["access_key"])`}},
	{"logs service without requests_per_second", goodOut + validInput + "      cwl_app: {types: [logs], log_group: /aws/lambda/app}\n", 2, []string{
		`Mandatory property "requests_per_second" is missing (located at: aws.request_per_second) (at inputs.aws.requests_per_second)`,
		`add requests_per_second under inputs.aws`}},
	{"metrics start_time with fractions", goodOut + validInput + "      ec2: {start_time: \"2024-05-01T00:00:00.5Z\"}\n", 2, []string{
		`expected: YYYY-mm-ddTHH:MM:SSZ (at inputs.aws.services.ec2.start_time)`}},
	{"metrics period not a CloudWatch period", goodOut + validInput + "      ec2: {request_period_in_seconds: 90}\n", 2, []string{
		`any multiple of 60 (at inputs.aws.services.ec2.request_period_in_seconds)`}},
	{"audit events without types", goodOut + validInput + "      audit-events-all: {sqs_queue_name: trail}\n", 2, []string{
		`"inputs.aws.services.audit-events-all.types" must contain exactly one of "audits_api" or "audits_s3"`}},
	{"misspelt type", goodOut + validInput + "      audit-events-all: {types: [audits_s4], sqs_queue_name: trail}\n", 2, []string{
		`"inputs.aws.services.audit-events-all.types" contains an unsupported value "audits_s4" for this service, allowed: ["audits_api", "audits_s3"]`}},
	{"unknown tag placeholder", goodOut + validInput + "      aws-guardduty: {tag: 'my.{bucket}.{event_type}'}\n", 2, []string{
		`"inputs.aws.services.aws-guardduty.tag" property is containing some unexpected placeholders`}},
	{"queue name as a number", goodOut + validInput + "      cisco-umbrella: {sqs_queue_name: 12}\n", 2, []string{
		`"inputs.aws.services.cisco-umbrella.sqs_queue_name" property must be a string`}},
	{"custom logs service without log_group", goodOut + validInput + "      cwl_app: {types: [logs]}\n", 2, []string{
		`"inputs.aws.services.cwl_app.log_group" mandatory property is missing or empty`}},
	{"misspelt globals key", "globals:\n  queue_max_siz_in_mb: 64\n" + goodOut + validInput + "      aws-guardduty: {}\n", 2, []string{
		`"globals.queue_max_siz_in_mb": unknown key — did you mean "queue_max_size_in_mb"?`}},
	{"misspelt top-level key", "input:\n  aws: {}\n" + goodOut, 2, []string{
		`"input": unknown key — did you mean "inputs"?`,
		`AwsInputConfigurationError(1): "inputs.aws" mandatory property is missing or empty`}},
	{"YAML syntax error", goodOut + validInput + "      aws-guardduty: {\n", 2, []string{
		`load configuration: config BASE/config/config.yaml: yaml: line`}},
	{"unset environment variable", goodOut + validInput + "      cisco-umbrella: {sqs_queue_name: \"${DAC_E2E_UNSET_QUEUE}\"}\n", 2, []string{
		`inputs.aws.services.cisco-umbrella.sqs_queue_name: environment variable DAC_E2E_UNSET_QUEUE is not set`}},
	{"misspelt output key", "outputs:\n  relay: {type: relay, config: {adress: relay.local, port: 13000, type: TCP}}\n" + validInput + "      aws-guardduty: {}\n", 2, []string{
		`"outputs.relay.config.adress": unknown key — did you mean "address"?`,
		`"outputs.relay.config.address" mandatory property is missing or empty`}},
	{"console output with a hostname is clean", "outputs:\n  console: {type: console, config: {format: devo_line, hostname: demo-collector}}\n" + validInput + "      aws-guardduty: {}\n", 0, []string{
		`configuration is valid`}},
	{"unrelated unknown key only warns", goodOut + validInput + "      aws-guardduty: {collector_owner: secops}\n", 0, []string{
		`warning: inputs.aws.services.aws-guardduty.collector_owner: unknown key, ignored`,
		`configuration is valid`}},
	{"custom logs service without types", goodOut + strings.Replace(validInput, "id: \"1\"", "id: \"1\"\n    requests_per_second: 5", 1) + "      cwl_app: {log_group: /aws/lambda/app}\n", 0, []string{
		`service cwl_app (custom, logs)`}},
}

// TestConfigDiagnosticsThroughBinary runs `validate` of the built binary
// on each mistake: the exit status is the documented one (2 for a
// configuration problem) and every expected line is printed.
func TestConfigDiagnosticsThroughBinary(t *testing.T) {
	set := certs.New(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("-- not a certificate --\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range diagnosticCases {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			tokens := strings.NewReplacer("CA_PEM", set.CA, "CLIENT_CRT", set.ClientCert, "CLIENT_KEY", set.ClientKey,
				"ROGUE_KEY", set.RogueKey, "JUNK_PEM", junk, "BASE", base)
			path := filepath.Join(base, "config", "config.yaml")
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte(tokens.Replace(tc.body)), 0o600); err != nil {
				t.Fatal(err)
			}
			code, out := validate(t, path)
			if code != tc.want {
				t.Errorf("exit %d, want %d", code, tc.want)
			}
			if tc.want == 0 && !strings.Contains(strings.Join(tc.lines, "\n"), "warning:") && strings.Contains(out, "warning:") {
				t.Errorf("unexpected warning")
			}
			for _, l := range tc.lines {
				if want := tokens.Replace(l); !strings.Contains(out, want) {
					t.Errorf("output lacks %q", want)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// TestConfigErrorsBeforeWarnings: a file with errors still prints its
// warnings, after every error, so nothing is hidden until the errors are
// fixed.
func TestConfigErrorsBeforeWarnings(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "config", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	body := "outputs: {out: {type: console}}\n" + validInput +
		"      aws-guardduty: {collector_owner: secops}\n      metrics-all: {}\n      ec2: {tag: 5}\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out := validate(t, path)
	if code != 2 {
		t.Fatalf("exit %d, want 2\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	lastError, firstWarning := -1, -1
	for i, l := range lines {
		switch {
		case strings.HasPrefix(l, "warning: "):
			if firstWarning < 0 {
				firstWarning = i
			}
		case strings.Contains(l, "Error("):
			lastError = i
		}
	}
	if lastError < 0 || firstWarning < 0 || firstWarning < lastError {
		t.Errorf("want the errors, then the warnings (last error line %d, first warning line %d):\n%s", lastError, firstWarning, out)
	}
	if !strings.HasSuffix(lines[len(lines)-1], "2 configuration problem(s), 1 warning(s)") {
		t.Errorf("last line %q, want the count of problems and warnings", lines[len(lines)-1])
	}
}

// TestExitCodesThroughBinary: 0 valid, 2 invalid configuration or command
// line, 1 a runtime failure (here validate --check that cannot reach AWS
// nor either output; each failure is printed once with one prefix).
func TestExitCodesThroughBinary(t *testing.T) {
	base := t.TempDir()
	path := filepath.Join(base, "config", "config.yaml")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	set := certs.New(t)
	body := strings.NewReplacer("CA_PEM", set.CA, "CLIENT_CRT", set.ClientCert, "CLIENT_KEY", set.ClientKey).Replace(`outputs:
  devo_eu: {type: devo_platform, config: {address: 127.0.0.1, port: 1, chain: CA_PEM, cert: CLIENT_CRT, key: CLIENT_KEY, connecting_retries: 0}}
  devo_us: {type: devo_platform, config: {address: 127.0.0.1, port: 1, chain: CA_PEM, cert: CLIENT_CRT, key: CLIENT_KEY, connecting_retries: 0}}
inputs:
  aws:
    id: "1"
    regions: [us-east-1]
    endpoint_url: http://127.0.0.1:1
    credentials: {access_key: AKIAEXAMPLE, access_secret: example-secret}
    services:
      cisco-umbrella: {sqs_queue_name: umbrella}
`)
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := validate(t, path); code != 0 {
		t.Errorf("valid file: exit %d\n%s", code, out)
	}
	if code, out := runBin(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2\n%s", code, out)
	}
	code, out := runBin(t, "validate", "--check", "--config", path)
	if code != 1 {
		t.Fatalf("validate --check, nothing reachable: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"FAIL input aws: credentials", "FAIL output devo_eu: ", "FAIL output devo_us: ", "3 check(s) failed"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("want %q exactly once:\n%s", want, out)
		}
	}
	if strings.Contains(out, "output devo_eu: output devo_eu") || strings.Contains(out, "output devo_us: output devo_us") {
		t.Errorf("doubled prefix:\n%s", out)
	}
}

func validate(t *testing.T, path string) (int, string) {
	t.Helper()
	return runBin(t, "validate", "--config", path)
}

// runBin runs the collector binary to completion and returns its exit
// status and its stdout and stderr together.
func runBin(t *testing.T, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(collectorBin, args...)
	cmd.Env = append(quickExit(os.Environ()), "AWS_EC2_METADATA_DISABLED=true")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("run %v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String()
}
