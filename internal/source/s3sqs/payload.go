package s3sqs

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// appendPayload appends the Devo payload of one CloudTrail record. The
// reader's validating pass already knows whether the record is plain
// (compact, valid UTF-8, no top-level pulling-id member): such a record, the
// common one, is copied with the pulling id appended and is not scanned
// again. Anything else goes through jsonpay.Append. Both give the same bytes
// (TestAppendPayload).
func appendPayload(dst []byte, rec *cloudtrail.Record, id string) ([]byte, error) {
	if rec.Plain {
		return jsonpay.AppendPlain(dst, rec.Raw, id), nil
	}
	return jsonpay.Append(dst, rec.Raw, id)
}

// Sizes of an arena's blocks and slabs. A payload is carved from a block
// and its event taken from the block's own slabs, so a CloudTrail object
// costs no allocation per record, and, once blocks are reused, none per
// block either.
const (
	arenaBlock = 256 << 10
	// arenaMaxPart: a larger payload gets an allocation of its own (and
	// an event of its own), so that one big record neither wastes most of
	// a block nor is kept in memory by its neighbours.
	arenaMaxPart = arenaBlock / 8
	arenaSlab    = 64 // events per slab
	// maxKeptSlabs bounds the slabs a block keeps for its next use (40
	// slabs: 2,560 events, enough for a block of 100-byte lines); the
	// slabs of a block of tinier payloads beyond that are left to the
	// garbage collector when it goes back to the pool.
	maxKeptSlabs = 40
)

// arena hands out payload buffers and events for one object: CloudTrail
// payloads, and the raw lines of the text formats. Payloads are
// carved from pooled blocks: every event with a payload in a block holds the
// block's Ref, and so does the arena while it carves from it; once the last
// of them lets go (every output has reported every such event's fate) the
// block goes back to the pool for the next object. Before that nothing
// writes into it again. A steady stream of objects thus reuses a few blocks
// instead of giving the garbage collector the whole decompressed volume.
//
// The events of a block's payloads come from slabs the block owns, reused
// with it: an event is read by nobody once its last fate is reported (the
// pipeline's "never read after settle" rule), which is when its hold on the
// block ends. Reusing them matters as much as reusing the payload bytes: a
// short line costs about as much memory in its event as in its text, and
// fresh event slabs were half of what the collector allocated on VPC Flow,
// each collection scanning them for pointers.
type arena struct {
	cur  *block // the block being carved, nil before the first
	free []byte // unused part of cur
}

// block is one payload block, the events of its payloads, and the count of
// their holders.
type block struct {
	buf   []byte
	ref   pipeline.Ref
	put   func()             // b.recycle, made once
	slabs [][]pipeline.Event // events for this block's payloads, kept across uses
	used  int                // events handed out in this use
}

// freeBlocks holds idle blocks for reuse: at most maxFreeBlocks (16 MiB of
// payload, and their slabs), the rest of a burst's blocks are left to the
// garbage collector. A sync.Pool would hand memory back when idle, but drops
// blocks at every other collection, which with CloudTrail's allocation rate
// is most of them.
var freeBlocks = make(chan *block, maxFreeBlocks)

const maxFreeBlocks = 64

var (
	// poisonFreed, set by tests, overwrites a block as it goes back to the
	// pool, so that an event read after its fate shows as garbage.
	poisonFreed bool
	// blocksReused counts blocks taken from the pool, for tests.
	blocksReused atomic.Int64
)

func getBlock() *block {
	var b *block
	select {
	case b = <-freeBlocks:
		blocksReused.Add(1)
	default:
		b = &block{buf: make([]byte, arenaBlock)}
		b.put = b.recycle
	}
	b.used = 0
	b.ref.Init(b.put)
	return b
}

func (b *block) recycle() {
	if poisonFreed {
		for i := range b.buf {
			b.buf[i] = 0xff
		}
		for _, s := range b.slabs {
			for i := range s {
				s[i].Tag, s[i].Payload = "poisoned", b.buf[:1]
			}
		}
	}
	if len(b.slabs) > maxKeptSlabs {
		clear(b.slabs[maxKeptSlabs:])
		b.slabs = b.slabs[:maxKeptSlabs]
	}
	select {
	case freeBlocks <- b:
	default:
	}
}

// close lets go of the block being carved; the arena may be used again.
func (a *arena) close() {
	if a.cur != nil {
		a.cur.ref.Release()
		a.cur, a.free = nil, nil
	}
}

// event returns a zero event from blk's slabs (a new slab when they are
// used up), or one of its own for a payload of its own (blk nil). blk must
// be the block the arena is carving: nobody else hands out its events.
func (a *arena) event(blk *block) *pipeline.Event {
	if blk == nil {
		return new(pipeline.Event)
	}
	i, k := blk.used/arenaSlab, blk.used%arenaSlab
	blk.used++
	if i == len(blk.slabs) {
		blk.slabs = append(blk.slabs, make([]pipeline.Event, arenaSlab))
	}
	e := &blk.slabs[i][k]
	// A previous use of the block left this event settled: clear it,
	// fate state included (Init would not).
	*e = pipeline.Event{}
	return e
}

// newEvent returns an event for payload, taken from blk's slab and holding
// blk when the payload is in a block (blk not nil), initialised for batch b.
func (a *arena) newEvent(blk *block, b *pipeline.Batch, tagName string, t time.Time, payload []byte) *pipeline.Event {
	ev := a.event(blk)
	ev.Init(b, tagName, t, payload)
	if blk != nil {
		ev.Share(&blk.ref)
	}
	return ev
}

// room returns the free part of the current block, taking a new block
// first when the current one has less than need bytes left.
func (a *arena) room(need int) []byte {
	if need > len(a.free) {
		a.close()
		a.cur = getBlock()
		a.free = a.cur.buf
	}
	return a.free
}

// payload appends the Devo payload of rec into the current block (or a new
// one) and returns it with no spare capacity, so no later append can write
// over the next payload, and the block it is in, or nil when it got an
// allocation of its own.
func (a *arena) payload(rec *cloudtrail.Record, id string) (p []byte, blk *block, err error) {
	need := len(rec.Raw) + len(id) + 24
	if need > arenaMaxPart {
		out, err := appendPayload(make([]byte, 0, need), rec, id)
		return out[:len(out):len(out)], nil, err
	}
	dst := a.room(need)[:0]
	out, err := appendPayload(dst, rec, id)
	if err != nil {
		return nil, nil, err
	}
	n := len(out)
	// When the payload came out longer than foreseen (a non-plain record
	// can grow), append moved it out of the block, which stays intact.
	if cap(out) != cap(dst) {
		return out[:n:n], nil, nil
	}
	a.free = a.free[n:]
	return out[:n:n], a.cur, nil
}

// line copies a raw line into the current block (or a new one), with no
// spare capacity, and returns it with its block; a line over arenaMaxPart
// gets an allocation of its own (block nil).
func (a *arena) line(p []byte) ([]byte, *block) {
	if len(p) > arenaMaxPart {
		return bytes.Clone(p), nil
	}
	n := copy(a.room(len(p)), p)
	out := a.free[:n:n]
	a.free = a.free[n:]
	return out, a.cur
}
