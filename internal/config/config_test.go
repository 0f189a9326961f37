package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
)

// writeCerts puts a generated CA (chain.crt, ca.pem) and client certificate
// and key (acme_corp.crt, acme_corp.key) in dir: validation parses them.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	set := certs.New(t)
	for dst, src := range map[string]string{"chain.crt": set.CA, "ca.pem": set.CA, "acme_corp.crt": set.ClientCert, "acme_corp.key": set.ClientKey} {
		data, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, dst), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// setupExample lays out Devo's directory shape in a temp dir: config/ with
// the file, certs/ with the (fake) certificates the example names.
func setupExample(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"config", "certs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	writeCerts(t, filepath.Join(dir, "certs"))
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "config", "config"+filepath.Ext(src))
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCompleteExampleLoads(t *testing.T) {
	path := setupExample(t, "testdata/example.yaml")
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(c.Warnings) != 0 {
		t.Errorf("warnings: %v", c.Warnings)
	}
	base := filepath.Dir(filepath.Dir(path))
	if c.Dir != base || c.Globals.PersistenceDir != filepath.Join(base, "state") {
		t.Errorf("Dir %q, PersistenceDir %q; want base %q", c.Dir, c.Globals.PersistenceDir, base)
	}
	if len(c.Outputs) != 1 {
		t.Fatalf("outputs: %d", len(c.Outputs))
	}
	o := c.Outputs[0]
	if o.Chain != filepath.Join(base, "certs", "chain.crt") || o.Key != filepath.Join(base, "certs", "acme_corp.key") || o.Transport != "SSL" || o.Port != 443 {
		t.Errorf("output %+v", o)
	}
	if o.SendingTimeout != 5*time.Second || o.ConnectingMaxWait != time.Minute || o.AckSettle != 100*time.Millisecond || o.SpoolMaxBytes != 1024<<20 || o.Hostname == "" || !o.WriteAhead {
		t.Errorf("output defaults %+v", o)
	}
	g := c.Globals
	if g.QueueMaxBytes != 256<<20 || g.QueueMaxMessages != 10000 || g.GzipThreshold != 1.1 || g.CompressionBuffer != 51200 || g.LogFormat != "text" || g.QueueWrapMaxMessages != 100 ||
		g.InFlightMaxBytes != 96<<20 || g.MemoryLimitBytes != 0 {
		t.Errorf("globals %+v", g)
	}
	in := c.Inputs[0]
	if in.ID != "100001" || in.Credentials.Mode != CredKeys || in.Environment != "prod-1" || !slices.Equal(in.Regions, []string{"us-east-1", "eu-west-1"}) {
		t.Errorf("input %+v", in)
	}
	names := make([]string, len(in.Services))
	for i, s := range in.Services {
		names[i] = s.Name
	}
	if want := []string{"audit-events-all", "aws-guardduty", "cisco-umbrella", "cwl_all", "cwl_lambda", "ec2", "metrics-all", "non-cloudwatch-logs", "service-events-all", "sqs-cloudwatch-consumer"}; !slices.Equal(names, want) {
		t.Errorf("services %v", names)
	}
	byName := func(n string) *Service { return in.Services[slices.Index(names, n)] }

	ct := byName("audit-events-all")
	if ct.Kind != CloudTrailAPI || !ct.AutoEventType || ct.StartTime != "2024-05-01T00:00:00Z" || ct.GapUntilNow != 15*time.Minute || ct.TimeSlot != time.Hour || ct.Sources != nil || !slices.Equal(ct.DropEventNames, []string{"Decrypt", "GenerateDataKey"}) {
		t.Errorf("audit-events-all %+v", ct)
	}
	if ct.TagTemplate != "cloud.aws.cloudtrail.{event_type}.{account_id}.{region_id}.{format_version}.{environment}" {
		t.Errorf("cloudtrail template %q", ct.TagTemplate)
	}
	if got := ct.Deriver().EventType("ec2.amazonaws.com"); got != "ec2" {
		t.Errorf("cloudtrail derivation %q", got)
	}
	if s := byName("service-events-all"); s.Kind != EventBridge || s.QueueName != "devo-eventbridge-all.fifo" || s.SQSMaxMessages != 10 || s.SQSWaitTime != 20*time.Second || s.SQSVisibilityTimeout != 0 || s.MaxReceiveCount != 5 || s.Deriver().EventType("aws.ssm") != "ssm" {
		t.Errorf("service-events-all %+v", s)
	}
	if s := byName("sqs-cloudwatch-consumer"); s.Kind != SecurityHub || s.AutoEventType || s.DefaultEventType != "findings" {
		t.Errorf("securityhub %+v", s)
	}
	if s := byName("ec2"); s.Kind != Metrics || !slices.Equal(s.MetricNamespaces, []string{"AWS/EC2", "AWS/EC2Spot"}) || s.RequestPeriod != 300*time.Second || len(s.MetricStatistics) != 5 {
		t.Errorf("ec2 %+v", s)
	}
	if s := byName("metrics-all"); !slices.Equal(s.MetricNamespaces, []string{"AWS/EC2", "AWS/Lambda", "AWS/SQS"}) || s.StartTime != "2024-05-31T12:00:00Z" {
		t.Errorf("metrics-all %+v", s)
	}
	if s := byName("non-cloudwatch-logs"); s.Kind != S3Logs || !slices.Equal(s.Types, []string{"flowlogs", "cloudfrontlogs"}) || len(s.EventTypePatterns) != 2 ||
		s.TypeTagTemplates["cloudfrontlogs"] != "cloud.aws.cloudfront.{event_type}.{account_id}.{region_id}.{format_version}.{environment}" ||
		s.TypeTagTemplates["flowlogs"] != "cloud.aws.vpc.{event_type}.{account_id}.{region_id}.{format_version}.{environment}" {
		t.Errorf("non-cloudwatch-logs %+v", s)
	}
	if s := byName("cwl_lambda"); !s.Custom || s.Kind != Logs || s.LogGroup != "/aws/lambda/orders-api" || !s.UseFirstOptimizedRetrieval || s.DefaultEventType != "logs" {
		t.Errorf("cwl_lambda %+v", s)
	}
	if s := byName("cisco-umbrella"); s.Kind != Umbrella || !slices.Equal(s.Regions, []string{"us-west-1"}) || !s.AutoEventType || len(s.EventTypePatterns) != 3 || s.EventTypePatterns[0].EventType != "dns" {
		t.Errorf("cisco-umbrella %+v", s)
	}
	var sum bytes.Buffer
	c.Summary(&sum)
	for _, want := range []string{"input aws#100001 (enabled): credentials access key", "service cwl_all (custom, logs) types [logs] log group /", "queue devo-umbrella-logs regions [us-west-1]", "output devo_1 (devo_platform): collector-eu.devo.io:443 SSL"} {
		if !strings.Contains(sum.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, sum.String())
		}
	}
	if strings.Contains(sum.String(), "EXAMPLE-secret") {
		t.Error("summary prints the secret")
	}
}

