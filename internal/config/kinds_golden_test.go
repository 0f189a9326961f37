package config

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/kinds.golden from the current decoder")

// kindCases are service blocks of every kind, each with defaults, overrides
// and mistakes, so that the decoded settings, the problems and the warnings
// of every kind are pinned. The golden file was first written by the
// one-function decoder that the per-kind table replaced; any difference is a
// change of behaviour and must be deliberate. The cases "auto_event_type
// where no kind derives" and "s3 logs only invalid types" were added with
// the table: the old decoder panicked on the first and, on the second, left
// non-cloudwatch-logs with no type (P7 is reported either way).
var kindCases = []struct{ name, config string }{
	{"eventbridge defaults", withServices("{service-events-all: {sqs_queue_name: q.fifo}}")},
	{"eventbridge overrides", withServices(`{service-events-all: {sqs_queue_name: "https://sqs.eu-west-1.amazonaws.com/1/q.fifo", auto_event_type: "true", tag: 'my.{event_type}.{account_id}.{region_id}.{format_version}', sqs_max_messages: 3, sqs_wait_time_seconds: 0, sqs_visibility_timeout: 60, max_receive_count: 9, regions: [us-east-1, us-east-1], endpoints: {sqs: "http://localhost:4566", kinesis: "http://x"}, request_period_in_seconds: 30}}`)},
	{"eventbridge mistakes", withServices("{service-events-all: {sqs_queue_name: q, auto_event_type: maybe, sqs_max_messages: 11, sqs_wait_time_seconds: -1, sqs_visibility_timeout: 0, max_receive_count: 0, start_time: x, types: [a], log_group: /, request_period_in_seconds: 0}}")},
	{"eventbridge bad regions", withServices("{service-events-all: {sqs_queue_name: q, regions: [mars-1], endpoints: [1]}}")},
	{"securityhub defaults", withServices("{sqs-cloudwatch-consumer: {sqs_queue_name: sh.fifo}}")},
	{"securityhub auto", withServices("{sqs-cloudwatch-consumer: {sqs_queue_name: sh.fifo, auto_event_type: true}}")},
	{"securityhub missing queue", withServices("{sqs-cloudwatch-consumer: {tag: 5}}")},
	{"cloudtrail api defaults", withServices("{audit-events-all: {types: [audits_api]}}")},
	{"cloudtrail api spelling", withServices("{audit-events-all: {types: audit_apis, sqs_queue_name: q}}")},
	{"cloudtrail api overrides", withServices(`{audit-events-all: {types: [audits_api], start_time: "2024-05-01T00:00:00.123+02:00", gap_until_now_in_minutes: 0, time_slot_in_hours: 24, sources: [s3.amazonaws.com, kms.amazonaws.com], drop_event_names: [Decrypt], auto_event_type: true, request_period_in_seconds: 120, sqs_max_messages: 2}}`)},
	{"cloudtrail api one source", withServices("{audit-events-all: {types: [audits_api], sources: s3.amazonaws.com, drop_event_names: []}}")},
	{"cloudtrail api all sources in list", withServices("{audit-events-all: {types: [audits_api], sources: [all_sources, s3.amazonaws.com]}}")},
	{"cloudtrail api mistakes", withServices("{audit-events-all: {types: [audits_api], sources: [1], drop_event_names: [1], gap_until_now_in_minutes: 1.5, time_slot_in_hours: -2, start_time: [x], tag: 'a.{nope}'}}")},
	{"cloudtrail no types", withServices("{audit-events-all: {}}")},
	{"cloudtrail empty types", withServices("{audit-events-all: {types: []}}")},
	{"cloudtrail wrong type", withServices("{audit-events-all: {types: [metrics]}}")},
	{"cloudtrail types not a list", withServices("{audit-events-all: {types: {a: 1}}}")},
	{"cloudtrail null", withServices("{audit-events-all: null}")},
	{"cloudtrail s3 defaults", withServices("{audit-events-all: {types: [audits_s3], sqs_queue_name: ct}}")},
	{"cloudtrail s3 overrides", withServices(`{audit-events-all: {types: [audits_s3], sqs_queue_name: ct, drop_event_names: [Decrypt], sources: [s3.amazonaws.com], start_time: "2024-05-01T00:00:00Z", time_slot_in_hours: 2, auto_event_type: "false", event_type_file_regex_patterns: {x: y}}}`)},
	{"cloudtrail s3 mistakes", withServices("{audit-events-all: {types: [audits_s3], start_time: 5, auto_event_type: 5}}")},
	{"flowlogs and cloudfront defaults", withServices("{non-cloudwatch-logs: {sqs_queue_name: q}}")},
	{"cloudfront only", withServices("{non-cloudwatch-logs: {types: [cloudfrontlogs], sqs_queue_name: q, auto_event_type: true, tag: 'x.{event_type}.{account_id}.{region_id}.{format_version}'}}")},
	{"flowlogs patterns", withServices(`{non-cloudwatch-logs: {types: [flowlogs, flowlogs], sqs_queue_name: q, start_time: "2024-05-01T00:00:00Z", event_type_file_regex_patterns: {vpc: "^AWSLogs/", cf: "\\.gz$"}}}`)},
	{"s3 logs pattern mistakes", withServices(`{non-cloudwatch-logs: {types: [nope, flowlogs], sqs_queue_name: q, event_type_file_regex_patterns: {"Bad Type": "x", ok: "(", fine: 5}}}`)},
	{"s3 logs patterns not a map", withServices("{non-cloudwatch-logs: {sqs_queue_name: q, event_type_file_regex_patterns: [a]}}")},
	{"s3 logs empty types", withServices("{non-cloudwatch-logs: {sqs_queue_name: q, types: []}}")},
	{"s3 logs environment", "inputs:\n  aws:\n    id: 1\n    environment: prod-1\n    credentials: {}\n    regions: [eu-west-1, us-east-1]\n    services: {non-cloudwatch-logs: {sqs_queue_name: q}, aws-guardduty: {}}\n"},
	{"umbrella defaults", withServices("{cisco-umbrella: {sqs_queue_name: u}}")},
	{"umbrella overrides", withServices(`{cisco-umbrella: {sqs_queue_name: u, auto_event_type: false, event_type_file_regex_patterns: {dns: "dns/"}, types: [x], sqs_wait_time_seconds: 5}}`)},
	{"umbrella auto true", withServices("{cisco-umbrella: {sqs_queue_name: u, auto_event_type: true}}")},
	{"metrics-all", withServices(`{metrics-all: {types: [metrics], metric_namespaces: [AWS/Lambda], metric_statistics: [Sum, p99, p99.9], request_period_in_seconds: 300, start_time: "2024-05-31T12:00:00Z"}}`)},
	{"metrics-all mistakes", withServices(`{metrics-all: {metric_namespaces: [], metric_statistics: [Median], request_period_in_seconds: 20, start_time: "2024-05-31T12:00:00+00:00", sqs_queue_name: q}}`)},
	{"metrics namespaces not strings", withServices("{metrics-all: {metric_namespaces: [1], metric_statistics: []}}")},
	{"metrics statistics not a list", withServices("{metrics-all: {metric_namespaces: [AWS/SQS], metric_statistics: Sum, request_period_in_seconds: '60'}}")},
	{"ec2 defaults", withServices("{ec2: {}}")},
	{"ec2 overrides", withServices("{ec2: {types: [metrics, metrics], metric_namespaces: [AWS/EC2], request_period_in_seconds: 1, regions: [us-west-2]}}")},
	{"ec2 null", withServices("{ec2: null}")},
	{"custom metrics", withServices("{m_1: {types: [metrics], metric_namespaces: [AWS/Lambda]}}")},
	{"custom metrics without namespaces", withServices("{m_1: {types: metrics}}")},
	{"custom two types", withServices("{m_1: {types: [metrics, logs], metric_namespaces: [AWS/Lambda]}}")},
	{"custom wrong type", withServices("{m_1: {types: [audits_api], log_group: /}}")},
	{"custom logs defaults", withServices("{cwl_1: {log_group: /}}")},
	{"custom logs overrides", withServices(`{cwl_1: {types: [logs], log_group: "/aws/lambda/*", use_first_optimized_retrieval: true, start_time: "2024-05-01T00:00:00Z", request_period_in_seconds: 600, tag: 'my.logs', endpoints: {logs: "http://127.0.0.1:1"}}}`)},
	{"custom logs mistakes", withServices("{cwl_1: {log_group: '', use_first_optimized_retrieval: 1, start_time: 2024, metric_namespaces: [x], request_period_in_seconds: -5}}")},
	{"custom logs without requests_per_second", "inputs:\n  aws: {id: 1, credentials: {}, regions: [eu-west-1], services: {cwl_1: {log_group: /}, ec2: {}}}\n"},
	{"guardduty defaults", withServices("{aws-guardduty: {}}")},
	{"guardduty overrides", withServices(`{aws-guardduty: {start_time: "2024-05-01T00:00:00Z", request_period_in_seconds: 300, types: [findings], regions: [eu-central-1, us-gov-west-1]}}`)},
	{"guardduty mistakes", withServices(`{aws-guardduty: {start_time: "2024-05-01", tag: [x], sqs_queue_name: q}}`)},
	{"guardduty not a map", withServices("{aws-guardduty: 5}")},
	{"input endpoints", "inputs:\n  aws:\n    id: 1\n    credentials: {}\n    regions: [eu-west-1]\n    endpoint_url: http://127.0.0.1:4566\n    endpoints: {s3: 'http://127.0.0.1:9000', cloudtrail: 'http://127.0.0.1:7000'}\n    services: {service-events-all: {sqs_queue_name: q, endpoints: {sqs: 'http://127.0.0.1:5000'}}, audit-events-all: {types: [audits_api]}}\n"},
	{"every kind at once", withServices("{service-events-all: {sqs_queue_name: a.fifo}, sqs-cloudwatch-consumer: {sqs_queue_name: b.fifo}, audit-events-all: {types: [audits_s3], sqs_queue_name: c}, metrics-all: {metric_namespaces: [AWS/SQS]}, ec2: {}, non-cloudwatch-logs: {sqs_queue_name: d}, aws-guardduty: {}, cisco-umbrella: {sqs_queue_name: e}, cwl_1: {log_group: /}, m_1: {types: [metrics], metric_namespaces: [AWS/S3]}}")},
	{"auto_event_type where no kind derives", withServices("{metrics-all: {metric_namespaces: [AWS/SQS], auto_event_type: 5}, cwl_1: {log_group: /, auto_event_type: true}, aws-guardduty: {auto_event_type: [1]}}")},
	{"s3 logs only invalid types", withServices("{non-cloudwatch-logs: {sqs_queue_name: q, types: [nope]}}")},
	{"services empty", withServices("{}")},
	{"services not a map", withServices("[a]")},
}

