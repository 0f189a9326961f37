// Package umbrella reads Cisco Umbrella CSV log exports (aws-formats.md §9)
// and yields each row raw, quotes kept, as Devo receives it.
//
// A quoted field may hold a line break, so one row can span several lines;
// such a row is returned as one payload whose lines are joined with LF (the
// sender frames it with octet counting). The log type comes from the S3 key
// and is the caller's business; the column layouts here document what the
// rows hold.
package umbrella

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
)

// Leading columns of each layout. Newer export versions append columns, so a
// row may have more cells than its layout lists.
var (
	DNSColumns = []string{
		"Timestamp", "Most Granular Identity", "Identities", "Internal IP", "External IP", "Action",
		"Query Type", "Response Code", "Domain", "Categories", "Most Granular Identity Type",
		"Identity Types", "Blocked Categories", "Rule ID", "Destination Countries", "Organization ID",
	}
	IPColumns = []string{
		"Timestamp", "Identity", "Source IP", "Source Port", "Destination IP", "Destination Port",
		"Categories", "Identity Types",
	}
	ProxyColumns = []string{
		"Timestamp", "Policy Identity Label", "Internal Client IP", "External Client IP", "Destination IP",
		"Content Type", "Action", "URL", "Referer", "User Agent", "Status Code", "Request Size",
		"Response Size", "Response Body Size", "SHA-SHA256", "Categories", "AV Detections", "PUAs",
		"AMP Disposition", "AMP Malware Name", "AMP Score", "Policy Identity Type", "Blocked Categories",
		"Identities", "Identity Types", "Request Method", "DLP Status", "Certificate Errors", "File Name",
		"Ruleset ID", "Rule ID", "Destination List IDs",
	}
)

// Columns returns the documented leading columns for a log type as it
// appears in the key ("dnslogs", "iplogs", "proxylogs"), or nil.
func Columns(logType string) []string {
	switch logType {
	case "dnslogs":
		return DNSColumns
	case "iplogs":
		return IPColumns
	case "proxylogs":
		return ProxyColumns
	}
	return nil
}

// ErrRowTooLong: a row, possibly spanning several lines, is longer than the
// cap. The reader drops it and goes on with the next line.
var ErrRowTooLong = errors.New("umbrella row longer than the cap")

// ErrUnterminated: the file ended inside a quoted field.
var ErrUnterminated = errors.New("umbrella file ends inside a quoted field")

// Reader yields the rows of one Umbrella CSV file.
type Reader struct {
	lines  *lines.Reader
	max    int
	joined []byte
	first  bool
	err    error
}

// NewReader returns a reader over decompressed CSV; maxRow caps a row's
// length including joined lines (0 means lines.DefaultMaxLine).
func NewReader(r io.Reader, maxRow int) *Reader {
	if maxRow <= 0 {
		maxRow = lines.DefaultMaxLine
	}
	return &Reader{lines: lines.NewReader(r, maxRow), max: maxRow, first: true}
}

// Line is the 1-based number of the last line of the row last returned.
func (r *Reader) Line() int { return r.lines.Line() }

// Next returns the next row without its line terminator. Blank lines are
// skipped, and so is a first row whose first cell is Timestamp (the
// optional header). It returns io.EOF at the end, an error wrapping
// ErrRowTooLong or lines.ErrTooLong for a dropped row (reading can go on),
// ErrUnterminated at an end inside quotes, or a sticky read error. The row
// aliases the reader's buffers until the next call.
func (r *Reader) Next() ([]byte, error) {
	if r.err != nil {
		return nil, r.err
	}
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
		row := line
		if oddQuotes(line) {
			if row, err = r.join(line); err != nil {
				return nil, err
			}
		}
		if r.first {
			r.first = false
			if isHeader(row) {
				continue
			}
		}
		return row, nil
	}
}

// join appends following lines to an open-quoted line until the quotes
// balance.
func (r *Reader) join(line []byte) ([]byte, error) {
	start := r.lines.Line()
	r.joined = append(r.joined[:0], line...)
	for {
		next, err := r.lines.Next()
		switch {
		case err == io.EOF:
			r.err = fmt.Errorf("%w (row starting at line %d)", ErrUnterminated, start)
			return nil, r.err
		case errors.Is(err, lines.ErrTooLong):
			return nil, r.skipRest(start)
		case err != nil:
			r.err = err
			return nil, err
		}
		if len(r.joined)+1+len(next) > r.max {
			if oddQuotes(next) {
				return nil, &lines.Error{Err: ErrRowTooLong, Line: start}
			}
			return nil, r.skipRest(start)
		}
		r.joined = append(r.joined, '\n')
		r.joined = append(r.joined, next...)
		if oddQuotes(next) {
			return r.joined, nil
		}
	}
}

// skipRest drops lines until the open quote closes, so reading resumes at
// the next row.
func (r *Reader) skipRest(start int) error {
	for {
		next, err := r.lines.Next()
		switch {
		case err == io.EOF:
			r.err = fmt.Errorf("%w (row starting at line %d)", ErrUnterminated, start)
			return r.err
		case errors.Is(err, lines.ErrTooLong):
			continue
		case err != nil:
			r.err = err
			return err
		}
		if oddQuotes(next) {
			return &lines.Error{Err: ErrRowTooLong, Line: start}
		}
	}
}

// oddQuotes reports whether b leaves a quoted field open (or closes one
// opened before it). CSV doubles quotes inside fields, so parity is enough.
func oddQuotes(b []byte) bool { return bytes.Count(b, []byte{'"'})%2 == 1 }

func isHeader(row []byte) bool {
	return bytes.HasPrefix(row, []byte(`"Timestamp"`)) ||
		(bytes.HasPrefix(row, []byte("Timestamp")) && (len(row) == 9 || row[9] == ','))
}
