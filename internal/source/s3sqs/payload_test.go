package s3sqs

import (
	"bytes"
	"os"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
)

// TestAppendPayload: the fast copy gives exactly jsonpay.Append's bytes,
// and takes the fast path where it should.
func TestAppendPayload(t *testing.T) {
	const id = "1717161300.123456"
	cases := []struct {
		raw  string
		fast bool
	}{
		{`{"a":1,"b":"x y","c":{"d":[1,2,{"e":null}]}}`, true},
		{`{}`, true},
		{`{"q":"say \"hi\" \\","r":"\\\\"}`, true},
		{`{"esc":"tab\tnewline\n","u":"caf\u00e9"}`, true},
		{`{"a\u0062":1}`, false},
		{`{"a": 1}`, false},
		{"{\"a\":1,\n\"b\":2}", false},
		{`{"@devo_pulling_id":"old","a":1}`, false},
		{`{"a":1,"\u0040devo_pulling_id":"old"}`, false},
		{"{\"bad\":\"\xff\xfe\"}", false},
		{`{"ünï":"çødé"}`, true},
	}
	text, err := os.ReadFile("testdata/cloudtrail.in")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range [][]byte{text, benchTrail(50)} {
		r := cloudtrail.NewReader(bytes.NewReader(file), 0)
		for {
			rec, err := r.Next()
			if err != nil {
				break
			}
			cases = append(cases, struct {
				raw  string
				fast bool
			}{string(rec.Raw), fastRecord(rec.Raw)})
		}
	}
	fastSeen := 0
	for _, c := range cases {
		want, werr := jsonpay.Append(nil, []byte(c.raw), id)
		got, gerr := appendPayload(nil, []byte(c.raw), id, plainPullingID(id))
		if !bytes.Equal(got, want) || (werr == nil) != (gerr == nil) {
			t.Errorf("%s:\n got %s (%v)\nwant %s (%v)", c.raw, got, gerr, want, werr)
		}
		if f := fastRecord([]byte(c.raw)); f != c.fast {
			t.Errorf("%s: fast path %v, want %v", c.raw, f, c.fast)
		} else if f {
			fastSeen++
		}
	}
	if fastSeen < 50 {
		t.Errorf("only %d records took the fast path", fastSeen)
	}
}
