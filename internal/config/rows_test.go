package config

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// load writes body to dir/config/config.<ext> and loads it. It fails the
// test on a plain (non-catalogue) error.
func load(t *testing.T, name, body string) (*Config, Errors) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config", name)
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err == nil {
		return c, nil
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("Load: plain error %v", err)
	}
	if c == nil {
		t.Fatal("Load returned catalogue errors without the best-effort config")
	}
	return c, errs
}

// withServices is a valid input around a flow-style services mapping.
func withServices(services string) string {
	return "inputs:\n  aws:\n    id: 1\n    requests_per_second: 5\n    credentials: {}\n    regions: [eu-west-1]\n    services: " + services + "\n"
}

// withInput is a valid input with one service where the flow-style
// "key: value" of extra replaces the default of that key.
func withInput(extra string) string {
	keys := map[string]string{"id": "1", "credentials": "{}", "regions": "[eu-west-1]", "services": "{aws-guardduty: {}}"}
	k, v, _ := strings.Cut(extra, ": ")
	keys[k] = v
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		b.WriteString("    " + k + ": " + keys[k] + "\n")
	}
	return "inputs:\n  aws:\n" + b.String()
}

func withOutputs(outputs string) string {
	return "outputs: " + outputs + "\n" + withServices("{aws-guardduty: {}}")
}

const svc = "inputs.aws.services."

