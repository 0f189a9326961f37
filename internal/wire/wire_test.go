package wire

import (
	"strings"
	"testing"
	"time"
)

func TestAppendDevo(t *testing.T) {
	tests := []struct {
		name, host, tag, payload, want string
	}{
		{"json line", "collector-7f3a", "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", `{"a":1}`,
			"<14>Jan  1 00:00:00 collector-7f3a cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1: {\"a\":1}\n"},
		{"trailing LF kept once", "h", "my.app.demo.x", "text\n", "<14>Jan  1 00:00:00 h my.app.demo.x: text\n"},
		{"empty payload", "h", "t", "", "<14>Jan  1 00:00:00 h t: \n"},
		{"payload of one LF", "h", "t", "\n", "<14>Jan  1 00:00:00 h t: \n"},
		{"CR left as it is", "h", "t", "a\rb\r", "<14>Jan  1 00:00:00 h t: a\rb\r\n"},
		{"invalid UTF-8 per byte", "h", "t", "a\xff\xfeb", "<14>Jan  1 00:00:00 h t: a\uFFFD\uFFFDb\n"},
		{"valid multibyte", "h", "t", "ñ€😀", "<14>Jan  1 00:00:00 h t: ñ€😀\n"},
		{"interior LF is octet counted (spec §5 example)", "collector-7f3a", "my.app.demo", "first line\nsecond line",
			"71 <14>Jan  1 00:00:00 collector-7f3a my.app.demo: first line\nsecond line\n"},
		{"interior LF with trailing LF", "collector-7f3a", "my.app.demo", "first line\nsecond line\n",
			"71 <14>Jan  1 00:00:00 collector-7f3a my.app.demo: first line\nsecond line\n"},
		{"double trailing LF is interior", "h", "t", "x\n\n", "28 <14>Jan  1 00:00:00 h t: x\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prefix := "PREVIOUS"
			got := AppendDevo([]byte(prefix), tt.host, tt.tag, []byte(tt.payload))
			if string(got) != prefix+tt.want {
				t.Fatalf("got  %q\nwant %q", got, prefix+tt.want)
			}
		})
	}
}

func TestSpecExampleLength(t *testing.T) {
	line := "<14>Jan  1 00:00:00 collector-7f3a my.app.demo: first line\nsecond line\n"
	if len(line) != 71 {
		t.Fatalf("spec example is %d bytes", len(line))
	}
}

func TestAppendRFC3164(t *testing.T) {
	loc := time.FixedZone("X", 5*3600)
	tests := []struct {
		name    string
		t       time.Time
		payload string
		want    string
	}{
		{"space padded day", time.Date(2024, 1, 2, 15, 4, 5, 999, time.UTC), "p", "<14>Jan  2 15:04:05 h a.b.c: p\n"},
		{"two digit day", time.Date(2022, 9, 23, 7, 44, 54, 0, time.UTC), "p", "<14>Sep 23 07:44:54 h a.b.c: p\n"},
		{"converted to UTC", time.Date(2024, 3, 1, 2, 0, 0, 0, loc), "p", "<14>Feb 29 21:00:00 h a.b.c: p\n"},
		{"non-ASCII kept", time.Date(2024, 1, 10, 0, 0, 0, 0, time.UTC), "café", "<14>Jan 10 00:00:00 h a.b.c: café\n"},
		{"interior LF", time.Date(2024, 1, 2, 15, 4, 5, 0, time.UTC), "a\nb", "33 <14>Jan  2 15:04:05 h a.b.c: a\nb\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := AppendRFC3164(nil, tt.t, "h", "a.b.c", []byte(tt.payload))
			if string(got) != tt.want {
				t.Fatalf("got  %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestHost(t *testing.T) {
	for in, want := range map[string]string{
		"":               "localhost",
		"collector-7f3a": "collector-7f3a",
		"my host  name":  "my_host__name",
	} {
		if got := Host(in); got != want {
			t.Errorf("Host(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEncoder(t *testing.T) {
	now := time.Date(2024, 5, 31, 13, 12, 8, 0, time.UTC)
	if got := string(NewEncoder(DevoLine, "a b").Append(nil, now, "t", []byte("p"))); got != "<14>Jan  1 00:00:00 a_b t: p\n" {
		t.Errorf("devo: %q", got)
	}
	if got := string(NewEncoder(RFC3164, "").Append(nil, now, "t", []byte("p"))); got != "<14>May 31 13:12:08 localhost t: p\n" {
		t.Errorf("rfc3164: %q", got)
	}
	var zero Encoder
	if got := string(zero.Append(nil, now, "t", []byte("p"))); got != "<14>Jan  1 00:00:00 localhost t: p\n" {
		t.Errorf("zero encoder: %q", got)
	}
}

func TestAppendAllocatesNothing(t *testing.T) {
	e := NewEncoder(RFC3164, "host")
	buf := make([]byte, 0, 4096)
	payloads := [][]byte{[]byte(`{"k":"v"}`), []byte("a\nb"), []byte("bad\xffutf8")}
	now := time.Now()
	allocs := testing.AllocsPerRun(100, func() {
		for _, p := range payloads {
			buf = e.Append(buf[:0], now, "cloud.aws.x.y", p)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}

func BenchmarkAppendDevo(b *testing.B) {
	payload := []byte(`{"eventVersion":"1.08","eventSource":"ec2.amazonaws.com","eventName":"StartInstances","awsRegion":"us-east-1","@devo_pulling_id":"1717160741.123456"}` + strings.Repeat(" ", 0))
	buf := make([]byte, 0, 1024)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendDevo(buf[:0], "collector-7f3a", "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", payload)
	}
}

// For clean payloads (valid UTF-8, no LF) the trusted path writes exactly
// the bytes of the checked one, in both formats.
func TestAppendTrustedMatchesAppendForCleanPayloads(t *testing.T) {
	now := time.Date(2024, 5, 31, 13, 5, 9, 0, time.UTC)
	for _, f := range []Format{DevoLine, RFC3164} {
		enc := NewEncoder(f, "collector-7f3a")
		for _, p := range []string{`{"a":1,"@devo_pulling_id":"1717160741.123456"}`, "", "ñ€😀 plain text", `{"s":"tab\tinside"}`} {
			got := string(enc.AppendTrusted(nil, now, "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", []byte(p)))
			want := string(enc.Append(nil, now, "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", []byte(p)))
			if got != want {
				t.Errorf("format %v payload %q:\ntrusted %q\nchecked %q", f, p, got, want)
			}
		}
	}
}
