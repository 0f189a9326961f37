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

// Sizes of an arena's blocks and slabs. A payload is carved from a block
// and its event taken from a slab, so a CloudTrail object costs one
// allocation per block of payloads and per slab of events instead of two per
// record.
const (
	arenaBlock = 256 << 10
	// arenaMaxPart: a larger payload gets an allocation of its own (and
	// an event of its own), so that one big record neither wastes most of
	// a block nor is kept in memory by its neighbours.
	arenaMaxPart = arenaBlock / 8
	arenaSlab    = 64 // events per slab
)

// arena hands out payload buffers and events for one object. It never reuses
// memory: a full block or slab is simply dropped, and the garbage collector
// frees it once no event of it is alive any more, so the outputs' settle
// timing does not matter. The price is that one live event keeps its slab
// in memory, and with it every block its slab's payloads are in: about
// 0.5 MiB for records of usual size, at most 64 × arenaMaxPart (2 MiB) of
// payloads plus the ends of their blocks.
type arena struct {
	block []byte           // free part of the current block
	slab  []pipeline.Event // unused events of the current slab
}

// event returns an event for payload p, which payload reported as in the
// arena or not: a zero event from the current slab (a new one when it is used
// up), or one of its own for a payload of its own.
func (a *arena) event(inArena bool) *pipeline.Event {
	if !inArena {
		return new(pipeline.Event)
	}
	if len(a.slab) == 0 {
		a.slab = make([]pipeline.Event, arenaSlab)
	}
	e := &a.slab[0]
	a.slab = a.slab[1:]
	return e
}

// payload appends the Devo payload of rec into the current block (or a new
// one) and returns it with no spare capacity, so no later append can write
// over the next payload. inArena reports whether it is in a block, rather
// than in an allocation of its own.
func (a *arena) payload(rec *cloudtrail.Record, id string) (p []byte, inArena bool, err error) {
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
		return nil, false, err
	}
	n := len(out)
	// When the payload came out longer than foreseen (a non-plain record
	// can grow), append moved it out of the block, which stays intact.
	if need <= arenaMaxPart && cap(out) == cap(dst) {
		a.block = a.block[n:]
		inArena = true
	}
	return out[:n:n], inArena, nil
}