// userRowCases feeds one mistake per user-config row of the catalogue.
var userRowCases = []struct {
	row, path, config string
}{
	{"A30", "inputs.aws", "inputs: {}\n"},
	{"A31", "inputs.aws", "inputs: {aws: [1]}\n"},
	{"A32", svc + "service-events-all", withServices("{service-events-all: null}")},
	{"A33", svc + "service-events-all", withServices("{service-events-all: 5}")},
	{"A34", svc + "service-events-all.tag", withServices("{service-events-all: {sqs_queue_name: q.fifo, tag: 5}}")},
	{"A35", svc + "sqs-cloudwatch-consumer.sqs_queue_name", withServices("{sqs-cloudwatch-consumer: {}}")},
	{"A36", svc + "service-events-all.sqs_queue_name", withServices("{service-events-all: {sqs_queue_name: 5}}")},
	{"A37", svc + "service-events-all.sqs_queue_name", withServices("{service-events-all: {sqs_queue_name: [a]}}")},
	{"A38", svc + "service-events-all.auto_event_type", withServices("{service-events-all: {sqs_queue_name: q, auto_event_type: 5}}")},
	{"B18", svc + "non-cloudwatch-logs", withServices("{non-cloudwatch-logs: null}")},
	{"B19", svc + "cisco-umbrella", withServices("{cisco-umbrella: [1]}")},
	{"B20", svc + "cisco-umbrella.tag", withServices("{cisco-umbrella: {sqs_queue_name: q, tag: [a]}}")},
	{"B21", svc + "non-cloudwatch-logs.sqs_queue_name", withServices("{non-cloudwatch-logs: {types: [flowlogs]}}")},
	{"B22", svc + "audit-events-all.sqs_queue_name", withServices("{audit-events-all: {types: [audits_s3], sqs_queue_name: 12}}")},
	{"B23", svc + "cisco-umbrella.sqs_queue_name", withServices("{cisco-umbrella: {sqs_queue_name: {a: b}}}")},
	{"B24", svc + "non-cloudwatch-logs.auto_event_type", withServices("{non-cloudwatch-logs: {sqs_queue_name: q, auto_event_type: 1}}")},
	{"B25", svc + "non-cloudwatch-logs.start_time", withServices("{non-cloudwatch-logs: {sqs_queue_name: q, start_time: 5}}")},
	{"B26", svc + "cisco-umbrella.start_time", withServices(`{cisco-umbrella: {sqs_queue_name: q, start_time: "yesterday"}}`)},
	{"C26", svc + "audit-events-all", withServices("{audit-events-all: null}")},
	{"C27", svc + "audit-events-all", withServices(`{audit-events-all: "x"}`)},
	{"C28", svc + "audit-events-all.tag", withServices("{audit-events-all: {types: [audits_api], tag: 1}}")},
	{"C29", svc + "audit-events-all.sources", withServices("{audit-events-all: {types: [audits_api], sources: {a: 1}}}")},
	{"C30", svc + "audit-events-all.gap_until_now_in_minutes", withServices(`{audit-events-all: {types: [audits_api], gap_until_now_in_minutes: "15"}}`)},
	{"C31", svc + "audit-events-all.start_time", withServices("{audit-events-all: {types: [audits_api], start_time: 20240501}}")},
	{"C32", svc + "audit-events-all.start_time", withServices(`{audit-events-all: {types: [audits_api], start_time: "2024-05-01"}}`)},
	{"C33", svc + "audit-events-all.drop_event_names", withServices("{audit-events-all: {types: [audits_api], drop_event_names: Decrypt}}")},
	{"C34", svc + "audit-events-all.auto_event_type", withServices("{audit-events-all: {types: [audits_api], auto_event_type: [true]}}")},
	{"C35", svc + "audit-events-all.time_slot_in_hours", withServices("{audit-events-all: {types: [audits_api], time_slot_in_hours: 1.5}}")},
	{"D1", "inputs.aws.requests_per_second", "inputs:\n  aws: {id: 1, credentials: {}, regions: [eu-west-1], services: {cwl_1: {log_group: /}}}\n"},
	{"D13", svc + "cwl_1", withServices("{cwl_1: null}")},
	{"D14", svc + "cwl_1", withServices("{cwl_1: 5}")},
	{"D15", svc + "cwl_1.tag", withServices("{cwl_1: {log_group: /, tag: 5}}")},
	{"D16", svc + "cwl_1.use_first_optimized_retrieval", withServices(`{cwl_1: {log_group: /, use_first_optimized_retrieval: "yes"}}`)},
	{"D17", svc + "cwl_1.log_group", withServices("{cwl_1: {types: [logs]}}")},
	{"D18", svc + "cwl_1.log_group", withServices("{cwl_1: {log_group: [a]}}")},
	{"D19", svc + "cwl_1.start_time", withServices("{cwl_1: {log_group: /, start_time: 5}}")},
	{"D20", svc + "cwl_1.start_time", withServices(`{cwl_1: {log_group: /, start_time: "2024-05-01 00:00:00"}}`)},
	{"E9", svc + "metrics-all", withServices("{metrics-all: null}")},
	{"E10", svc + "ec2", withServices("{ec2: [1]}")},
	{"E11", svc + "ec2.tag", withServices("{ec2: {tag: 5}}")},
	{"E12", svc + "metrics-all.metric_namespaces", withServices("{metrics-all: {}}")},
	{"E13", svc + "metrics-all.metric_namespaces", withServices("{metrics-all: {metric_namespaces: AWS/EC2}}")},
	{"E14", svc + "ec2.request_period_in_seconds", withServices("{ec2: {request_period_in_seconds: 90}}")},
	{"E15", svc + "ec2.start_time", withServices("{ec2: {start_time: 5}}")},
	{"E16", svc + "ec2.start_time", withServices(`{ec2: {start_time: "2024-05-01T00:00:00.5Z"}}`)},
	{"P1", "inputs.aws.credentials", withInput("credentials: {access_key: AKIAEXAMPLE}")},
	{"P2", "inputs.aws.credentials.access_key", withInput(`credentials: {access_key: "", access_secret: s}`)},
	{"P3", "inputs.aws.credentials.base_assume_role", withInput("credentials: {base_assume_role: devo-role, target_assume_role: 'arn:aws:iam::123456789012:role/reader'}")},
	{"P4", "inputs.aws.regions", withInput("regions: []")},
	{"P5", "inputs.aws.regions", withInput("regions: [eu-west-1, eu-wst-1]")},
	{"P6", "inputs.aws.requests_per_second", withInput("requests_per_second: 0")},
	{"P7", svc + "ec2.types", withServices("{ec2: {types: [logs]}}")},
	{"P8", svc + "audit-events-all.types", withServices("{audit-events-all: {types: [audits_api, audits_s3]}}")},
	{"P9", svc + "non-cloudwatch-logs.event_type_file_regex_patterns.flowlogs", withServices(`{non-cloudwatch-logs: {sqs_queue_name: q, event_type_file_regex_patterns: {flowlogs: "("}}}`)},
	{"P10", svc + "aws-guardduty.tag", withServices("{aws-guardduty: {tag: " + strings.Repeat("x", 1025) + "}}")},
	{"P11", svc + "audit-events-all.gap_until_now_in_minutes", withServices("{audit-events-all: {types: [audits_api], gap_until_now_in_minutes: -1}}")},
	{"P12", svc + "audit-events-all.time_slot_in_hours", withServices("{audit-events-all: {types: [audits_api], time_slot_in_hours: 0}}")},
	{"P13", "outputs.o.type", withOutputs("{o: {type: kafka}}")},
	{"P14", "outputs.o.config.address", withOutputs("{o: {type: syslog, config: {port: 514}}}")},
	{"P15", "outputs.o.config.chain", withOutputs("{o: {type: syslog, config: {address: h, port: 6514, type: SSL, chain: missing.pem}}}")},
	{"P16", "outputs.d.config", withOutputs("{d: {type: devo_platform, config: {address: h, port: 443}}}")},
	{"P18", svc + "aws-guardduty.tag", withServices("{aws-guardduty: {tag: 'a.{bucket}.{event_type}'}}")},
	{"P19", "outputs.o.config.type", withOutputs("{o: {type: relay, config: {address: h, port: 13000, type: UDP}}}")},
	{"P20", "globals.queue_max_size_in_messages", "globals: {queue_max_size_in_messages: many}\n" + withServices("{aws-guardduty: {}}")},
	{"P21", svc + "service-events-all.sqs_queue_nam", withServices("{service-events-all: {sqs_queue_name: q, sqs_queue_nam: r}}")},
	{"P22", svc + "service-event-all", withServices("{service-event-all: {sqs_queue_name: q}}")},
	{"P25", "globals.coordination.type", "globals: {coordination: {type: redis, config: {table: t1x, region: us-east-1}}}\n" + withServices("{aws-guardduty: {}}")},
	{"P26", "globals.coordination.config.table", "globals: {coordination: {type: dynamodb, config: {region: us-east-1}}}\n" + withServices("{aws-guardduty: {}}")},
}

