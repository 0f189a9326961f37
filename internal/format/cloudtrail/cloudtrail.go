// Package cloudtrail reads CloudTrail log files ({"Records":[…]}, already
// decompressed) as a stream of records, and classifies S3 keys of a trail
// bucket (aws-formats.md §3 and §4).
//
// The reader never decodes a record into maps or structs: it validates each
// record's JSON, returns the record's original bytes and, in the same pass,
// the few top-level string fields that tagging, filtering and deduplication
// need. Memory is one buffer that grows only up to the record-size cap.
package cloudtrail

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/jsontext"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/jsonpay"
)

// DefaultMaxRecord is the record-size cap used when NewReader gets 0.
// CloudTrail records are typically a few KiB; a few large ones carry big
// request parameters.
const DefaultMaxRecord = 8 << 20

const initialBuffer = 128 << 10

var (
	// ErrTruncated: the input ended inside the JSON document. Records
	// returned before it are complete and valid.
	ErrTruncated = errors.New("truncated CloudTrail JSON")
	// ErrSyntax: the input is not a JSON object, or a record is not valid
	// JSON, or a record is not an object.
	ErrSyntax = errors.New("invalid CloudTrail JSON")
	// ErrRecordTooLarge: one record (or one other top-level value) is larger
	// than the reader's cap.
	ErrRecordTooLarge = errors.New("CloudTrail record larger than the cap")
	// ErrNoRecords: a well-formed JSON object without a "Records" array, such
	// as a digest file. Callers skip the file and count it as discarded.
	ErrNoRecords = errors.New("CloudTrail file has no Records array")
)

// Error locates a read error: Offset is the byte offset in the decompressed
// stream. It unwraps to one of the Err* values above, or to the underlying
// reader's error.
type Error struct {
	Err    error
	Offset int64
	Detail string
}

func (e *Error) Error() string {
	if e.Detail == "" {
		return fmt.Sprintf("%v at offset %d", e.Err, e.Offset)
	}
	return fmt.Sprintf("%v at offset %d: %s", e.Err, e.Offset, e.Detail)
}

func (e *Error) Unwrap() error { return e.Err }

// Fields are the top-level string members picked from a record, unescaped.
// A member that is missing, or is not a string, is nil.
type Fields struct {
	EventSource        []byte
	EventName          []byte
	EventID            []byte
	EventTime          []byte
	AWSRegion          []byte
	RecipientAccountID []byte
}

// Record is one CloudTrail record. Raw is the record's JSON exactly as it
// appears in the file. Raw and the Fields slices alias the reader's buffer:
// they are valid only until the next call to Next; copy what you keep.
//
// Plain reports what the validating pass learned about Raw: it has no
// whitespace between tokens, its strings are valid UTF-8, and no top-level
// member is named jsonpay.Key (in any spelling). A plain record is its own
// payload: jsonpay.AppendPlain copies it and adds the pulling id, with no
// second pass. Other records go through jsonpay.Append.
type Record struct {
	Raw []byte
	Fields
	Plain bool
}

type state uint8

const (
	stBegin state = iota
	stTop         // before a top-level member, a ',' or the closing '}'
	stColon       // after a top-level key
	stValue       // after the colon of a top-level member
	stRecords
	stDone
)

// Reader yields the records of one CloudTrail file.
type Reader struct {
	rd         io.Reader
	buf        []byte
	pos, end   int   // unread window buf[pos:end]
	off        int64 // stream offset of buf[0]
	max        int
	eof        bool
	state      state
	first      bool // no member/element yet in the current container
	comma      bool // a ',' was consumed: a member/element must follow
	recordsKey bool // the pending top-level member is named Records
	records    bool // a Records array was found
	count      int
	err        error
}