func TestHostedJSONForm(t *testing.T) {
	c, err := Load(setupExample(t, "testdata/hosted.json"))
	if err != nil {
		t.Fatal(err)
	}
	in := c.Inputs[0]
	if in.Credentials.Mode != CredCrossAccount || in.Credentials.ExternalID != "7d1f0c2e-acme" || len(in.Services) != 2 || c.Outputs[0].Address != "collector-us.devo.io" {
		t.Errorf("hosted: %+v %+v", in, c.Outputs[0])
	}
}

func TestAllOutputTypes(t *testing.T) {
	path := setupExample(t, "testdata/outputs.yaml")
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range c.Outputs {
		got[o.Name] = o.Type + "/" + o.Transport + "/" + o.Format
	}
	want := map[string]string{"con": "console//json", "ihr": "in_house_relay/TCP/", "out": "stdout//devo_line",
		"relay_plain": "relay/TCP/", "relay_tls": "relay/SSL/", "side": "sidecar/TCP/", "sys": "syslog/SSL/"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("outputs %v, want %v", got, want)
	}
}

func TestNoOutputsMeansConsole(t *testing.T) {
	c, errs := load(t, "c.yml", withServices("{aws-guardduty: {}}"))
	if errs != nil || len(c.Outputs) != 1 || c.Outputs[0].Name != "console" || c.Outputs[0].Type != OutputConsole || c.Outputs[0].Format != "devo_line" {
		t.Fatalf("%v %+v", errs, c.Outputs)
	}
}

func TestBaseDirectory(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "collector.yaml")
	body := "outputs: {s: {type: syslog, config: {address: h, port: 6514, type: SSL, chain: ca.pem}}}\nglobals: {persistence: {config: {dir: st}}}\n" + withServices("{aws-guardduty: {}}")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	var errs Errors
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].Row != "P15" {
		t.Fatalf("want one P15, got %v", err)
	}
	if c.Dir != dir || c.Outputs[0].Chain != filepath.Join(dir, "certs", "ca.pem") || c.Globals.PersistenceDir != filepath.Join(dir, "st") {
		t.Errorf("Dir %q chain %q state %q", c.Dir, c.Outputs[0].Chain, c.Globals.PersistenceDir)
	}
	if !strings.Contains(errs[0].Msg, filepath.Join(dir, "certs", "ca.pem")) {
		t.Errorf("P15 names %q", errs[0].Msg)
	}
}

