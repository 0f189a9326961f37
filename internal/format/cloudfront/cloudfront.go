// Package cloudfront reads CloudFront standard (legacy) access log files
// (aws-formats.md §8): "#Version:" and "#Fields:" header lines, then one
// tab-separated record per line.
//
// Data lines are returned raw; lines starting with '#' are never returned.
// Field values stay as CloudFront wrote them (URL-encoded where it encodes,
// "-" when empty). Returned slices alias the reader's buffer until the next
// call to Next.
package cloudfront

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

// ErrNoFields: a data line came before any "#Fields:" line, so the file is
// not a CloudFront W3C log (or was cut at the start).
var ErrNoFields = errors.New("CloudFront data line before any #Fields header")

// Reader yields the data lines of one CloudFront log file.
type Reader struct {
	lines   *lines.Reader
	cols    *lines.Columns
	version string
	fields  []string
	index   map[string]int
	err     error
}

// NewReader returns a reader over decompressed text; maxLine caps a line's
// length (0 means lines.DefaultMaxLine).
func NewReader(r io.Reader, maxLine int) *Reader {
	return &Reader{lines: lines.NewReader(r, maxLine), cols: lines.NewColumns('\t')}
}

// Next returns the next data line without CR/LF, skipping '#' lines (whose
// #Version and #Fields it records) and blank lines. It returns io.EOF at the
// end, ErrNoFields (sticky) for a data line before any #Fields line, a
// *lines.Error wrapping lines.ErrTooLong for an over-long line (reading can
// go on), or a sticky read error.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
	r.cols.Reset(nil)
	for {
		line, err := r.lines.Next()
		if err != nil {
			if !errors.Is(err, lines.ErrTooLong) {
				r.err = err
			}
			return nil, err
		}
		if len(line) == 0 {
			continue
		}
		if line[0] == '#' {
			r.directive(line)
			continue
		}
		if r.fields == nil {
			r.err = fmt.Errorf("%w (line %d)", ErrNoFields, r.lines.Line())
			return nil, r.err
		}
		r.cols.Reset(line)
		return line, nil
	}
}

func (r *Reader) directive(line []byte) {
	name, value, ok := bytes.Cut(line[1:], []byte(":"))
	if !ok {
		return // a comment
	}
	switch string(bytes.TrimSpace(name)) {
	case "Version":
		r.version = string(bytes.TrimSpace(value))
	case "Fields":
		r.fields = strings.Fields(string(value))
		r.index = make(map[string]int, len(r.fields))
		for i, f := range r.fields {
			if _, dup := r.index[f]; !dup {
				r.index[f] = i
			}
		}
	}
}

// Version is the value of the last "#Version:" line ("1.0"), or "".
func (r *Reader) Version() string { return r.version }

// Fields are the names from the last "#Fields:" line, which is authoritative
// for the lines after it (files have had 24, 26 and 33 fields).
func (r *Reader) Fields() []string { return r.fields }

// Line is the 1-based line number of the last line returned.
func (r *Reader) Line() int { return r.lines.Line() }

// Index returns the position of the named field, or -1.
func (r *Reader) Index(name string) int {
	if i, ok := r.index[name]; ok {
		return i
	}
	return -1
}

// FieldAt returns field i of the current line, or nil.
func (r *Reader) FieldAt(i int) []byte { return r.cols.At(i) }

// Field returns the named field of the current line, or nil when the header
// has no such field or the line is too short.
func (r *Reader) Field(name string) []byte {
	i, ok := r.index[name]
	if !ok {
		return nil
	}
	return r.cols.At(i)
}