// certificateRows need files on disk; TestCertificateRows covers them.
var certificateRows = []string{"P23", "P24"}

// equivalentRows carry the same message as A30/A31 in other sections. An
// input block that is missing or not a mapping has no services yet, so no
// section can be chosen: the collector always reports A30/A31.
var equivalentRows = []string{"B16", "B17", "C24", "C25", "D11", "D12", "E7", "E8"}

func TestUserConfigRows(t *testing.T) {
	for _, tc := range userRowCases {
		t.Run(tc.row, func(t *testing.T) {
			_, errs := load(t, "config.yaml", tc.config)
			if len(errs) != 1 {
				t.Fatalf("got %d errors, want exactly one %s:\n%v", len(errs), tc.row, errs)
			}
			e := errs[0]
			want := catalogue[tc.row]
			if e.Row != tc.row || e.Kind != want.Kind || e.ID != want.ID || e.Path != tc.path {
				t.Errorf("got row %s %s(%d) at %q, want row %s %s(%d) at %q", e.Row, e.Kind, e.ID, e.Path, tc.row, want.Kind, want.ID, tc.path)
			}
			if !strings.HasPrefix(e.Error(), want.Kind+"(") || strings.Contains(e.Msg, "{service_config_key_path}") || strings.Contains(e.Msg, "{input_config_key_path}") {
				t.Errorf("badly rendered: %s", e)
			}
		})
	}
}

func TestEveryUserRowIsCovered(t *testing.T) {
	covered := map[string]bool{}
	for _, tc := range userRowCases {
		covered[tc.row] = true
	}
	for _, r := range append(equivalentRows, certificateRows...) {
		covered[r] = true
	}
	for r, c := range catalogue {
		if c.scope == scopeUser && !covered[r] {
			t.Errorf("user-config row %s has no test case", r)
		}
	}
}

