package s3sqs

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	ctYAML     = "        types: [audits_s3]\n        sqs_queue_name: ct\n        auto_event_type: true\n        drop_event_names: [Decrypt]\n"
	ctYAMLOff  = "        types: [audits_s3]\n        sqs_queue_name: ct\n"
	logsYAML   = "        types: [flowlogs, cloudfrontlogs]\n        sqs_queue_name: logs\n        auto_event_type: true\n"
	logsOff    = "        types: [flowlogs, cloudfrontlogs]\n        sqs_queue_name: logs\n"
	umbrellaYA = "        sqs_queue_name: umbrella\n"
)

// TestGolden runs each testdata object through the real handler (fake S3,
// real pipeline queue) and compares the Devo lines with testdata/*.golden.
func TestGolden(t *testing.T) {
	cases := []struct {
		name, service, yaml, in, key string
		gzip                         bool
	}{
		{"cloudtrail_auto", "audit-events-all", ctYAML, "cloudtrail.in",
			"AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/123456789012_CloudTrail_eu-west-1_20240531T1315Z_a1B2c3D4e5F6g7H8.json.gz", true},
		{"cloudtrail_fixed", "audit-events-all", ctYAMLOff, "cloudtrail.in",
			"trail/AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/123456789012_CloudTrail_eu-west-1_20240531T1320Z_x.json", false},
		{"vpc_v2", "non-cloudwatch-logs", logsYAML, "vpc_v2.in",
			"AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/05/31/123456789012_vpcflowlogs_eu-west-1_fl-0a1b2c3d4e5f60718_20240531T1315Z_3f2a9c1d.log.gz", true},
		{"vpc_v5", "non-cloudwatch-logs", logsYAML, "vpc_v5.in",
			"AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/05/31/123456789012_vpcflowlogs_eu-west-1_fl-0fff_20240531T1315Z_9a.log.gz", true},
		{"vpc_by_content_auto_off", "non-cloudwatch-logs", logsOff, "vpc_v2.in", "exports/flows/part 1.txt", false},
		{"cloudfront", "non-cloudwatch-logs", logsYAML, "cloudfront.in", "cf/E2QWRUHEXAMPLE.2024-05-31-13.7c1d2e3f.gz", true},
		{"cloudfront_by_content", "non-cloudwatch-logs", logsYAML, "cloudfront.in", "cf/renamed-export.log", false},
		{"umbrella_dns", "cisco-umbrella", umbrellaYA, "umbrella_dns.in", "umbrella/dnslogs/2024-05-31/2024-05-31-13-10-a1b2.csv.gz", true},
		{"umbrella_ip", "cisco-umbrella", umbrellaYA, "umbrella_ip.in", "umbrella/iplogs/2024-05-31/2024-05-31-13-10-c3d4.csv.gz", true},
		{"umbrella_proxy", "cisco-umbrella", umbrellaYA, "umbrella_proxy.in", "umbrella/proxylogs/2024-05-31/2024-05-31-13-10-e5f6.csv.gz", true},
		{"umbrella_other", "cisco-umbrella", umbrellaYA, "umbrella_ip.in", "umbrella/auditlogs/2024-05-31/2024-05-31-13-10-0000.csv.gz", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			svc := svcconfig.Load(t, tc.service, tc.yaml, "prod-1")
			h := newHarness(t, svc, nil)
			data, err := os.ReadFile(filepath.Join("testdata", tc.in))
			if err != nil {
				t.Fatal(err)
			}
			if tc.gzip {
				data = gz(t, data)
			}
			h.s3.put("acme-bucket", tc.key, data)
			out := h.handle(s3Body("eu-west-1", "acme-bucket", tc.key))
			if out.err != nil {
				t.Fatalf("handle: %v", out.err)
			}
			if !out.fired || !out.res.OK() || out.res.Delivered != len(out.events) {
				t.Fatalf("batch fired=%v result=%+v, events %d", out.fired, out.res, len(out.events))
			}
			var got []byte
			for _, ev := range out.events {
				got = wire.AppendDevo(got, "collector", ev.Tag, ev.Payload)
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
			if len(out.events) == 0 {
				t.Errorf("no events: a golden case must produce some")
			}
		})
	}
}
