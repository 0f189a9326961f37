package tag

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
)

func TestExpand(t *testing.T) {
	full := Values{EventType: "ec2", AccountID: "123456789012", RegionID: "eu-west-1", Environment: "prod-1", ServiceName: "audit-events-all"}
	noEnv := full
	noEnv.Environment = ""
	tests := []struct {
		name, tmpl string
		v          Values
		want       string
	}{
		{"built-in with environment", Base("cloud.aws.cloudtrail", true), full, "cloud.aws.cloudtrail.ec2.123456789012.eu-west-1.1.prod-1"},
		{"built-in, environment unset: no trailing dot", Base("cloud.aws.cloudtrail", true), noEnv, "cloud.aws.cloudtrail.ec2.123456789012.eu-west-1.1"},
		{"built-in without environment level", Base("cloud.aws.cloudwatch", false), Values{EventType: "metrics", AccountID: "936082584952", RegionID: "us-east-2"}, "cloud.aws.cloudwatch.metrics.936082584952.us-east-2.1"},
		{"environment in the middle, unset", "my.{environment}.{event_type}", Values{EventType: "x"}, "my.x"},
		{"environment first, unset", "{environment}x", Values{}, "x"},
		{"no placeholders: used as is", "my.custom.aws.trail", full, "my.custom.aws.trail"},
		{"service name", "my.{service_name}.{region_id}", full, "my.audit-events-all.eu-west-1"},
		{"explicit format version", "a.{format_version}", Values{FormatVersion: "2"}, "a.2"},
		{"repeated placeholder", "{region_id}.{region_id}", full, "eu-west-1.eu-west-1"},
		{"braces that are no placeholder stay literal", "a.{}.{x-y}.{", full, "a.{}.{x-y}.{"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tp, err := Compile(tc.tmpl)
			if err != nil {
				t.Fatal(err)
			}
			if got := tp.Expand(tc.v); got != tc.want {
				t.Errorf("Expand(%q) = %q, want %q", tc.tmpl, got, tc.want)
			}
			if tp.String() != tc.tmpl {
				t.Errorf("String() = %q", tp.String())
			}
		})
	}
}

func TestCompileRejectsUnknownPlaceholders(t *testing.T) {
	_, err := Compile("cloud.{event_type}.{bucket}.{Region}")
	if !errors.Is(err, ErrPlaceholders) {
		t.Fatalf("err = %v, want ErrPlaceholders", err)
	}
	if !strings.Contains(err.Error(), "bucket, Region") {
		t.Errorf("error %q does not name the placeholders", err)
	}
	if got := Unknown("a.{event_type}.{bucket}.{bucket}"); !slices.Equal(got, []string{"bucket"}) {
		t.Errorf("Unknown = %v", got)
	}
}

