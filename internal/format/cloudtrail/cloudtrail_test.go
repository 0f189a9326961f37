package cloudtrail

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/golden"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
)

// readAll drains a reader, copying what the reader's contract says may be
// overwritten by the next call.
func readAll(r *Reader) (recs []Record, err error) {
	for {
		rec, err := r.Next()
		if err != nil {
			return recs, err
		}
		recs = append(recs, Record{Raw: bytes.Clone(rec.Raw), Fields: Fields{
			EventSource: bytes.Clone(rec.EventSource), EventName: bytes.Clone(rec.EventName),
			EventID: bytes.Clone(rec.EventID), EventTime: bytes.Clone(rec.EventTime),
			AWSRegion: bytes.Clone(rec.AWSRegion), RecipientAccountID: bytes.Clone(rec.RecipientAccountID),
		}, Plain: rec.Plain})
	}
}

func describe(recs []Record, err error) []byte {
	var out bytes.Buffer
	for _, r := range recs {
		fmt.Fprintf(&out, "source=%s name=%s id=%s time=%s region=%s account=%s\n%s\n",
			r.EventSource, r.EventName, r.EventID, r.EventTime, r.AWSRegion, r.RecipientAccountID, r.Raw)
	}
	fmt.Fprintf(&out, "end: %v\n", err)
	return out.Bytes()
}

func TestGolden(t *testing.T) {
	for _, in := range golden.Inputs(t) {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := readAll(NewReader(bytes.NewReader(data), 0))
		got := describe(recs, err)
		golden.Check(t, in, got)
		// The same bytes delivered one at a time through a tiny buffer must
		// give the same records: every refill path is exercised.
		recs, err = readAll(NewReader(iotest.OneByteReader(bytes.NewReader(data)), 4096))
		if again := describe(recs, err); !bytes.Equal(again, got) {
			t.Errorf("%s: one-byte reads differ:\n%s", in, again)
		}
	}
}