func TestEnvironmentExpansion(t *testing.T) {
	t.Setenv("DAC_SECRET", "s3cr3t")
	t.Setenv("DAC_PORT", "6514")
	t.Setenv("DAC_HOST", "relay.example")
	body := "outputs:\n  s:\n    type: syslog\n    config:\n      address: '${DAC_HOST}'\n      port: ${DAC_PORT}\n" +
		withInput(`credentials: {access_key: AKIAEXAMPLE, access_secret: "${DAC_SECRET}"}`)
	c, errs := load(t, "c.yaml", body)
	if errs != nil {
		t.Fatal(errs)
	}
	if c.Outputs[0].Port != 6514 || c.Outputs[0].Address != "relay.example" || c.Inputs[0].Credentials.AccessSecret != "s3cr3t" {
		t.Errorf("expanded: port %d address %q", c.Outputs[0].Port, c.Outputs[0].Address)
	}
	if got, _ := expandString("a$${B}c", os.LookupEnv); got != "a${B}c" {
		t.Errorf("escape: %q", got)
	}
	t.Setenv("DAC_EMPTY", "")
	for in, want := range map[string]string{
		"${DAC_NOT_SET_ANYWHERE:-443}": "443", "${DAC_EMPTY:-x}": "x", "${DAC_PORT:-1}": "6514", "<${DAC_NOT_SET_ANYWHERE:-}>": "<>",
	} {
		if got, err := expandString(in, os.LookupEnv); err != nil || got != want {
			t.Errorf("expandString(%q) = %q, %v; want %q", in, got, err, want)
		}
	}

	dir := t.TempDir()
	path := filepath.Join(dir, "c.yaml")
	os.WriteFile(path, []byte(withInput(`credentials: {access_key: a, access_secret: "${DAC_NOT_SET_ANYWHERE}"}`)), 0o644)
	_, err := Load(path)
	var errs2 Errors
	if err == nil || errors.As(err, &errs2) || !strings.Contains(err.Error(), "inputs.aws.credentials.access_secret") || !strings.Contains(err.Error(), "DAC_NOT_SET_ANYWHERE") || !strings.Contains(err.Error(), path) {
		t.Errorf("missing variable: %v", err)
	}
}

func TestDatesStayStrings(t *testing.T) {
	c, errs := load(t, "c.yaml", withServices("{cwl_1: {log_group: /, start_time: 2024-05-01T00:00:00Z}, ec2: {start_time: 2024-05-31T12:00:00Z}}"))
	if errs != nil {
		t.Fatal(errs)
	}
	for _, s := range c.Inputs[0].Services {
		if !strings.HasPrefix(s.StartTime, "2024-05-") || !strings.HasSuffix(s.StartTime, ":00:00Z") {
			t.Errorf("%s start_time %q", s.Name, s.StartTime)
		}
	}
}

func TestUnknownKeysWarn(t *testing.T) {
	body := "globals: {colour: blue}\n" + withServices("{ec2: {foo: 1}, sqs-cloudwatch-consumer: {sqs_queue_name: q, types: [x]}}") + "  other: {}\n"
	c, errs := load(t, "c.yaml", body)
	if errs != nil {
		t.Fatal(errs)
	}
	for _, want := range []string{"globals.colour", "inputs.aws.services.ec2.foo", "inputs.aws.services.sqs-cloudwatch-consumer.types", "inputs.other"} {
		if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.HasPrefix(w, want+":") }) {
			t.Errorf("no warning for %s in %v", want, c.Warnings)
		}
	}
}