func TestMissingAndPlaceholders(t *testing.T) {
	tests := []struct {
		tmpl string
		want []string
	}{
		{Base("cloud.aws.vpc", false), nil},
		{Base("cloud.aws.vpc", true), nil},
		{"cloud.aws.vpc.{event_type}.{region_id}", []string{AccountID, Format}},
		{"plain", Required},
	}
	for _, tc := range tests {
		if got := Missing(tc.tmpl); !slices.Equal(got, tc.want) {
			t.Errorf("Missing(%q) = %v, want %v", tc.tmpl, got, tc.want)
		}
	}
	tp := MustCompile(Base("x", true))
	if !tp.Has(Environment) || tp.Has(ServiceName) {
		t.Error("Has reports the wrong placeholders")
	}
	if got := Placeholders("{a}{b}{a}"); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("Placeholders = %v", got)
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"ec2", "ec2"},
		{"ec2-instance-connect", "ec2-instance-connect"},
		{"EC2", "ec2"},
		{"a.b c", "a_b_c"},
		{"Ünïcode", "_n_code"},
		{"under_score", "under_score"},
		{"", "events"},
	}
	for _, tc := range tests {
		if got := Sanitize(tc.in, "events"); got != tc.want {
			t.Errorf("Sanitize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestDeriverEventBridge(t *testing.T) {
	d := Deriver{Field: "source", Re: regexp.MustCompile(`^aws\.([a-z0-9-]+)$`), Default: "events"}
	tests := map[string]string{
		"aws.ec2": "ec2", "aws.ssm": "ssm", "aws.tag": "tag", "aws.cloudtrail": "cloudtrail",
		"aws.events": "events", "com.acme.orders": "events", "": "events",
	}
	for in, want := range tests {
		if got := d.EventType(in); got != want {
			t.Errorf("EventType(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestDeriverCloudTrail(t *testing.T) {
	d := Deriver{Field: "eventSource", Re: regexp.MustCompile(`^([a-z0-9-]+)\.amazonaws\.com$`), Default: "events"}
	tests := map[string]string{
		"ec2.amazonaws.com": "ec2", "s3.amazonaws.com": "s3", "signin.amazonaws.com": "signin",
		"ec2-instance-connect.amazonaws.com": "ec2-instance-connect", "ec2.amazonaws.com.cn": "events", "weird": "events",
	}
	for in, want := range tests {
		if got := d.EventType(in); got != want {
			t.Errorf("EventType(%q) = %q, want %q", in, got, want)
		}
	}
	// A permissive regex still yields a clean level.
	loose := Deriver{Re: regexp.MustCompile(`^(.*)$`), Default: "events"}
	if got := loose.EventType("Foo.Bar Baz"); got != "foo_bar_baz" {
		t.Errorf("loose = %q", got)
	}
	if got := (&Deriver{Default: "findings"}).EventType("x"); got != "findings" {
		t.Errorf("nil regex = %q", got)
	}
}

func TestMatch(t *testing.T) {
	nonCW := []Pattern{
		{"flowlogs", regexp.MustCompile(`(^|/)vpcflowlogs/`)},
		{"logs", regexp.MustCompile(`(^|/)[A-Z0-9]+\.\d{4}-\d{2}-\d{2}-\d{2}\.[A-Za-z0-9]+\.gz$`)},
	}
	umbrella := []Pattern{
		{"dns", regexp.MustCompile(`(^|/)dnslogs/`)},
		{"ip", regexp.MustCompile(`(^|/)iplogs/`)},
		{"proxy", regexp.MustCompile(`(^|/)proxylogs/`)},
	}
	tests := []struct {
		patterns []Pattern
		key      string
		want     string
	}{
		{nonCW, "AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/05/01/x.log.gz", "flowlogs"},
		{nonCW, "cf/E2ABCDEF12345.2024-05-01-13.a1b2c3d4.gz", "logs"},
		{nonCW, "E2ABCDEF12345.2024-05-01-13.a1b2c3d4.gz", "logs"},
		{nonCW, "other/file.gz", "unknown"},
		{umbrella, "dnslogs/2024-05-01/2024-05-01-00-00-abcd.csv.gz", "dns"},
		{umbrella, "prefix/iplogs/2024-05-01/x.csv.gz", "ip"},
		{umbrella, "proxylogs/x.csv.gz", "proxy"},
		{umbrella, "auditlogs/x.csv.gz", "unknown"},
		{umbrella, "notdnslogs/x.csv.gz", "unknown"},
	}
	for _, tc := range tests {
		if got := Match(tc.patterns, tc.key, "unknown"); got != tc.want {
			t.Errorf("Match(%q) = %q, want %q", tc.key, got, tc.want)
		}
	}
	// File order decides when two patterns match.
	both := []Pattern{{"first", regexp.MustCompile(`a`)}, {"second", regexp.MustCompile(`a`)}}
	if got := Match(both, "a", ""); got != "first" {
		t.Errorf("order: %q", got)
	}
}

func TestClassifyS3Log(t *testing.T) {
	tests := []struct {
		key, first string
		want       LogKind
	}{
		{"AWSLogs/1/vpcflowlogs/us-east-1/2024/05/01/f.log.gz", "", LogVPCFlow},
		{"logs/E2ABCDEF12345.2024-05-01-13.a1b2c3d4.gz", "", LogCloudFront},
		{"misc/file.gz", "#Version: 1.0", LogCloudFront},
		{"misc/file.gz", "version account-id interface-id", LogVPCFlow},
		{"misc/file.gz", "", LogUnknown},
		{"misc/file.gz", "hello", LogUnknown},
	}
	for _, tc := range tests {
		var first []byte
		if tc.first != "" {
			first = []byte(tc.first)
		}
		if got := ClassifyS3Log(tc.key, first); got != tc.want {
			t.Errorf("ClassifyS3Log(%q, %q) = %v, want %v", tc.key, tc.first, got, tc.want)
		}
	}
}

func TestCache(t *testing.T) {
	c := NewCache(MustCompile(Base("cloud.aws.cloudtrail", true)), Values{AccountID: "123456789012", RegionID: "us-east-1"})
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				et := fmt.Sprint("t", (i+j)%5)
				if got, want := c.Tag(et), "cloud.aws.cloudtrail."+et+".123456789012.us-east-1.1"; got != want {
					t.Errorf("Tag(%q) = %q, want %q", et, got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() != 5 {
		t.Errorf("Len = %d, want 5", c.Len())
	}
	for i := range cacheLimit + 10 {
		c.Tag(fmt.Sprint("x", i))
	}
	if c.Len() != cacheLimit {
		t.Errorf("Len = %d, want the limit %d", c.Len(), cacheLimit)
	}
	if got := c.Tag("beyond-limit"); got != "cloud.aws.cloudtrail.beyond-limit.123456789012.us-east-1.1" {
		t.Errorf("past the limit: %q", got)
	}
}

func BenchmarkCacheTag(b *testing.B) {
	c := NewCache(MustCompile(Base("cloud.aws.cloudtrail", true)), Values{AccountID: "123456789012", RegionID: "us-east-1", Environment: "prod-1"})
	b.ReportAllocs()
	for b.Loop() {
		c.Tag("ec2")
	}
}

func BenchmarkExpand(b *testing.B) {
	tp := MustCompile(Base("cloud.aws.cloudtrail", true))
	v := Values{EventType: "ec2", AccountID: "123456789012", RegionID: "us-east-1", Environment: "prod-1"}
	b.ReportAllocs()
	for b.Loop() {
		tp.Expand(v)
	}
}
