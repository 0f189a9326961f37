package jsonpay

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
)

const testID = "1717160676.266007"

func TestGolden(t *testing.T) {
	for _, in := range golden.Inputs(t) {
		raw, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		out, err := Append(nil, raw, testID)
		if err != nil {
			t.Fatalf("%s: %v", in, err)
		}
		golden.Check(t, in, append(out, '\n'))
	}
}

func TestAppend(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"compact fast path", `{"a":1,"b":"x"}`, `{"a":1,"b":"x","@devo_pulling_id":"ID"}`},
		{"empty object", ` { } `, `{"@devo_pulling_id":"ID"}`},
		{"whitespace removed, strings kept", "{ \"a b\" :\t[ 1 , \"c  d\" ],\r\n\"e\":{ } }", `{"a b":[1,"c  d"],"e":{},"@devo_pulling_id":"ID"}`},
		{"existing key replaced", `{"@devo_pulling_id":"old","a":1}`, `{"a":1,"@devo_pulling_id":"ID"}`},
		{"only the existing key", `{"@devo_pulling_id":"old"}`, `{"@devo_pulling_id":"ID"}`},
		{"escaped spelling of the key", `{"a":1,"\u0040devo_pulling_id":"old"}`, `{"a":1,"@devo_pulling_id":"ID"}`},
		{"nested key kept", `{"d":{"@devo_pulling_id":"x"}}`, `{"d":{"@devo_pulling_id":"x"},"@devo_pulling_id":"ID"}`},
		{"escapes byte for byte", `{"s":"\u00e9\/\n"}`, `{"s":"\u00e9\/\n","@devo_pulling_id":"ID"}`},
		{"numbers byte for byte", `{"n":1.50E+02,"m":-0}`, `{"n":1.50E+02,"m":-0,"@devo_pulling_id":"ID"}`},
		{"valid UTF-8 kept", `{"s":"日本"}`, `{"s":"日本","@devo_pulling_id":"ID"}`},
		{"invalid UTF-8 replaced per byte", "{\"s\":\"a\xff\xfeb\"}", "{\"s\":\"a\uFFFD\uFFFDb\",\"@devo_pulling_id\":\"ID\"}"},
		{"invalid UTF-8 in a key", "{\"k\xff\":1}", "{\"k\uFFFD\":1,\"@devo_pulling_id\":\"ID\"}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := Append([]byte("prefix|"), []byte(c.in), "ID")
			if err != nil {
				t.Fatal(err)
			}
			if want := "prefix|" + c.want; string(got) != want {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// TestPullingIDEncoding: whatever the id, the member decodes back to it, for
// Append and AppendPlain alike.
func TestPullingIDEncoding(t *testing.T) {
	for _, id := range []string{testID, "", `a"b\\c`, "tab\tnl\n\x01\x1f", "é€"} {
		for _, raw := range []string{`{}`, `{"a":1}`} {
			plain := AppendPlain([]byte("x"), []byte(raw), id)
			full, err := Append([]byte("x"), []byte(raw), id)
			if err != nil || !bytes.Equal(plain, full) {
				t.Fatalf("%q, %q: AppendPlain %s, Append %s (%v)", raw, id, plain, full, err)
			}
			var m map[string]any
			if err := json.Unmarshal(plain[1:], &m); err != nil {
				t.Fatalf("%q, %q: %s: %v", raw, id, plain, err)
			}
			if m[Key] != id {
				t.Errorf("%q, %q: %s decodes to %q", raw, id, plain, m[Key])
			}
		}
	}
}

func TestAppendErrors(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{``, ErrInvalid},
		{`   `, ErrInvalid},
		{`[1,2]`, ErrNotObject},
		{`"text"`, ErrNotObject},
		{`42`, ErrNotObject},
		{`EC2 instance stopped`, ErrInvalid},
		{`{"a":1`, ErrInvalid},
		{`{"a":1}{"b":2}`, ErrInvalid},
		{`{"a":1,}`, ErrInvalid},
		{`{"a":"x\u12"}`, ErrInvalid},
	} {
		got, err := Append([]byte("keep"), []byte(c.in), "ID")
		if !errors.Is(err, c.want) {
			t.Errorf("%q: err = %v, want %v", c.in, err, c.want)
		}
		if string(got) != "keep" {
			t.Errorf("%q: dst changed to %q on error", c.in, got)
		}
	}
}

func TestPullingID(t *testing.T) {
	for _, c := range []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1655983326, 290848000), "1655983326.290848"},
		{time.Unix(1655983326, 290848999), "1655983326.290848"},
		{time.Unix(1717160541, 217000), "1717160541.000217"},
		{time.Unix(1717160541, 0), "1717160541.000000"},
		{time.Unix(-1, 500000000), "-1.500000"},
	} {
		if got := PullingID(c.t); got != c.want {
			t.Errorf("PullingID(%v) = %s, want %s", c.t, got, c.want)
		}
	}
}