// NewReader returns a reader over r, which must yield decompressed JSON.
// maxRecord caps the size of a single record (and of any other top-level
// value); 0 means DefaultMaxRecord.
func NewReader(r io.Reader, maxRecord int) *Reader {
	if maxRecord <= 0 {
		maxRecord = DefaultMaxRecord
	}
	return &Reader{rd: r, max: maxRecord, buf: make([]byte, min(initialBuffer, maxRecord))}
}

// Count returns how many records Next has returned.
func (r *Reader) Count() int { return r.count }

// Next returns the next record. At the clean end of a file with a Records
// array it returns io.EOF; without one, ErrNoRecords. Any other error is an
// *Error; it is sticky, and every record returned before it was complete.
func (r *Reader) Next() (Record, error) {
	if r.err != nil {
		return Record{}, r.err
	}
	for {
		rec, done, err := r.step()
		if errors.Is(err, jsontext.ErrShort) {
			if err = r.fill(); err == nil {
				continue
			}
		}
		if err != nil {
			r.err = err
			return Record{}, err
		}
		if done {
			r.count++
			return rec, nil
		}
	}
}

// step does one restartable unit of work on the buffered bytes: it either
// consumes input and moves the state on, or returns ErrShort having
// consumed nothing.
func (r *Reader) step() (rec Record, done bool, err error) {
	b := r.buf[:r.end]
	i := jsontext.SkipSpace(b, r.pos)
	switch r.state {
	case stBegin:
		if i >= len(b) {
			r.pos = i
			return rec, false, jsontext.ErrShort
		}
		if b[i] != '{' {
			return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("want a JSON object, got %q", b[i]))
		}
		r.pos, r.state, r.first = i+1, stTop, true
	case stTop:
		// Whitespace and a ',' are consumed as soon as they are seen, so
		// that they never pile up in the buffer.
		if i >= len(b) {
			r.pos = i
			return rec, false, jsontext.ErrShort
		}
		if !r.comma {
			if b[i] == '}' {
				r.pos, r.state = i+1, stDone
				return rec, false, nil
			}
			if !r.first {
				if b[i] != ',' {
					return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("want ',' or '}', got %q", b[i]))
				}
				r.comma = true
				if i = jsontext.SkipSpace(b, i+1); i >= len(b) {
					r.pos = i
					return rec, false, jsontext.ErrShort
				}
			}
		}
		r.pos = i
		if b[i] != '"' {
			return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("want a key, got %q", b[i]))
		}
		var fl jsontext.Flags
		ks := i
		if i, err = jsontext.String(b, i, &fl); err != nil {
			return rec, false, r.jsonErr(err, ks)
		}
		r.recordsKey = string(jsontext.Unquote(b[ks:i], nil)) == "Records"
		r.pos, r.state = i, stColon
	case stColon:
		if i >= len(b) {
			r.pos = i
			return rec, false, jsontext.ErrShort
		}
		if b[i] != ':' {
			return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("want ':', got %q", b[i]))
		}
		r.pos, r.state = i+1, stValue
	case stValue:
		if i >= len(b) {
			r.pos = i
			return rec, false, jsontext.ErrShort
		}
		if r.recordsKey && b[i] == '[' {
			r.pos, r.state, r.first, r.comma, r.records = i+1, stRecords, true, false, true
			return rec, false, nil
		}
		r.pos = i
		var fl jsontext.Flags
		if i, err = jsontext.Value(b, i, &fl); err != nil {
			return rec, false, r.jsonErr(err, r.pos)
		}
		r.pos, r.state, r.first, r.comma = i, stTop, false, false
	case stRecords:
		if i >= len(b) {
			r.pos = i
			return rec, false, jsontext.ErrShort
		}
		if !r.comma {
			if b[i] == ']' {
				r.pos, r.state, r.first = i+1, stTop, false
				return rec, false, nil
			}
			if !r.first {
				if b[i] != ',' {
					return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("want ',' or ']' between records, got %q", b[i]))
				}
				r.comma = true
				if i = jsontext.SkipSpace(b, i+1); i >= len(b) {
					r.pos = i
					return rec, false, jsontext.ErrShort
				}
			}
		}
		r.pos = i
		if b[i] != '{' {
			return rec, false, r.errAt(ErrSyntax, i, fmt.Sprintf("record is not an object: starts with %q", b[i]))
		}
		start := i
		if i, err = pick(b, i, &rec); err != nil {
			return Record{}, false, r.jsonErr(err, start)
		}
		rec.Raw = b[start:i]
		r.pos, r.first, r.comma = i, false, false
		return rec, true, nil
	case stDone:
		if i < len(b) {
			return rec, false, r.errAt(ErrSyntax, i, "data after the top-level object")
		}
		r.pos = i
		if !r.eof {
			return rec, false, jsontext.ErrShort
		}
		if !r.records {
			return rec, false, ErrNoRecords
		}
		return rec, false, io.EOF
	}
	return rec, false, nil
}

