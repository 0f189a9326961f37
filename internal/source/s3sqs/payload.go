package s3sqs

import (
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

// Sizes of an arena's blocks. A payload is carved from a block, so a
// CloudTrail object costs one allocation per block of payloads and per slab
// of events instead of two per record, and the collector allocates far
// fewer, larger, pointer-free objects.
const (
	arenaBlock = 256 << 10
	// arenaMaxPart: a larger payload gets an allocation of its own, so
	// that one big record does not waste most of a block.
	arenaMaxPart = arenaBlock / 8
	arenaSlab    = 256 // events per slab
)

// arena hands out payload buffers and events for one object. It never reuses
// memory: a full block or slab is simply dropped, and the garbage collector
// frees it once no event of it is alive any more, so the outputs' settle
// timing does not matter. The price is that one live event keeps its whole
// block and slab in memory (at most about 280 KiB).
type arena struct {
	block []byte           // free part of the current block
	slab  []pipeline.Event // unused events of the current slab
}

// payload appends the Devo payload of rec into the current block (or a new
// one) and returns it with no spare capacity, so no later append can write
// over the next payload.
func (a *arena) payload(rec *cloudtrail.Record, id string) ([]byte, error) {
	need := len(rec.Raw) + len(id) + 24
	var dst []byte
	switch {
	case need > arenaMaxPart:
		dst = make([]byte, 0, need)
	case need > len(a.block):
		a.block = make([]byte, arenaBlock)
		fallthrough
	default:
		dst = a.block[:0]
	}
	out, err := appendPayload(dst, rec, id)
	if err != nil {
		return nil, err
	}
	n := len(out)
	// When the payload came out longer than foreseen (a non-plain record
	// can grow), append moved it out of the block, which stays intact.
	if need <= arenaMaxPart && cap(out) == cap(dst) {
		a.block = a.block[n:]
	}
	return out[:n:n], nil
}

// event returns a zero event from the current slab (a new one when it is
// used up).
func (a *arena) event() *pipeline.Event {
	if len(a.slab) == 0 {
		a.slab = make([]pipeline.Event, arenaSlab)
	}
	e := &a.slab[0]
	a.slab = a.slab[1:]
	return e
}