func TestSyntaxErrorsArePlainAndNameTheLine(t *testing.T) {
	tests := []struct{ name, body, want string }{
		{"c.yaml", "inputs:\n  aws: [\n", "line"},
		{"c.json", "{\n  \"inputs\": {\n    \"aws\": 1,\n  }\n}", "line 4"},
		{"c.yaml", "a: 1\na: 2\n", "line 2"},
		{"c.toml", "x = 1", "unsupported extension"},
		{"c.yaml", "- 1\n", "must be a mapping"},
	}
	for _, tc := range tests {
		path := filepath.Join(t.TempDir(), tc.name)
		os.WriteFile(path, []byte(tc.body), 0o644)
		c, err := Load(path)
		var errs Errors
		if err == nil || c != nil || errors.As(err, &errs) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s %q: got %v", tc.name, tc.body, err)
		}
	}
	if _, err := Load(filepath.Join(t.TempDir(), "absent.yaml")); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestGlobalOverridesMerge(t *testing.T) {
	body := "globals: {debug: false, name: 'my collector.1', persistence: {type: filesystem, config: {directory_name: /var/state}}}\nglobal_overrides: {debug_status: true, queue_max_size_in_mb: 64}\n" + withServices("{aws-guardduty: {}}")
	c, errs := load(t, "c.yaml", body)
	if errs != nil {
		t.Fatal(errs)
	}
	g := c.Globals
	if !g.Debug || g.QueueMaxBytes != 64<<20 || g.Name != "my_collector_1" || g.PersistenceDir != "/var/state" {
		t.Errorf("globals %+v", g)
	}
}

// The memory keys are read in MiB; 0 turns the in-flight bound off.
func TestMemoryKeys(t *testing.T) {
	body := "globals: {in_flight_max_size_in_mb: 0, memory_limit_in_mb: 300}\n" + withServices("{aws-guardduty: {}}")
	c, errs := load(t, "c.yaml", body)
	if errs != nil {
		t.Fatal(errs)
	}
	if g := c.Globals; g.InFlightMaxBytes != 0 || g.MemoryLimitBytes != 300<<20 {
		t.Errorf("globals %+v", g)
	}
	if _, errs := load(t, "c.yaml", "globals: {in_flight_max_size_in_mb: -1}\n"+withServices("{aws-guardduty: {}}")); errs == nil {
		t.Error("a negative in_flight_max_size_in_mb was accepted")
	}
}

func TestCredentialModes(t *testing.T) {
	const role = "'arn:aws:iam::123456789012:role/devo-reader'"
	tests := []struct {
		creds string
		mode  CredMode
	}{
		{"{}", CredDefaultChain},
		{"null", CredDefaultChain},
		{"{access_key: AKIAEXAMPLE0001, access_secret: s}", CredKeys},
		{"{access_key: AKIAEXAMPLE0001, access_secret: s, base_assume_role: " + role + "}", CredKeysRole},
		{"{access_key: AKIAEXAMPLE0001, access_secret: s, base_assume_role: " + role + ", assume_role_external_id: x}", CredKeysRole},
		{"{base_assume_role: " + role + ", target_assume_role: 'arn:aws-us-gov:iam::123456789012:role/path/r'}", CredCrossAccount},
		{"{base_assume_role: " + role + ", target_assume_role: " + role + ", assume_role_external_id: x}", CredCrossAccount},
	}
	for _, tc := range tests {
		c, errs := load(t, "c.yaml", withInput("credentials: "+tc.creds))
		if errs != nil || c.Inputs[0].Credentials.Mode != tc.mode {
			t.Errorf("%s: %v mode %v, want %v", tc.creds, errs, c.Inputs[0].Credentials.Mode, tc.mode)
		}
	}
	for _, bad := range []string{"{access_secret: s}", "{base_assume_role: " + role + "}", "{target_assume_role: " + role + "}",
		"{assume_role_external_id: x}", "{access_key: a, access_secret: s, assume_role_external_id: x}",
		"{access_key: a, access_secret: s, base_assume_role: " + role + ", target_assume_role: " + role + "}"} {
		_, errs := load(t, "c.yaml", withInput("credentials: "+bad))
		if !slices.Equal(errs.Rows(), []string{"P1"}) {
			t.Errorf("%s: %v, want P1", bad, errs)
		}
	}
}

func TestSecretsNeverPrinted(t *testing.T) {
	c := Credentials{AccessKey: "AKIAEXAMPLE0001", AccessSecret: "TOP-SECRET-VALUE", ExternalID: "EXT-SECRET", Mode: CredKeys}
	in := &Input{Credentials: c}
	var logged bytes.Buffer
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("creds", "credentials", c)
	for _, s := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%v", in), fmt.Sprintf("%+v", *in), logged.String()} {
		if strings.Contains(s, "TOP-SECRET") || strings.Contains(s, "EXT-SECRET") || strings.Contains(s, "AKIAEXAMPLE0001") {
			t.Errorf("secret printed: %s", s)
		}
		if !strings.Contains(s, "0001") {
			t.Errorf("access key hint missing: %s", s)
		}
	}
}