func (r *Reader) errAt(kind error, i int, detail string) error {
	return &Error{Err: kind, Offset: r.off + int64(i), Detail: detail}
}

func (r *Reader) jsonErr(err error, at int) error {
	var se *jsontext.SyntaxError
	if errors.As(err, &se) {
		return &Error{Err: ErrSyntax, Offset: r.off + int64(se.Offset), Detail: se.Msg}
	}
	return err // ErrShort: fill decides
}

// fill makes room and reads more input. It fails when the pending value
// cannot fit under the cap, at the end of the input, or on a read error.
func (r *Reader) fill() error {
	if r.eof {
		return &Error{Err: ErrTruncated, Offset: r.off + int64(r.end)}
	}
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.off += int64(r.pos)
		r.pos, r.end = 0, n
	}
	if r.end == len(r.buf) {
		if len(r.buf) >= r.max {
			return &Error{Err: ErrRecordTooLarge, Offset: r.off, Detail: fmt.Sprintf("more than %d bytes", r.max)}
		}
		nb := make([]byte, min(2*len(r.buf), r.max))
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	n, err := r.rd.Read(r.buf[r.end:])
	r.end += n
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		return &Error{Err: err, Offset: r.off + int64(r.end), Detail: "read"}
	}
	return nil
}

// pick validates the object at b[i], fills rec.Fields from its top-level
// members and sets rec.Plain.
func pick(b []byte, i int, rec *Record) (int, error) {
	var fl jsontext.Flags
	pullingKey := false
	f := &rec.Fields
	if j := jsontext.SkipSpace(b, i+1); j != i+1 {
		fl |= jsontext.Space
		i = j
	} else {
		i++
	}
	if i >= len(b) {
		return i, jsontext.ErrShort
	}
	if b[i] == '}' {
		rec.Plain = fl == 0
		return i + 1, nil
	}
	for {
		if b[i] != '"' {
			return i, &jsontext.SyntaxError{Offset: i, Msg: fmt.Sprintf("want object key, got %q", b[i])}
		}
		ks := i
		var kfl jsontext.Flags
		var err error
		if i, err = jsontext.String(b, i, &kfl); err != nil {
			return i, err
		}
		key := b[ks+1 : i-1]
		if kfl&jsontext.Escape != 0 { // an escaped spelling of a key is the same key
			key = jsontext.Unquote(b[ks:i], nil)
		}
		fl |= kfl
		if i+1 < len(b) && b[i] == ':' && b[i+1] > ' ' { // compact: no call
			i++
		} else if i, err = jsontext.Colon(b, i, &fl); err != nil {
			return i, err
		}
		vs := i
		if b[i] == '"' {
			var vfl jsontext.Flags
			if i, err = jsontext.String(b, i, &vfl); err != nil {
				return i, err
			}
			fl |= vfl
			if dst := f.slot(key); dst != nil {
				if vfl&jsontext.Escape == 0 {
					*dst = b[vs+1 : i-1]
				} else {
					*dst = jsontext.Unquote(b[vs:i], nil)
				}
			}
		} else if i, err = jsontext.Value(b, i, &fl); err != nil {
			return i, err
		}
		if len(key) == len(jsonpay.Key) && string(key) == jsonpay.Key {
			pullingKey = true
		}
		if i+1 < len(b) && b[i] == ',' && b[i+1] == '"' { // compact: no call
			i++
			continue
		}
		var more bool
		if i, more, err = jsontext.Next(b, i, '}', &fl); err != nil || !more {
			rec.Plain = err == nil && fl&(jsontext.Space|jsontext.BadUTF8) == 0 && !pullingKey
			return i, err
		}
	}
}

