package s3sqs

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
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

// TestArenaPayloads: payloads carved from an arena have jsonpay.Append's
// bytes, no spare capacity, and never share memory, whether they fit the
// block, outgrow the room foreseen for them (a non-plain record with invalid
// UTF-8 grows), or are large enough for an allocation of their own.
func TestArenaPayloads(t *testing.T) {
	const id = "1717161300.123456"
	rec := func(raw string) cloudtrail.Record {
		r := cloudtrail.NewReader(bytes.NewReader([]byte(`{"Records":[`+raw+`]}`)), 0)
		out, err := r.Next()
		if err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		out.Raw = bytes.Clone(out.Raw)
		return out
	}
	plain := rec(`{"a":1,"b":"x y"}`)
	grows := rec(`{"bad":"` + strings.Repeat("\xff", 40) + `"}`)
	big := rec(`{"big":"` + strings.Repeat("x", arenaMaxPart) + `"}`)
	if !plain.Plain || grows.Plain {
		t.Fatalf("Plain: %v %v", plain.Plain, grows.Plain)
	}

	var a arena
	type got struct {
		p    []byte
		want []byte
	}
	var all []got
	add := func(r cloudtrail.Record, wantIn bool) {
		t.Helper()
		want, err := jsonpay.Append(nil, r.Raw, id)
		if err != nil {
			t.Fatal(err)
		}
		p, in, err := a.payload(&r, id)
		if err != nil {
			t.Fatal(err)
		}
		if in != wantIn {
			t.Fatalf("payload of %d bytes: inArena = %v, want %v", len(p), in, wantIn)
		}
		if !bytes.Equal(p, want) || cap(p) != len(p) {
			t.Fatalf("payload of %d bytes (cap %d), want %d bytes; equal: %v", len(p), cap(p), len(want), bytes.Equal(p, want))
		}
		all = append(all, got{p, want})
	}
	add(plain, true)
	add(plain, true)
	// Leave exactly the room foreseen for grows, which it outgrows.
	a.block = a.block[len(a.block)-(len(grows.Raw)+len(id)+24):]
	add(grows, false)
	add(plain, true) // still fits the block grows left untouched
	add(big, false)
	for range 2 * arenaBlock / len(plain.Raw) {
		add(plain, true) // fills blocks and moves on to new ones
	}
	// Overwrite every payload with its own mark: any sharing shows.
	for i, g := range all {
		for j := range g.p {
			g.p[j] = byte(i)
		}
	}
	for i, g := range all {
		if !bytes.Equal(g.p, bytes.Repeat([]byte{byte(i)}, len(g.want))) {
			t.Fatalf("payload %d was overwritten by another", i)
		}
	}

	seen := map[*pipeline.Event]bool{}
	for i := range 2*arenaSlab + 3 {
		e := a.event(i%8 != 0) // every 8th has a payload of its own
		if seen[e] || e.Tag != "" || e.Payload != nil {
			t.Fatalf("event %p handed out twice or not zero", e)
		}
		seen[e] = true
		e.Init(nil, "t", time.Time{}, []byte("x"))
	}
	left := len(a.slab)
	if e := a.event(false); len(a.slab) != left || left > 0 && e == &a.slab[0] {
		t.Fatal("an event for a payload of its own came from the slab")
	}
}
