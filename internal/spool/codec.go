package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// A record is the value stored under one key: a run of events appended in
// one call. Its layout (all integers little-endian or varint):
//
//	version   1 byte, recordVersion
//	count     uvarint, number of events
//	count × event:
//	  tag     uvarint length, then the tag bytes
//	  seconds varint, Unix seconds of the event time
//	  nanos   uvarint, nanoseconds within the second (0–999999999)
//	  payload uvarint length, then the payload bytes
//	crc       4 bytes, CRC-32C (Castagnoli) of everything before it
//
// bbolt checksums only its meta pages, so the trailer is what turns a
// damaged data page into a clear error instead of garbage on the wire.
// Seconds plus nanoseconds (rather than UnixNano) keep every time.Time,
// including the zero time, exactly.
const recordVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errCorrupt marks a record that does not decode.
var errCorrupt = errors.New("corrupt record")

// encodedSize is an upper bound of the bytes ev takes in a record.
func encodedSize(ev *pipeline.Event) int {
	return 3*binary.MaxVarintLen64 + binary.MaxVarintLen32 + len(ev.Tag) + len(ev.Payload)
}

// appendRecord appends the record of evs to dst.
func appendRecord(dst []byte, evs []*pipeline.Event) []byte {
	start := len(dst)
	dst = append(dst, recordVersion)
	dst = binary.AppendUvarint(dst, uint64(len(evs)))
	for _, ev := range evs {
		dst = binary.AppendUvarint(dst, uint64(len(ev.Tag)))
		dst = append(dst, ev.Tag...)
		dst = binary.AppendVarint(dst, ev.Time.Unix())
		dst = binary.AppendUvarint(dst, uint64(ev.Time.Nanosecond()))
		dst = binary.AppendUvarint(dst, uint64(len(ev.Payload)))
		dst = append(dst, ev.Payload...)
	}
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst[start:], castagnoli))
}

// recordCount reads the event count of a record without decoding it.
func recordCount(rec []byte) (int64, error) {
	if len(rec) < 1+1+4 || rec[0] != recordVersion {
		return 0, fmt.Errorf("%w: bad header", errCorrupt)
	}
	n, k := binary.Uvarint(rec[1:])
	if k <= 0 || n > uint64(len(rec)) {
		return 0, fmt.Errorf("%w: bad event count", errCorrupt)
	}
	return int64(n), nil
}

// decodeRecord appends the events of rec to dst. The events own copies of
// their bytes: rec may be bbolt's memory, valid only inside a transaction.
func decodeRecord(dst []*pipeline.Event, rec []byte) ([]*pipeline.Event, error) {
	if len(rec) < 1+1+4 {
		return dst, fmt.Errorf("%w: %d bytes is too short", errCorrupt, len(rec))
	}
	body, sum := rec[:len(rec)-4], binary.LittleEndian.Uint32(rec[len(rec)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return dst, fmt.Errorf("%w: checksum mismatch", errCorrupt)
	}
	if body[0] != recordVersion {
		return dst, fmt.Errorf("%w: unknown version %d", errCorrupt, body[0])
	}
	// One allocation holds every tag and payload of the record.
	arena := make([]byte, 0, len(body))
	r := reader{b: body[1:]}
	n := r.uvarint()
	if r.err == nil && n > uint64(len(body)) {
		r.err = errors.New("bad event count")
	}
	for i := uint64(0); i < n && r.err == nil; i++ {
		tag := r.bytes()
		sec := r.varint()
		nsec := r.uvarint()
		payload := r.bytes()
		if r.err != nil {
			break
		}
		if nsec > 999_999_999 {
			r.err = errors.New("bad nanoseconds")
			break
		}
		off := len(arena)
		arena = append(arena, tag...)
		t := string(arena[off:])
		off = len(arena)
		arena = append(arena, payload...)
		p := arena[off:len(arena):len(arena)]
		dst = append(dst, pipeline.NewEvent(nil, t, time.Unix(sec, int64(nsec)).UTC(), p))
	}
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	if r.err != nil {
		return dst, fmt.Errorf("%w: %v", errCorrupt, r.err)
	}
	return dst, nil
}

// reader consumes varints and length-prefixed byte strings, remembering the
// first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint() uint64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Uvarint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) varint() int64 {
	if r.err != nil {
		return 0
	}
	v, k := binary.Varint(r.b)
	if k <= 0 {
		r.err = errors.New("bad varint")
		return 0
	}
	r.b = r.b[k:]
	return v
}

func (r *reader) bytes() []byte {
	n := r.uvarint()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = errors.New("length past the end")
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}