func init() {
	// Every user-config row of the catalogue is a case as well.
	for _, tc := range userRowCases {
		kindCases = append(kindCases, struct{ name, config string }{"row " + tc.row, tc.config})
	}
}

// dumpService prints every setting a source reads, through the selectors the
// sources use, so the golden file also proves those selectors still compile.
func dumpService(b *bytes.Buffer, s *Service) {
	list := func(l []string) string {
		if l == nil {
			return "nil"
		}
		return fmt.Sprintf("%q", l)
	}
	fmt.Fprintf(b, "  service %s custom=%v kind=%s sqs=%v types=%s\n", s.Name, s.Custom, s.Kind, s.Kind.SQS(), list(s.Types))
	fmt.Fprintf(b, "    tag=%q template=%q\n", s.Tag, s.TagTemplate)
	if s.TypeTagTemplates != nil {
		for _, t := range sortedKeys(s.TypeTagTemplates) {
			fmt.Fprintf(b, "    type template %s=%q\n", t, s.TypeTagTemplates[t])
		}
	}
	re := "nil"
	if s.EventTypeRegex != nil {
		re = s.EventTypeRegex.String()
	}
	dv := s.Deriver()
	fmt.Fprintf(b, "    event type default=%q field=%q re=%s auto=%v deriver=%q/%v/%q\n", s.DefaultEventType, s.EventTypeField, re, s.AutoEventType, dv.Field, dv.Re != nil, dv.Default)
	fmt.Fprintf(b, "    queue=%q max=%d wait=%s visibility=%s receives=%d\n", s.QueueName, s.SQSMaxMessages, s.SQSWaitTime, s.SQSVisibilityTimeout, s.MaxReceiveCount)
	fmt.Fprintf(b, "    start=%q gap=%s slot=%s sources=%s drop=%s\n", s.StartTime, s.GapUntilNow, s.TimeSlot, list(s.Sources), list(s.DropEventNames))
	fmt.Fprintf(b, "    log group=%q optimized=%v namespaces=%s statistics=%s period=%s\n", s.LogGroup, s.UseFirstOptimizedRetrieval, list(s.MetricNamespaces), list(s.MetricStatistics), s.RequestPeriod)
	for _, p := range s.EventTypePatterns {
		fmt.Fprintf(b, "    pattern %s=%s\n", p.EventType, p.Re)
	}
	fmt.Fprintf(b, "    regions=%s endpoints=%v\n", list(s.Regions), s.Endpoints)
}

