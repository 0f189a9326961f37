// Package vpcflow reads VPC Flow Logs text files (aws-formats.md §7): a
// header line naming the fields, then one space-separated record per line.
//
// Data lines are returned raw, as Devo receives them; the header is never
// returned. Field lookups split the current line lazily and do not allocate.
// Returned slices alias the reader's buffer until the next call to Next.
package vpcflow

import (
	"errors"
	"fmt"
	"io"
	"slices"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

// DefaultFields is the header of the default (version 2) format, in order.
var DefaultFields = []string{
	"version", "account-id", "interface-id", "srcaddr", "dstaddr", "srcport", "dstport",
	"protocol", "packets", "bytes", "start", "end", "action", "log-status",
}

// ErrNoHeader: the first line does not name fields, so the file is not a
// VPC Flow Logs text file.
var ErrNoHeader = errors.New("first line is not a VPC Flow Logs header")

// Reader yields the data lines of one flow-log file.
type Reader struct {
	lines     *lines.Reader
	cols      *lines.Columns
	header    []string
	index     map[string]int
	isDefault bool
	started   bool
	err       error
}

// NewReader returns a reader over decompressed text; maxLine caps a line's
// length (0 means lines.DefaultMaxLine).
func NewReader(r io.Reader, maxLine int) *Reader {
	return &Reader{lines: lines.NewReader(r, maxLine), cols: lines.NewColumns(' ')}
}

// Header reads the header line if needed and returns the field names. An
// empty file has no header: Header returns io.EOF.
func (r *Reader) Header() ([]string, error) {
	if !r.started {
		r.readHeader()
	}
	return r.header, r.err
}

func (r *Reader) readHeader() {
	r.started = true
	for {
		line, err := r.lines.Next()
		if errors.Is(err, lines.ErrTooLong) {
			r.err = fmt.Errorf("%w: %v", ErrNoHeader, err)
			return
		}
		if err != nil {
			r.err = err
			return
		}
		if len(line) == 0 {
			continue
		}
		r.cols.Reset(line)
		n := r.cols.Len()
		r.header = make([]string, n)
		r.index = make(map[string]int, n)
		for i := range n {
			name := r.cols.At(i)
			if !isFieldName(name) {
				r.header, r.index = nil, nil
				r.err = fmt.Errorf("%w: line %d, field %d is %q", ErrNoHeader, r.lines.Line(), i+1, truncate(name))
				return
			}
			r.header[i] = string(name)
			if _, dup := r.index[r.header[i]]; !dup {
				r.index[r.header[i]] = i
			}
		}
		r.isDefault = slices.Equal(r.header, DefaultFields)
		r.cols.Reset(nil)
		return
	}
}

func isFieldName(b []byte) bool {
	if len(b) == 0 || b[0] < 'a' || b[0] > 'z' {
		return false
	}
	for _, c := range b {
		if (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

func truncate(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "…"
	}
	return string(b)
}

// IsDefault reports whether the header is exactly the version 2 default
// format. Devo's parser expects that layout; other headers still yield
// their lines (the caller warns once per flow-log ID).
func (r *Reader) IsDefault() bool { return r.isDefault }

// Next returns the next data line, without CR/LF. Blank lines are skipped.
// It returns io.EOF at the end, ErrNoHeader (sticky) when the first line is
// not a header, a *lines.Error wrapping lines.ErrTooLong for an over-long
// line (reading can go on), or a sticky read error.
func (r *Reader) Next() ([]byte, error) {
	if !r.started {
		r.readHeader()
	}
	if r.err != nil {
		return nil, r.err
	}
	for {
		line, err := r.lines.Next()
		if err != nil {
			if !errors.Is(err, lines.ErrTooLong) {
				r.err = err
			}
			r.cols.Reset(nil)
			return nil, err
		}
		if len(line) == 0 {
			continue
		}
		r.cols.Reset(line)
		return line, nil
	}
}

// Line is the 1-based line number of the last line returned.
func (r *Reader) Line() int { return r.lines.Line() }

// Index returns the position of the named field in the header, or -1.
func (r *Reader) Index(name string) int {
	if i, ok := r.index[name]; ok {
		return i
	}
	return -1
}

// FieldAt returns field i of the current line, or nil when the line is
// shorter or i is negative.
func (r *Reader) FieldAt(i int) []byte { return r.cols.At(i) }

// Field returns the named field of the current line ("-" when the field does
// not apply, as AWS writes it), or nil when the header has no such field or
// the line is too short.
func (r *Reader) Field(name string) []byte {
	i, ok := r.index[name]
	if !ok {
		return nil
	}
	return r.cols.At(i)
}