func TestMessagesRenderExactly(t *testing.T) {
	tests := []struct{ config, want string }{
		{withServices("{metrics-all: {metric_namespaces: [AWS/EC2], tag: 5}}"),
			`AwsServiceConfigurationError(8): "inputs.aws.services.metrics-all.tag" property must be a string`},
		{withServices("{service-events-all: {sqs_queue_name: q, tag: 5}}"),
			`AwsServiceConfigurationError(3): "inputs.aws.services.service-events-all.tag" property must be a string`},
		{withServices(`{cwl_1: {log_group: /, start_time: "x"}}`),
			`AwsServiceConfigurationError(1): The property "inputs.aws.services.cwl_1.start_time" from configuration is having a wrong format, expected pattern: "` + startTimeRegex + `"`},
		{"inputs:\n  aws: {id: 1, credentials: {}, regions: [eu-west-1], services: {cwl_1: {log_group: /}}}\n",
			`AwsInputConfigurationError(0): Mandatory property "requests_per_second" is missing (located at: aws.request_per_second)`},
		{withServices("{metrics-all: {metric_namespaces: AWS/EC2}}"),
			`AwsServiceConfigurationError(0): Mandatory property "metric_namespaces" property must be a list`},
		{withServices("{ec2: {request_period_in_seconds: 20}}"),
			`AwsServiceConfigurationError(1): When a service uses "metrics" type, the property "request_period_in_seconds" must have one of the following values: 1, 5, 10, 30, 60, or any multiple of 60`},
		{withServices("{audit-events-all: {types: [audits_s3], sqs_queue_name: [q]}}"),
			`AwsServiceConfigurationError(6): "inputs.aws.services.audit-events-all.sqs_queue_name" property must be a string`},
		{withServices("{service-events-all: {sqs_queue_name: q, auto_event_type: maybe}}"),
			`AwsServiceConfigurationError(7): "inputs.aws.services.service-events-all.auto_event_type" property must be a string`},
		{withInput("credentials: {access_key: a, target_assume_role: 'arn:aws:iam::123456789012:role/r'}"),
			`AwsInputConfigurationError(101): "inputs.aws.credentials" does not match any authentication mode (found: ["access_key", "target_assume_role"])`},
		{withServices("{ec2: {types: [logs]}}"),
			`AwsServiceConfigurationError(101): "inputs.aws.services.ec2.types" contains an unsupported value "logs" for this service, allowed: ["metrics"]`},
		{withServices("{aws-guardduty: {tag: 'a.{bucket}'}}"),
			`AwsServiceConfigurationError(107): "inputs.aws.services.aws-guardduty.tag" property is containing some unexpected placeholders, the allowed ones are: ["event_type", "account_id", "region_id", "format_version", "environment", "service_name"]`},
		{withOutputs("{o: {type: kafka}}"), `OutputConfigurationError(1): Output type "kafka" does not exist`},
		{withOutputs("{d: {type: devo_platform, config: {address: h, port: 443, type: TCP, chain: a, cert: b, key: c}}}"),
			"OutputConfigurationError(4): Devo Sender is not allowed to run without SSL feature"},
	}
	for _, tc := range tests {
		_, errs := load(t, "config.yaml", tc.config)
		if !slices.ContainsFunc(errs, func(e *Error) bool { return e.Error() == tc.want }) {
			t.Errorf("want %s\ngot:\n%v", tc.want, errs)
		}
	}
}

func TestFiveMistakesFiveErrors(t *testing.T) {
	const body = `
globals:
  devo_sender_compression_level: 12        # 1: P20, out of 0–9
outputs:
  devo_1: {type: devo_platform, config: {address: collector-eu.devo.io, port: 443}}   # 2: P16
inputs:
  aws:
    id: 1
    credentials: {access_key: AKIAEXAMPLE}  # 3: P1
    regions: [eu-west-1]
    services:
      metrics-all: {}                       # 4: E12
      audit-events-all:
        types: [audits_api]
        start_time: 2024-05-01              # 5: C32 (a date without time)
`
	_, errs := load(t, "config.yaml", body)
	got := errs.Rows()
	slices.Sort(got)
	if want := []string{"C32", "E12", "P1", "P16", "P20"}; !slices.Equal(got, want) {
		t.Fatalf("rows = %v, want %v\n%v", got, want, errs)
	}
	if n := strings.Count(errs.Error(), "\n"); n != 4 {
		t.Errorf("Errors.Error() has %d line breaks, want 4 (one problem per line)", n)
	}
}