func TestServiceDetails(t *testing.T) {
	body := "inputs:\n  aws:\n    id: 7\n    credentials: {}\n    regions: [eu-west-1]\n    environment: prod-1\n" +
		"    endpoint_url: http://127.0.0.1:4566\n    endpoints: {logs: 'http://127.0.0.1:9000'}\n" +
		"    services:\n" +
		"      audit-events-all: {types: [audit_apis], sources: s3.amazonaws.com, tag: 'my.trail.{event_type}', endpoints: {cloudtrail: 'https://ct.example'}}\n" +
		"      cwm: {types: [metrics], metric_namespaces: [AWS/Lambda], metric_statistics: [Sum, p99], request_period_in_seconds: 120}\n" +
		"      cwl: {log_group: 'app-*', requests_per_second: 3}\n" +
		"      non-cloudwatch-logs: {sqs_queue_name: 'https://sqs.eu-west-1.amazonaws.com/1/q', types: [cloudfrontlogs], auto_event_type: 'true', event_type_file_regex_patterns: {cf: '\\.gz$', vpc: 'vpcflowlogs/'}}\n" +
		"      service-events-all: {sqs_queue_name: q.fifo, sqs_max_messages: 5, max_receive_count: 9, regions: [us-east-1]}\n"
	c, errs := load(t, "c.yaml", body)
	if len(errs) != 1 || errs[0].Row != "D1" {
		t.Fatalf("want only D1 (requests_per_second belongs to the input), got %v", errs)
	}
	in := c.Inputs[0]
	if !in.S3ForcePathStyle {
		t.Error("endpoint_url must turn on path-style S3")
	}
	by := map[string]*Service{}
	for _, s := range in.Services {
		by[s.Name] = s
	}
	ct := by["audit-events-all"]
	if ct.Kind != CloudTrailAPI || !slices.Equal(ct.Types, []string{"audits_api"}) || !slices.Equal(ct.Sources, []string{"s3.amazonaws.com"}) || ct.TagTemplate != "my.trail.{event_type}" || ct.Tag != ct.TagTemplate {
		t.Errorf("audit %+v", ct)
	}
	if ct.Endpoints["cloudtrail"] != "https://ct.example" || ct.Endpoints["logs"] != "http://127.0.0.1:9000" || ct.Endpoints["sqs"] != "http://127.0.0.1:4566" {
		t.Errorf("endpoints %v", ct.Endpoints)
	}
	if m := by["cwm"]; m.Kind != Metrics || !m.Custom || !slices.Equal(m.MetricStatistics, []string{"Sum", "p99"}) || m.RequestPeriod != 2*time.Minute {
		t.Errorf("cwm %+v", m)
	}
	if l := by["cwl"]; l.Kind != Logs || l.LogGroup != "app-*" {
		t.Errorf("cwl %+v", l)
	}
	if !slices.Contains(c.Warnings, "inputs.aws.services.cwl.requests_per_second: unknown key, ignored") {
		t.Errorf("warnings %v", c.Warnings)
	}
	n := by["non-cloudwatch-logs"]
	if !n.AutoEventType || n.TagTemplate != "cloud.aws.cloudfront.{event_type}.{account_id}.{region_id}.{format_version}.{environment}" || len(n.TypeTagTemplates) != 1 ||
		len(n.EventTypePatterns) != 2 || n.EventTypePatterns[0].EventType != "cf" || n.EventTypePatterns[1].EventType != "vpc" {
		t.Errorf("non-cloudwatch-logs %+v", n)
	}
	if e := by["service-events-all"]; e.SQSMaxMessages != 5 || e.MaxReceiveCount != 9 || !slices.Equal(e.Regions, []string{"us-east-1"}) {
		t.Errorf("service-events-all %+v", e)
	}
}

func TestTagLengthUsesRealValues(t *testing.T) {
	// 1024 minus the expanded tail fits; one more character does not.
	tail := ".{region_id}"
	fit := strings.Repeat("x", 1024-len(".eu-west-1"))
	if _, errs := load(t, "c.yaml", withServices("{aws-guardduty: {tag: '"+fit+tail+"'}}")); errs != nil {
		t.Errorf("exactly 1024: %v", errs)
	}
	_, errs := load(t, "c.yaml", withServices("{aws-guardduty: {tag: 'x"+fit+tail+"'}}"))
	if len(errs) != 1 || errs[0].Row != "P10" || !strings.Contains(errs[0].Msg, "expands to 1025 characters") {
		t.Errorf("1025: %v", errs)
	}
}

func TestValidateOnBuiltConfig(t *testing.T) {
	c := &Config{Outputs: []*Output{{Name: "d", Type: OutputDevo, Chain: "/nonexistent/chain.crt"}}}
	errs := c.Validate()
	if !slices.Equal(errs.Rows(), []string{"P15"}) {
		t.Errorf("%v", errs)
	}
}
