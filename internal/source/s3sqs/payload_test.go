package s3sqs

import (
	"bytes"
	"os"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
)

// TestAppendPayload: for every record, the payload built from what the
// reader learned gives exactly jsonpay.Append's bytes, and the copy path is
// taken where it should be.
func TestAppendPayload(t *testing.T) {
	type tc struct {
		raw   string
		plain bool
	}
	cases := []tc{
		{`{"a":1,"b":"x y","c":{"d":[1,2,{"e":null}]}}`, true},
		{`{}`, true},
		{`{"q":"say \"hi\" \\","r":"\\\\"}`, true},
		{`{"esc":"tab\tnewline\n","u":"caf\u00e9"}`, true},
		{`{"a\u0062":1}`, true},
		{`{"x":{"@devo_pulling_id":"nested is data"}}`, true},
		{`{"ünï":"çødé","emoji":"😀"}`, true},
		{`{"a": 1}`, false},
		{"{\"a\":1,\n\"b\":2}", false},
		{"{\n\"a\":1}", false},
		{"{\"a\":1\t}", false},
		{`{"@devo_pulling_id":"old","a":1}`, false},
		{`{"a":1,"\u0040devo_pulling_id":"old"}`, false},
		{`{"a":1,"@devo_pulling_id":{"n":1}}`, false},
		{"{\"bad\":\"\xff\xfe\"}", false},
		{"{\"surrogate\":\"\xed\xa0\x80\"}", false},
		{"{\"cut\":\"\xe2\x82\"}", false},
	}
	records := func(file []byte) (out []cloudtrail.Record) {
		r := cloudtrail.NewReader(bytes.NewReader(file), 0)
		for {
			rec, err := r.Next()
			if err != nil {
				return out
			}
			rec.Raw = bytes.Clone(rec.Raw)
			out = append(out, rec)
		}
	}
	var all []cloudtrail.Record
	for _, c := range cases {
		recs := records([]byte(`{"Records":[` + c.raw + `]}`))
		if len(recs) != 1 {
			t.Fatalf("%s: reader gave %d records", c.raw, len(recs))
		}
		if recs[0].Plain != c.plain {
			t.Errorf("%s: Plain = %v, want %v", c.raw, recs[0].Plain, c.plain)
		}
		all = append(all, recs[0])
	}
	text, err := os.ReadFile("testdata/cloudtrail.in")
	if err != nil {
		t.Fatal(err)
	}
	all = append(all, records(text)...)
	bench := records(benchTrail(50))
	for _, rec := range bench {
		if !rec.Plain {
			t.Errorf("benchmark record not plain: %s", rec.Raw)
		}
	}
	all = append(all, bench...)
	for _, id := range []string{"1717161300.123456", `odd "id"` + "\x01"} {
		for _, rec := range all {
			want, werr := jsonpay.Append(nil, rec.Raw, id)
			got, gerr := appendPayload([]byte("prefix"), &rec, id)
			if !bytes.Equal(got, append([]byte("prefix"), want...)) || (werr == nil) != (gerr == nil) {
				t.Errorf("%s:\n got %s (%v)\nwant %s (%v)", rec.Raw, got, gerr, want, werr)
			}
		}
	}
}