func TestReaderEdges(t *testing.T) {
	big := `{"eventName":"` + strings.Repeat("x", 5000) + `"}`
	ws := strings.Repeat(" \n\t\r", 3000) // 12000 bytes, more than the 4096 cap below
	for _, c := range []struct {
		name  string
		in    string
		max   int
		n     int
		want  error
		names string
	}{
		{name: "empty array", in: `{"Records":[]}`, want: io.EOF},
		{name: "keys around Records", in: `{"a":{"b":[1]},"Records":[{"eventName":"A"}],"z":"y"}`, n: 1, want: io.EOF, names: "A"},
		{name: "trailing whitespace", in: "{\"Records\":[{\"eventName\":\"A\"}]}\n\n", n: 1, want: io.EOF, names: "A"},
		{name: "escaped values unescaped", in: `{"Records":[{"eventName":"Put\u004fbject","event\u0053ource":"s3.amazonaws.com"}]}`, n: 1, want: io.EOF, names: "PutObject"},
		{name: "non-string field is nil", in: `{"Records":[{"eventName":42}]}`, n: 1, want: io.EOF, names: ""},
		{name: "nested field names ignored", in: `{"Records":[{"x":{"eventName":"inner"},"eventName":"outer"}]}`, n: 1, want: io.EOF, names: "outer"},
		{name: "no Records", in: `{"digestStartTime":"2024-05-31T12:15:00Z","logFiles":[]}`, want: ErrNoRecords},
		{name: "Records not an array", in: `{"Records":{"a":1}}`, want: ErrNoRecords},
		{name: "empty input", in: ``, want: ErrTruncated},
		{name: "not JSON", in: `<Error><Code>AccessDenied</Code></Error>`, want: ErrSyntax},
		{name: "array at top", in: `[{"eventName":"A"}]`, want: ErrSyntax},
		{name: "record not an object", in: `{"Records":[{"eventName":"A"},"text"]}`, n: 1, want: ErrSyntax, names: "A"},
		{name: "bad record after good one", in: `{"Records":[{"eventName":"A"},{"eventName":tru}]}`, n: 1, want: ErrSyntax, names: "A"},
		{name: "missing comma", in: `{"Records":[{"eventName":"A"} {"eventName":"B"}]}`, n: 1, want: ErrSyntax, names: "A"},
		{name: "truncated in second record", in: `{"Records":[{"eventName":"A"},{"eventName":"B`, n: 1, want: ErrTruncated, names: "A"},
		{name: "truncated before closing brace", in: `{"Records":[{"eventName":"A"}]`, n: 1, want: ErrTruncated, names: "A"},
		{name: "data after object", in: `{"Records":[]}{"Records":[]}`, want: ErrSyntax},
		{name: "record over the cap", in: `{"Records":[{"eventName":"A"},` + big + `]}`, max: 4096, n: 1, want: ErrRecordTooLarge, names: "A"},
		{name: "whitespace over the cap between elements", max: 4096, n: 2, want: io.EOF, names: "AB",
			in: ws + `{` + ws + `"x"` + ws + `:1` + ws + `,` + ws + `"Records"` + ws + `:` + ws + `[` + ws + `{"eventName":"A"}` + ws + `,` + ws + `{"eventName":"B"}` + ws + `]` + ws + `,` + ws + `"z":2` + ws + `}` + ws},
		{name: "whitespace over the cap then a trailing comma", max: 4096, n: 1, want: ErrSyntax, names: "A",
			in: `{"Records":[{"eventName":"A"},` + ws + `]}`},
		{name: "whitespace over the cap then a trailing member comma", max: 4096, want: ErrSyntax,
			in: `{"Records":[],` + ws + `}`},
		{name: "whitespace over the cap then the end", max: 4096, n: 1, want: ErrTruncated, names: "A",
			in: `{"Records":[{"eventName":"A"}` + ws},
		{name: "record under a larger cap", in: `{"Records":[{"eventName":"A"},` + big + `]}`, max: 8192, n: 2, want: io.EOF, names: "A" + strings.Repeat("x", 5000)},
	} {
		t.Run(c.name, func(t *testing.T) {
			recs, err := readAll(NewReader(iotest.HalfReader(strings.NewReader(c.in)), c.max))
			if !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if len(recs) != c.n {
				t.Fatalf("%d records, want %d", len(recs), c.n)
			}
			var names string
			for _, r := range recs {
				names += string(r.EventName)
			}
			if names != c.names {
				t.Errorf("eventNames %q, want %q", names, c.names)
			}
			if c.want != io.EOF && c.want != ErrNoRecords {
				var e *Error
				if !errors.As(err, &e) {
					t.Errorf("err %T is not *Error", err)
				}
			}
		})
	}
}

func TestErrorIsSticky(t *testing.T) {
	r := NewReader(strings.NewReader(`{"Records":[{"a":1},{"b":`), 0)
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err1 := r.Next()
	_, err2 := r.Next()
	if !errors.Is(err1, ErrTruncated) || err1 != err2 {
		t.Fatalf("errors %v then %v, want the same ErrTruncated", err1, err2)
	}
	if r.Count() != 1 {
		t.Errorf("Count = %d, want 1", r.Count())
	}
}

type failingReader struct{ n int }

var errDisk = errors.New("connection reset")

func (f *failingReader) Read(p []byte) (int, error) {
	if f.n == 0 {
		f.n++
		return copy(p, `{"Records":[{"eventName":"A"},`), nil
	}
	return 0, errDisk
}

func TestReadErrorSurfaces(t *testing.T) {
	recs, err := readAll(NewReader(&failingReader{}, 0))
	if len(recs) != 1 || !errors.Is(err, errDisk) {
		t.Fatalf("got %d records, err %v; want 1 and the read error", len(recs), err)
	}
}

