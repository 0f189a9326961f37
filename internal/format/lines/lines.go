// Package lines splits decompressed text files into lines for the text
// formats (VPC Flow Logs, CloudFront, Umbrella).
//
// The reader keeps one buffer that grows only up to the line-length cap;
// returned lines alias it and are valid until the next call.
package lines

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// DefaultMaxLine is the line-length cap used when NewReader gets 0.
const DefaultMaxLine = 1 << 20

const initialBuffer = 64 << 10

// ErrTooLong: a line is longer than the cap (measured without its LF or CR
// LF terminator). The reader skips the rest of that line, so the next call
// returns the line after it.
var ErrTooLong = errors.New("line longer than the cap")

// Error locates an error at a 1-based line number. It unwraps to ErrTooLong
// or to the underlying reader's error.
type Error struct {
	Err  error
	Line int
}

func (e *Error) Error() string { return fmt.Sprintf("line %d: %v", e.Line, e.Err) }
func (e *Error) Unwrap() error { return e.Err }

// Reader returns the lines of a text stream without their terminators.
type Reader struct {
	rd       io.Reader
	buf      []byte
	pos, end int // unread window buf[pos:end]
	scanned  int // buf[pos:scanned] is known to hold no LF
	max      int
	eof      bool
	discard  bool // inside a line that was too long
	line     int
	err      error
}

// NewReader returns a reader over r with line cap maxLine bytes (0 means
// DefaultMaxLine).
func NewReader(r io.Reader, maxLine int) *Reader {
	if maxLine <= 0 {
		maxLine = DefaultMaxLine
	}
	// Room for the longest allowed line plus CR LF.
	limit := maxLine + 2
	return &Reader{rd: r, max: maxLine, buf: make([]byte, min(initialBuffer, limit))}
}

// Line is the 1-based number of the line last returned (or rejected).
func (r *Reader) Line() int { return r.line }

// Next returns the next line with its trailing CR and LF bytes removed. A
// final line without LF is returned; a file ending in LF has no empty last
// line. It returns io.EOF at the end, an *Error wrapping ErrTooLong for an
// over-long line (reading can go on), and a sticky *Error for read errors.
func (r *Reader) Next() ([]byte, error) {
	for {
		if r.err != nil {
			return nil, r.err
		}
		if i := bytes.IndexByte(r.buf[r.scanned:r.end], '\n'); i >= 0 {
			lf := r.scanned + i
			line := r.buf[r.pos:lf]
			r.pos, r.scanned = lf+1, lf+1
			if r.discard {
				r.discard = false
				continue
			}
			r.line++
			if contentLen(line) > r.max {
				return nil, &Error{Err: ErrTooLong, Line: r.line}
			}
			return trimCR(line), nil
		}
		r.scanned = r.end
		if r.eof {
			if r.pos == r.end || r.discard {
				r.pos, r.discard = r.end, false
				r.err = io.EOF
				return nil, io.EOF
			}
			line := r.buf[r.pos:r.end]
			r.pos = r.end
			r.line++
			if contentLen(line) > r.max {
				return nil, &Error{Err: ErrTooLong, Line: r.line}
			}
			return trimCR(line), nil
		}
		if err := r.fill(); err != nil {
			return nil, err
		}
	}
}

func (r *Reader) fill() error {
	if r.pos > 0 {
		n := copy(r.buf, r.buf[r.pos:r.end])
		r.scanned -= r.pos
		r.pos, r.end = 0, n
	}
	if r.end == len(r.buf) {
		if limit := r.max + 2; len(r.buf) < limit {
			nb := make([]byte, min(2*len(r.buf), limit))
			copy(nb, r.buf[:r.end])
			r.buf = nb
		} else {
			// The pending line cannot end within the cap: drop what is
			// buffered and skip to its LF.
			tooLong := !r.discard
			r.pos, r.end, r.scanned, r.discard = 0, 0, 0, true
			if tooLong {
				r.line++
				return &Error{Err: ErrTooLong, Line: r.line}
			}
		}
	}
	n, err := r.rd.Read(r.buf[r.end:])
	r.end += n
	switch {
	case err == io.EOF:
		r.eof = true
	case err != nil:
		r.err = &Error{Err: err, Line: r.line + 1}
		return r.err
	}
	return nil
}

// contentLen is the length a line is measured by against the cap: its bytes
// before LF, less one CR of a CRLF terminator. (Further trailing CRs are
// stripped from the result but count, so the buffer bound holds.)
func contentLen(raw []byte) int {
	if n := len(raw); n > 0 && raw[n-1] == '\r' {
		return n - 1
	}
	return len(raw)
}

func trimCR(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == '\r' {
		b = b[:len(b)-1]
	}
	return b
}

// Columns indexes the fields of one line split on a single separator byte.
// It splits on first use and reuses its index, so looking fields up does not
// allocate once the index has grown to the line's width.
type Columns struct {
	sep   byte
	line  []byte
	ends  []int
	split bool
}

// NewColumns returns an empty index for lines separated by sep.
func NewColumns(sep byte) *Columns { return &Columns{sep: sep} }

// Reset points the index at a new line.
func (c *Columns) Reset(line []byte) {
	c.line, c.split = line, false
}

func (c *Columns) index() {
	c.ends = c.ends[:0]
	rest, off := c.line, 0
	for {
		i := bytes.IndexByte(rest, c.sep)
		if i < 0 {
			c.ends = append(c.ends, off+len(rest))
			break
		}
		c.ends = append(c.ends, off+i)
		off += i + 1
		rest = rest[i+1:]
	}
	c.split = true
}

// Len is the number of fields in the line.
func (c *Columns) Len() int {
	if !c.split {
		c.index()
	}
	return len(c.ends)
}

// At returns field i (0-based) aliasing the line, or nil when the line has
// fewer fields.
func (c *Columns) At(i int) []byte {
	if !c.split {
		c.index()
	}
	if i < 0 || i >= len(c.ends) {
		return nil
	}
	start := 0
	if i > 0 {
		start = c.ends[i-1] + 1
	}
	return c.line[start:c.ends[i]]
}
