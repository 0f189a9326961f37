package s3notify

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
)

func describe(n Notification, err error) []byte {
	var b bytes.Buffer
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
		return b.Bytes()
	}
	fmt.Fprintf(&b, "test=%v ignored=%d objects=%d\n", n.Test, n.Ignored, len(n.Objects))
	for _, o := range n.Objects {
		fmt.Fprintf(&b, "bucket=%q key=%q region=%q size=%d event=%q raw=%q\n", o.Bucket, o.Key, o.Region, o.Size, o.EventName, o.KeyRaw)
	}
	return b.Bytes()
}

func TestGolden(t *testing.T) {
	for _, in := range golden.Inputs(t) {
		body, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(body)
		golden.Check(t, in, describe(n, err))
	}
}

func TestKeyUnescaping(t *testing.T) {
	for _, c := range []struct{ raw, want string }{
		{"reports/daily+summary%3A2024.csv.gz", "reports/daily summary:2024.csv.gz"},
		{"a%2Bb.gz", "a+b.gz"},
		{"plain/path/x.gz", "plain/path/x.gz"},
		{"caf%C3%A9+%26+cr%C3%A8me.gz", "café & crème.gz"},
	} {
		body := `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":` + quote(c.raw) + `,"size":1}}}]}`
		n, err := Parse([]byte(body))
		if err != nil {
			t.Fatal(err)
		}
		if got := n.Objects[0].Key; got != c.want {
			t.Errorf("key %q → %q, want %q", c.raw, got, c.want)
		}
		if n.Objects[0].KeyRaw != c.raw {
			t.Errorf("KeyRaw = %q, want %q", n.Objects[0].KeyRaw, c.raw)
		}
	}
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestShapesThatAnnounceNothing(t *testing.T) {
	for _, c := range []struct {
		name, body string
		ignored    int
	}{
		{"only removals", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"b"},"object":{"key":"k"}}}]}`, 1},
		{"EventBridge Object Deleted", `{"version":"0","source":"aws.s3","detail-type":"Object Deleted","detail":{"bucket":{"name":"b"},"object":{"key":"k"}}}`, 1},
		{"SNS-wrapped test event", `{"Type":"Notification","Message":"{\"Event\":\"s3:TestEvent\",\"Bucket\":\"b\"}"}`, 0},
	} {
		n, err := Parse([]byte(c.body))
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if len(n.Objects) != 0 || n.Ignored != c.ignored {
			t.Errorf("%s: %d objects, ignored %d; want 0 and %d", c.name, len(n.Objects), n.Ignored, c.ignored)
		}
	}
	n, _ := Parse([]byte(`{"Type":"Notification","Message":"{\"Event\":\"s3:TestEvent\"}"}`))
	if !n.Test {
		t.Error("SNS-wrapped test event not reported as a test")
	}
}

func TestErrors(t *testing.T) {
	nested := `{"Event":"s3:TestEvent"}`
	for i := 0; i <= maxNesting; i++ {
		nested = `{"Type":"Notification","Message":` + quote(nested) + `}`
	}
	for _, c := range []struct {
		name, body string
		want       error
		detail     string
	}{
		{"empty", ``, ErrNotJSON, "empty body"},
		{"text", `hello world`, ErrNotJSON, "body starts"},
		{"cut JSON", `{"Records":[`, ErrNotJSON, ""},
		{"array", `[{"Records":[]}]`, ErrNotNotification, "array"},
		{"unknown object", `{"hello":"world"}`, ErrNotNotification, "none of the keys"},
		{"Records not array", `{"Records":{"a":1}}`, ErrNotNotification, "Records is not an array"},
		{"Records empty", `{"Records":[]}`, ErrNotNotification, "Records is empty"},
		{"SES records", `{"Records":[{"eventSource":"aws:ses","eventName":"received"}]}`, ErrNotNotification, `"aws:ses"`},
		{"no bucket", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"object":{"key":"k"}}}]}`, ErrNotNotification, "s3.bucket.name"},
		{"no key", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{}}}]}`, ErrNotNotification, "s3.object.key"},
		{"bad escape in key", `{"Records":[{"eventSource":"aws:s3","eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"b"},"object":{"key":"a%zz"}}}]}`, ErrNotNotification, "not URL-encoded"},
		{"SNS Message not a string", `{"Type":"Notification","Message":{"Records":[]}}`, ErrNotNotification, "not a string"},
		{"SNS Message not JSON", `{"Type":"Notification","Message":"plain text"}`, ErrNotNotification, "in SNS Message"},
		{"SNS Message other JSON", `{"Type":"Notification","Message":"{\"alarm\":1}"}`, ErrNotNotification, "in SNS Message"},
		{"SNS nested too deep", nested, ErrNotNotification, "nested"},
		{"EventBridge no key", `{"source":"aws.s3","detail-type":"Object Created","detail":{"bucket":{"name":"b"},"object":{}}}`, ErrNotNotification, "detail.object.key"},
		{"EventBridge no detail", `{"source":"aws.s3","detail-type":"Object Created"}`, ErrNotNotification, "detail"},
		{"CloudTrail notice keys not array", `{"s3Bucket":"b","s3ObjectKey":"k"}`, ErrNotNotification, "s3ObjectKey"},
		{"CloudTrail notice no bucket", `{"s3ObjectKey":["k"]}`, ErrNotNotification, "s3Bucket"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.body))
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Detail, c.detail) {
				t.Errorf("err %v does not say %q", err, c.detail)
			}
		})
	}
}

func FuzzParse(f *testing.F) {
	files, _ := os.ReadDir("testdata")
	for _, fi := range files {
		if strings.HasSuffix(fi.Name(), ".in") {
			b, err := os.ReadFile("testdata/" + fi.Name())
			if err != nil {
				f.Fatal(err)
			}
			f.Add(b)
		}
	}
	f.Add([]byte(`{"Type":"Notification","Message":"{\"s3Bucket\":\"b\",\"s3ObjectKey\":[\"k\"]}"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		n, err := Parse(body)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || (!errors.Is(err, ErrNotJSON) && !errors.Is(err, ErrNotNotification)) {
				t.Fatalf("untyped error %v", err)
			}
			if len(n.Objects) != 0 {
				t.Fatalf("objects returned with an error")
			}
			return
		}
		if n.Test && len(n.Objects) > 0 {
			t.Fatal("a test event with objects")
		}
		for _, o := range n.Objects {
			if o.Bucket == "" || o.Key == "" || o.KeyRaw == "" {
				t.Fatalf("object with empty bucket or key: %+v", o)
			}
		}
	})
}