func TestPick(t *testing.T) {
	// The CloudTrailEvent string of the LookupEvents sample in aws-formats §4.
	page := []byte(`{"Events":[{"EventId":"f0d9c8b7-a6e5-4d3c-8b2a-1f0e9d8c7b6a","CloudTrailEvent":"{\"eventVersion\":\"1.09\",\"eventTime\":\"2024-05-31T13:14:55Z\",\"eventSource\":\"ec2.amazonaws.com\",\"eventName\":\"StopInstances\",\"awsRegion\":\"eu-west-1\",\"eventID\":\"f0d9c8b7-a6e5-4d3c-8b2a-1f0e9d8c7b6a\",\"eventType\":\"AwsApiCall\",\"recipientAccountId\":\"123456789012\"}"}]}`)
	var resp struct {
		Events []struct{ CloudTrailEvent string }
	}
	if err := json.Unmarshal(page, &resp); err != nil {
		t.Fatal(err)
	}
	f, err := Pick([]byte(resp.Events[0].CloudTrailEvent))
	if err != nil {
		t.Fatal(err)
	}
	got := fmt.Sprintf("%s|%s|%s|%s|%s|%s", f.EventSource, f.EventName, f.EventID, f.EventTime, f.AWSRegion, f.RecipientAccountID)
	want := "ec2.amazonaws.com|StopInstances|f0d9c8b7-a6e5-4d3c-8b2a-1f0e9d8c7b6a|2024-05-31T13:14:55Z|eu-west-1|123456789012"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	for _, c := range []struct {
		in   string
		want error
	}{
		{``, ErrTruncated},
		{`{"eventName":"A"`, ErrTruncated},
		{`[]`, ErrSyntax},
		{`{"eventName":"A"} x`, ErrSyntax},
		{`{"eventName":A}`, ErrSyntax},
	} {
		if _, err := Pick([]byte(c.in)); !errors.Is(err, c.want) {
			t.Errorf("Pick(%q) err = %v, want %v", c.in, err, c.want)
		}
	}
}

func TestSkip(t *testing.T) {
	for _, c := range []struct {
		key    string
		skip   bool
		reason string
	}{
		{"AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/123456789012_CloudTrail_eu-west-1_20240531T1315Z_a1B2c3D4e5F6g7H8.json.gz", false, ""},
		{"trails/AWSLogs/o-a1b2c3d4e5/123456789012/CloudTrail/us-east-1/2024/05/31/123456789012_CloudTrail_us-east-1_20240531T1315Z_Zx9.json.gz", false, ""},
		{"AWSLogs/123456789012/CloudTrail-Insight/eu-west-1/2024/05/31/123456789012_CloudTrail-Insight_eu-west-1_20240531T1315Z_Q1w2.json.gz", false, ""},
		{"AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2024/05/31/123456789012_CloudTrail-Digest_eu-west-1_main-trail_us-east-1_20240531T131500Z.json.gz", true, ReasonDigest},
		{"AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2024/05/31/123456789012_CloudTrail-Digest_eu-west-1_main-trail_us-east-1_20240531T131500Z_backfill.json.gz", true, ReasonDigest},
		{"123456789012_CloudTrail-Digest_eu-west-1_main-trail_us-east-1_20240531T131500Z.json.gz", true, ReasonDigest},
		{"AWSLogs/123456789012/Config/ConfigWritabilityCheckFile", true, ReasonConfigCheck},
		{"AWSLogs/123456789012/CloudTrail/", true, ReasonFolder},
		{"", true, ReasonFolder},
		{"AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/notes.txt", true, ReasonNotLog},
		{"AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/plain.json", false, ""},
	} {
		skip, reason := Skip(c.key)
		if skip != c.skip || reason != c.reason {
			t.Errorf("Skip(%q) = %v, %q; want %v, %q", c.key, skip, reason, c.skip, c.reason)
		}
	}
	if !IsInsight("AWSLogs/1/CloudTrail-Insight/eu-west-1/2024/05/31/x.json.gz") || IsInsight("AWSLogs/1/CloudTrail/eu-west-1/x.json.gz") {
		t.Error("IsInsight misclassifies")
	}
}