func TestKindsGolden(t *testing.T) {
	var all bytes.Buffer
	for _, tc := range kindCases {
		var b bytes.Buffer
		fmt.Fprintf(&b, "=== %s\n", tc.name)
		c, errs := load(t, "config.yaml", tc.config)
		for _, e := range errs {
			fmt.Fprintf(&b, "error %s at %s: %s\n", e.Row, e.Path, e.Detail())
		}
		for _, w := range c.Warnings {
			fmt.Fprintf(&b, "warning %s\n", w)
		}
		for _, in := range c.Inputs {
			fmt.Fprintf(&b, "input rps=%g\n", in.RequestsPerSecond)
			for _, s := range in.Services {
				dumpService(&b, s)
			}
		}
		if len(errs) == 0 {
			var sum bytes.Buffer
			c.Summary(&sum)
			// The first line names the temporary file.
			_, rest, _ := strings.Cut(sum.String(), "\n")
			b.WriteString(rest)
		}
		// Paths under the temporary directory differ from run to run.
		all.WriteString(strings.ReplaceAll(b.String(), c.Dir, "<base>"))
	}
	const golden = "testdata/kinds.golden"
	if *updateGolden {
		if err := os.WriteFile(golden, all.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if got := all.String(); got != string(want) {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(want), "\n")
		for i := 0; i < max(len(gl), len(wl)); i++ {
			g, w := "", ""
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(wl) {
				w = wl[i]
			}
			if g != w {
				t.Fatalf("decoded services differ from %s at line %d (go test -run TestKindsGolden -update rewrites it):\ngot  %s\nwant %s", golden, i+1, g, w)
			}
		}
	}
}
