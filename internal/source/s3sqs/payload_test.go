package s3sqs

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
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
		p, blk, err := a.payload(&r, id)
		if err != nil {
			t.Fatal(err)
		}
		if blk != nil {
			// An event that is never emitted: it holds the block for
			// the rest of the test.
			new(pipeline.Event).Share(&blk.ref)
		}
		if in := blk != nil; in != wantIn {
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
	a.free = a.free[len(a.free)-(len(grows.Raw)+len(id)+24):]
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
	blk := a.cur
	for i := range 2*arenaSlab + 3 {
		var in *block
		if i%8 != 0 { // every 8th has a payload of its own
			in = blk
		}
		e := a.event(in)
		if seen[e] || e.Tag != "" || e.Payload != nil {
			t.Fatalf("event %p handed out twice or not zero", e)
		}
		seen[e] = true
		e.Init(nil, "t", time.Time{}, []byte("x"))
	}
	used := blk.used
	own := a.event(nil)
	if blk.used != used {
		t.Fatal("an event for a payload of its own came from the block's slabs")
	}
	for _, s := range blk.slabs {
		for i := range s {
			if &s[i] == own {
				t.Fatal("an event for a payload of its own came from the block's slabs")
			}
		}
	}
}

// TestArenaBlocksReusedAfterLastFate: a payload block goes back to the pool
// only when every event carved from it has a fate at every output (two
// outputs here), and the next object then reuses it. Freed blocks are
// poisoned, so a payload freed too early would no longer read back.
func TestArenaBlocksReusedAfterLastFate(t *testing.T) {
	if !poisonFreed {
		t.Fatal("TestMain should have set poisonFreed")
	}
	// Start from an empty free list: blocks other tests freed would be
	// handed out first.
	for len(freeBlocks) > 0 {
		<-freeBlocks
	}
	const id = "1717161300.123456"
	q1, q2 := pipeline.NewQueue(1<<20, 1<<30), pipeline.NewQueue(1<<20, 1<<30)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{},
		[]*pipeline.Output{{Name: "a", Queue: q1}, {Name: "b", Queue: q2}}, nil)
	ctx := context.Background()

	type carved struct {
		ev   *pipeline.Event
		want string
		blk  *block
	}
	// object carves payloads into a fresh arena until it has used n blocks,
	// and emits an event for each.
	object := func(n int, tag string) []carved {
		var a arena
		defer a.close()
		var out []carved
		blks := map[*block]bool{}
		for i := 0; ; i++ {
			raw := fmt.Sprintf(`{"object":%q,"i":%d,"pad":"%s"}`, tag, i, strings.Repeat("p", 900))
			r := cloudtrail.NewReader(strings.NewReader(`{"Records":[`+raw+`]}`), 0)
			rec, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if len(blks) == n && a.cur != nil && len(a.free) < len(raw)+len(id)+24 {
				return out
			}
			pl, blk, err := a.payload(&rec, id)
			if err != nil || blk == nil {
				t.Fatalf("payload: %v, block %p", err, blk)
			}
			blks[blk] = true
			ev := a.event(blk)
			ev.Init(nil, "t", time.Time{}, pl)
			ev.Share(&blk.ref)
			if err := p.Emit(ctx, ev); err != nil {
				t.Fatal(err)
			}
			out = append(out, carved{ev, string(pl), blk})
		}
	}
	intact := func(cs []carved) {
		t.Helper()
		for i, c := range cs {
			if string(c.ev.Payload) != c.want {
				t.Fatalf("payload %d was overwritten while its event was pending: %.60q", i, c.ev.Payload)
			}
		}
	}
	settle := func(q *pipeline.Queue, keep *pipeline.Event) {
		for _, ev := range q.TryGet(nil, 1<<20) {
			if ev == keep {
				continue
			}
			q.Settle(ev, pipeline.Delivered)
		}
	}

	first := object(3, "first")
	settle(q1, nil)
	intact(first) // the second output has not reported yet
	held := first[0]
	settle(q2, held.ev)
	intact([]carved{held}) // its block is still held
	before := blocksReused.Load()
	second := object(3, "second")
	if blocksReused.Load() == before {
		t.Fatal("the second object reused none of the first one's freed blocks")
	}
	for _, c := range second {
		if c.blk == held.blk {
			t.Fatal("a block still held by a pending event was reused")
		}
	}
	intact([]carved{held})
	intact(second)
	q2.Settle(held.ev, pipeline.Delivered) // the last fate of its block
	settle(q1, nil)
	settle(q2, nil)
	before = blocksReused.Load()
	third := object(4, "third")
	reused := false
	for _, c := range third {
		reused = reused || c.blk == held.blk
	}
	if !reused || blocksReused.Load()-before < 4 {
		t.Fatalf("after every fate: %d of 4 blocks reused, the held one reused: %v", blocksReused.Load()-before, reused)
	}
	intact(third)
}