func FuzzReader(f *testing.F) {
	for _, s := range []string{
		`{"Records":[{"eventName":"A","eventSource":"s3.amazonaws.com"},{"eventID":"x"}]}`,
		`{"a":1,"Records":[]}`, `{"logFiles":[]}`, `{"Records":[{"eventName":"\u0041"}`, `[1]`,
		`{"Records":[{"x":[{"y":"z"}],"awsRegion":"eu-west-1"}]} `,
		`{"Records":[{"@devo_pulling_id":1},{"a":{"@devo_pulling_id":1}},{"\u0040devo_pulling_id":"x"}, {"b" :"\u00e9é"}]}`,
		"{\"Records\":[{\"a\":\"\xff\"},{\"eventName\":\"abcdefghijklmnop\\\"q\"}]}",
	} {
		f.Add([]byte(s), uint16(64))
	}
	// Whitespace between members and records longer than the cap.
	ws := strings.Repeat(" \n", 100)
	f.Add([]byte(`{`+ws+`"Records"`+ws+`:`+ws+`[`+ws+`{"a":1}`+ws+`,`+ws+`{"b":2}`+ws+`]`+ws+`}`+ws), uint16(0))
	f.Fuzz(func(t *testing.T, in []byte, max uint16) {
		limit := int(max)%4096 + 16
		recs, err := readAll(NewReader(iotest.OneByteReader(bytes.NewReader(in)), limit))
		if err == nil {
			t.Fatal("readAll ended without an error")
		}
		var doc map[string]json.RawMessage
		valid := json.Valid(in) && json.Unmarshal(in, &doc) == nil
		if !valid {
			if err == io.EOF || err == ErrNoRecords {
				t.Fatalf("invalid input %q accepted: %v", in, err)
			}
		}
		for _, r := range recs {
			if !json.Valid(r.Raw) || r.Raw[0] != '{' {
				t.Fatalf("record %q is not a valid object", r.Raw)
			}
			var compact bytes.Buffer
			if err := json.Compact(&compact, r.Raw); err != nil {
				t.Fatal(err)
			}
			var m map[string]json.RawMessage
			if json.Unmarshal(r.Raw, &m) != nil {
				continue
			}
			_, hasKey := m[jsonpay.Key]
			if plain := bytes.Equal(compact.Bytes(), r.Raw) && utf8.Valid(r.Raw) && !hasKey; r.Plain != plain {
				t.Fatalf("record %q: Plain %v, want %v", r.Raw, r.Plain, plain)
			}
			check := func(key string, got []byte) {
				v, ok := m[key]
				var s string
				if !ok || v[0] != '"' || json.Unmarshal(v, &s) != nil {
					if got != nil {
						t.Fatalf("%s picked %q, json has %s", key, got, v)
					}
					return
				}
				// encoding/json turns invalid UTF-8 into U+FFFD; the reader
				// returns the bytes as they are (jsonpay repairs them later).
				if bytes.Count(r.Raw, []byte(key)) == 1 && s != string(got) && !bytes.ContainsRune(v, '\\') && utf8.Valid(v) {
					t.Fatalf("%s picked %q, json has %q", key, got, s)
				}
			}
			check("eventName", r.EventName)
			check("eventSource", r.EventSource)
			check("awsRegion", r.AWSRegion)
		}
		if !valid || bytes.Count(in, []byte("Records")) != 1 {
			return
		}
		var arr []json.RawMessage
		if json.Unmarshal(doc["Records"], &arr) != nil {
			if err != ErrNoRecords && !errors.Is(err, ErrRecordTooLarge) && !errors.Is(err, ErrSyntax) {
				t.Fatalf("no Records array, got %v", err)
			}
			return
		}
		if err == io.EOF && len(arr) != len(recs) {
			t.Fatalf("%d records, encoding/json sees %d", len(recs), len(arr))
		}
		for i := range recs {
			if !bytes.Equal(recs[i].Raw, arr[i]) {
				t.Fatalf("record %d: %q, encoding/json %q", i, recs[i].Raw, arr[i])
			}
		}
	})
}