func FuzzAppend(f *testing.F) {
	for _, s := range []string{
		`{"a":1}`, `{ "a" : [ 1 , { "b" : null } ] }`, `{"@devo_pulling_id":"x","y":"\u00e9"}`,
		"{\"s\":\"\xff\"}", `[]`, `{"a":`, `{}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		out, err := Append(nil, raw, testID)
		isObj := json.Valid(raw) && strings.HasPrefix(strings.TrimLeft(string(raw), " \t\r\n"), "{")
		if err != nil {
			if isObj {
				t.Fatalf("valid object %q rejected: %v", raw, err)
			}
			return
		}
		if !isObj {
			t.Fatalf("accepted %q, which is not a JSON object", raw)
		}
		if !json.Valid(out) || !utf8.Valid(out) {
			t.Fatalf("output %q is not valid UTF-8 JSON", out)
		}
		// Sources mark jsonpay output pipeline.Event.Clean: outputs then
		// skip their UTF-8 and LF checks, so an LF here would split the line.
		if bytes.IndexByte(out, '\n') >= 0 {
			t.Fatalf("output %q holds an LF", out)
		}
		if !bytes.HasSuffix(out, []byte(`"@devo_pulling_id":"`+testID+`"}`)) {
			t.Fatalf("output %q does not end with the pulling id", out)
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return // duplicate keys or similar: encoding/json is the wrong oracle
		}
		if _, has := m[Key]; !has && utf8.Valid(raw) {
			var want bytes.Buffer
			if err := json.Compact(&want, raw); err != nil {
				t.Fatal(err)
			}
			w := want.Bytes()
			w = w[:len(w)-1]
			if len(w) > 1 {
				w = append(w, ',')
			}
			w = append(w, `"@devo_pulling_id":"`+testID+`"}`...)
			if !bytes.Equal(out, w) {
				t.Fatalf("got %q, want json.Compact form %q", out, w)
			}
		}
	})
}

var benchRecord = []byte(`{"eventVersion":"1.09","userIdentity":{"type":"AssumedRole","principalId":"AROA4EXAMPLEID:ana","arn":"arn:aws:sts::123456789012:assumed-role/ops/ana","accountId":"123456789012"},"eventTime":"2024-05-31T13:14:55Z","eventSource":"ec2.amazonaws.com","eventName":"StopInstances","awsRegion":"eu-west-1","sourceIPAddress":"198.51.100.23","userAgent":"aws-cli/2.15.30","requestParameters":{"instancesSet":{"items":[{"instanceId":"i-0a1b2c3d4e5f60718"}]},"force":false},"eventID":"f0d9c8b7-a6e5-4d3c-8b2a-1f0e9d8c7b6a","readOnly":false,"eventType":"AwsApiCall","recipientAccountId":"123456789012"}`)

func BenchmarkAppendCompact(b *testing.B) {
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(len(benchRecord)))
	for b.Loop() {
		var err error
		if dst, err = Append(dst[:0], benchRecord, testID); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkAppendPretty(b *testing.B) {
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, benchRecord, "", "  "); err != nil {
		b.Fatal(err)
	}
	dst := make([]byte, 0, 4096)
	b.SetBytes(int64(pretty.Len()))
	for b.Loop() {
		var err error
		if dst, err = Append(dst[:0], pretty.Bytes(), testID); err != nil {
			b.Fatal(err)
		}
	}
}