// slot maps an unescaped key to the field it fills.
func (f *Fields) slot(key []byte) *[]byte {
	switch string(key) {
	case "eventSource":
		return &f.EventSource
	case "eventName":
		return &f.EventName
	case "eventID":
		return &f.EventID
	case "eventTime":
		return &f.EventTime
	case "awsRegion":
		return &f.AWSRegion
	case "recipientAccountId":
		return &f.RecipientAccountID
	}
	return nil
}

// Pick validates one CloudTrail record given whole, such as the
// CloudTrailEvent string of a LookupEvents result once JSON-unescaped, and
// returns its fields (aliasing raw). Errors wrap ErrSyntax or ErrTruncated.
func Pick(raw []byte) (Fields, error) {
	var rec Record
	i := jsontext.SkipSpace(raw, 0)
	if i >= len(raw) {
		return Fields{}, &Error{Err: ErrTruncated, Offset: int64(i), Detail: "empty record"}
	}
	if raw[i] != '{' {
		return Fields{}, &Error{Err: ErrSyntax, Offset: int64(i), Detail: fmt.Sprintf("record is not an object: starts with %q", raw[i])}
	}
	end, err := pick(raw, i, &rec)
	if err != nil {
		var se *jsontext.SyntaxError
		if errors.As(err, &se) {
			return Fields{}, &Error{Err: ErrSyntax, Offset: int64(se.Offset), Detail: se.Msg}
		}
		return Fields{}, &Error{Err: ErrTruncated, Offset: int64(len(raw))}
	}
	if t := jsontext.SkipSpace(raw, end); t != len(raw) {
		return Fields{}, &Error{Err: ErrSyntax, Offset: int64(t), Detail: "data after the record"}
	}
	return rec.Fields, nil
}

// Reasons returned by Skip.
const (
	ReasonFolder      = "folder marker"
	ReasonDigest      = "digest file"
	ReasonConfigCheck = "AWS Config writability check"
	ReasonNotLog      = "not a CloudTrail log file name"
)

// Skip reports whether the object at key is to be deleted from the queue
// without being read, and why: digest files, AWS Config's
// ConfigWritabilityCheckFile, folder markers and names that are not
// *.json[.gz]. Insights files (…/CloudTrail-Insight/…) hold Records like log
// files and are not skipped; see IsInsight.
func Skip(key string) (bool, string) {
	if key == "" || strings.HasSuffix(key, "/") {
		return true, ReasonFolder
	}
	base := path.Base(key)
	switch {
	case strings.Contains(key, "/CloudTrail-Digest/") || strings.Contains(base, "_CloudTrail-Digest_"):
		return true, ReasonDigest
	case strings.Contains(base, "ConfigWritabilityCheckFile"):
		return true, ReasonConfigCheck
	case !strings.HasSuffix(base, ".json.gz") && !strings.HasSuffix(base, ".json"):
		return true, ReasonNotLog
	}
	return false, ""
}

// IsInsight reports whether key is a CloudTrail Insights file.
func IsInsight(key string) bool {
	return strings.Contains(key, "/CloudTrail-Insight/") || strings.Contains(path.Base(key), "_CloudTrail-Insight_")
}