func TestRuntimeError(t *testing.T) {
	e := RuntimeError("B27", "sqs_queue_name", "devo-q", "service_name", "cisco-umbrella", "submodule_config", "us-west-1", "reason", "AWS.SimpleQueueService.NonExistentQueue: gone")
	want := `AwsQueueException(0): Queue "devo-q" used by service "cisco-umbrella" in "us-west-1" region is not available: reason: AWS.SimpleQueueService.NonExistentQueue: gone`
	if e.Error() != want {
		t.Errorf("got  %s\nwant %s", e, want)
	}
	p17 := RuntimeError("P17", "address", "collector-eu.devo.io", "port", "443", "tls_alert", "certificate required")
	if p17.Error() != `OutputConnectionError(1): Client certificate rejected by "collector-eu.devo.io:443": certificate required` {
		t.Errorf("P17: %s", p17)
	}
	defer func() {
		if recover() == nil {
			t.Error("RuntimeError accepted a user-config row")
		}
	}()
	RuntimeError("A34")
}

// TestWriteAheadKey: the output extension key write_ahead is read (default
// true, false turns it off) and a value that is not a boolean is a typed error at its path.
func TestWriteAheadKey(t *testing.T) {
	c, errs := load(t, "config.yaml", withOutputs("{r: {type: relay, config: {address: h, port: 13000, type: TCP, write_ahead: false}}}"))
	if len(errs) != 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(c.Outputs) != 1 || c.Outputs[0].WriteAhead {
		t.Fatalf("write_ahead: false not read: %+v", c.Outputs)
	}
	c, errs = load(t, "config.yaml", withOutputs("{r: {type: relay, config: {address: h, port: 13000, type: TCP}}}"))
	if len(errs) != 0 || !c.Outputs[0].WriteAhead {
		t.Fatalf("write_ahead default: %v %v", errs, c.Outputs[0].WriteAhead)
	}
	_, errs = load(t, "config.yaml", withOutputs("{r: {type: relay, config: {address: h, port: 13000, type: TCP, write_ahead: sometimes}}}"))
	if len(errs) != 1 || errs[0].Path != "outputs.r.config.write_ahead" {
		t.Fatalf("write_ahead: sometimes gave %v, want one error at outputs.r.config.write_ahead", errs)
	}
}

// TestCertificateRows: plain validation parses the chain, certificate and
// key (P23 for each file that is not what it should be, all in one run) and
// checks that the key belongs to the certificate (P24).
func TestCertificateRows(t *testing.T) {
	set := certs.New(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out := func(chain, cert, key string) string {
		return withOutputs(fmt.Sprintf("{devo_eu: {type: devo_platform, config: {address: h, port: 443, chain: %q, cert: %q, key: %q}}}", chain, cert, key))
	}
	_, errs := load(t, "config.yaml", out(junk, junk, set.ClientCert))
	if got := errs.Rows(); !slices.Equal(got, []string{"P23", "P23", "P23"}) {
		t.Fatalf("junk files: rows %v, want three P23\n%v", got, errs)
	}
	for i, key := range []string{"cert", "chain", "key"} { // sorted by path
		if want := "outputs.devo_eu.config." + key; errs[i].Path != want {
			t.Errorf("problem %d at %s, want %s", i, errs[i].Path, want)
		}
	}
	_, errs = load(t, "config.yaml", out(set.CA, set.ClientCert, set.RogueKey))
	if got := errs.Rows(); !slices.Equal(got, []string{"P24"}) || errs[0].Path != "outputs.devo_eu.config.key" {
		t.Fatalf("mismatched key: %v", errs)
	}
	if _, errs = load(t, "config.yaml", out(set.CA, set.ClientCert, set.ClientKey)); len(errs) != 0 {
		t.Fatalf("good files: %v", errs)
	}
}
