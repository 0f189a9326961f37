// Package jsontext is the small JSON scanner shared by the format packages.
//
// It works on byte slices, validates the JSON grammar while it skips values,
// and never builds maps or decodes values it is not asked for. Functions take
// an index into b and return the index just past what they consumed, so the
// callers can keep the original bytes of every value they find.
//
// Running off the end of b returns ErrShort, which lets streaming callers read
// more input and start again from a value boundary.
package jsontext

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"unicode/utf8"
)

// MaxDepth is the deepest nesting of objects and arrays accepted. It bounds the
// recursion of the scanner on hostile input.
const MaxDepth = 1000

// ErrShort means that b ended inside a value: more input may complete it.
var ErrShort = errors.New("unexpected end of JSON input")

// SyntaxError reports invalid JSON at byte Offset of the scanned slice.
type SyntaxError struct {
	Offset int
	Msg    string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at offset %d: %s", e.Offset, e.Msg)
}

func syntaxErr(off int, format string, args ...any) error {
	return &SyntaxError{Offset: off, Msg: fmt.Sprintf(format, args...)}
}

// Flags records what a scan met that a compacting writer has to change.
type Flags uint8

const (
	// Space: insignificant whitespace was skipped between tokens.
	Space Flags = 1 << iota
	// NonASCII: a string held a byte >= 0x80.
	NonASCII
	// BadUTF8: a string held a byte that is not part of valid UTF-8 (set
	// with NonASCII).
	BadUTF8
	// Escape: a string held a backslash escape.
	Escape
)

// plain[c] is true for the bytes that can be copied inside a string without
// a closer look.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = true
	}
	t['"'] = false
	t['\\'] = false
	return t
}()

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// SkipSpace returns the index of the first non-whitespace byte at or after i.
func SkipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipSpaceFlag is SkipSpace that also records skipped whitespace in fl.
// Compact input (the common case) costs one comparison.
func skipSpaceFlag(b []byte, i int, fl *Flags) int {
	if i < len(b) && b[i] > ' ' {
		return i
	}
	j := SkipSpace(b, i)
	if j != i {
		*fl |= Space
	}
	return j
}

// Value validates and skips the JSON value that starts at b[i] (leading
// whitespace is skipped). It returns the index just past the value.
func Value(b []byte, i int, fl *Flags) (int, error) {
	return value(b, skipSpaceFlag(b, i, fl), fl, 0)
}

func value(b []byte, i int, fl *Flags, depth int) (int, error) {
	if i >= len(b) {
		return i, ErrShort
	}
	switch c := b[i]; {
	case c == '"':
		return String(b, i, fl)
	case c == '{':
		return object(b, i, fl, depth+1)
	case c == '[':
		return array(b, i, fl, depth+1)
	case c == '-' || (c >= '0' && c <= '9'):
		return number(b, i)
	case c == 't':
		return literal(b, i, "true")
	case c == 'f':
		return literal(b, i, "false")
	case c == 'n':
		return literal(b, i, "null")
	default:
		return i, syntaxErr(i, "unexpected byte %q", c)
	}
}

// Word-at-a-time constants: lsb has the low bit of every byte set, msb the
// high bit.
const (
	lsb = 0x0101010101010101
	msb = 0x8080808080808080
)

// special returns a word with the high bit set in the byte of x (little
// endian) that is the first '"', '\\', control byte (< 0x20) or byte >= 0x80,
// and possibly in later bytes; 0 when all eight bytes are plain.
//
// v-lsb sets the high bit of each byte of v that is 0 or >= 0x81, and a
// borrow only reaches the byte after a 0 byte. For v = x^'"' or x^'\\' a
// byte >= 0x81 means x >= 0x80, which the final |x marks anyway. Likewise
// x-0x20.. marks the bytes below 0x20 and, besides those, only bytes after
// one of them or bytes >= 0x80.
func special(x uint64) uint64 {
	q := x ^ (lsb * '"')
	s := x ^ (lsb * '\\')
	return ((q - lsb) | (s - lsb) | (x - lsb*0x20) | x) & msb
}

// String validates and skips the string whose opening quote is b[i]. Runs
// of plain bytes are skipped eight at a time.
func String(b []byte, i int, fl *Flags) (int, error) {
	start := i
	i++
	for {
		if i+8 <= len(b) {
			m := special(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else {
			for i < len(b) && plain[b[i]] {
				i++
			}
			if i >= len(b) {
				return start, ErrShort
			}
		}
		switch c := b[i]; {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			*fl |= Escape
			if i+1 >= len(b) {
				return start, ErrShort
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(b) {
					return start, ErrShort
				}
				for k := i + 2; k < i+6; k++ {
					if !isHex(b[k]) {
						return start, syntaxErr(k, "bad \\u escape")
					}
				}
				i += 6
			default:
				return start, syntaxErr(i, "bad escape \\%c", b[i+1])
			}
		case c < 0x20:
			return start, syntaxErr(i, "control byte 0x%02x in string", c)
		default: // >= 0x80
			*fl |= NonASCII
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size == 1 {
				if !utf8.FullRune(b[i:]) {
					// The rune may be cut by the end of b, so the
					// closing quote is not in b either.
					return start, ErrShort
				}
				*fl |= BadUTF8
			}
			i += size
		}
	}
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number skips -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?. A number that runs to
// the end of b is complete: inside containers the missing closer reports
// ErrShort anyway.
func number(b []byte, i int) (int, error) {
	start := i
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return start, ErrShort
	}
	switch {
	case b[i] == '0':
		i++
	case isDigit(b[i]):
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	default:
		return start, syntaxErr(i, "bad number")
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) {
			return start, ErrShort
		}
		if !isDigit(b[i]) {
			return start, syntaxErr(i, "bad number fraction")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) {
			return start, ErrShort
		}
		if !isDigit(b[i]) {
			return start, syntaxErr(i, "bad number exponent")
		}
		for i < len(b) && isDigit(b[i]) {
			i++
		}
	}
	return i, nil
}

func literal(b []byte, i int, lit string) (int, error) {
	for k := 0; k < len(lit); k++ {
		if i+k >= len(b) {
			return i, ErrShort
		}
		if b[i+k] != lit[k] {
			return i, syntaxErr(i+k, "bad literal, want %s", lit)
		}
	}
	return i + len(lit), nil
}

func object(b []byte, i int, fl *Flags, depth int) (int, error) {
	if depth > MaxDepth {
		return i, syntaxErr(i, "nesting deeper than %d", MaxDepth)
	}
	i = skipSpaceFlag(b, i+1, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	if b[i] == '}' {
		return i + 1, nil
	}
	for {
		if b[i] != '"' {
			return i, syntaxErr(i, "want object key, got %q", b[i])
		}
		var err error
		if i, err = String(b, i, fl); err != nil {
			return i, err
		}
		// Compact input has the value right after ':' and the next key
		// right after ','; only other input pays for the calls.
		if i+1 < len(b) && b[i] == ':' && b[i+1] > ' ' {
			i++
		} else if i, err = Colon(b, i, fl); err != nil {
			return i, err
		}
		if i, err = value(b, i, fl, depth); err != nil {
			return i, err
		}
		if i+1 < len(b) && b[i] == ',' && b[i+1] == '"' {
			i++
			continue
		}
		var more bool
		if i, more, err = Next(b, i, '}', fl); err != nil || !more {
			return i, err
		}
	}
}

func array(b []byte, i int, fl *Flags, depth int) (int, error) {
	if depth > MaxDepth {
		return i, syntaxErr(i, "nesting deeper than %d", MaxDepth)
	}
	i = skipSpaceFlag(b, i+1, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	if b[i] == ']' {
		return i + 1, nil
	}
	for {
		var err error
		if i, err = value(b, i, fl, depth); err != nil {
			return i, err
		}
		var more bool
		if i, more, err = Next(b, i, ']', fl); err != nil || !more {
			return i, err
		}
	}
}

// Colon skips whitespace, a ':' and whitespace, returning the index of the
// value that follows.
func Colon(b []byte, i int, fl *Flags) (int, error) {
	if i+1 < len(b) && b[i] == ':' && b[i+1] > ' ' {
		return i + 1, nil
	}
	i = skipSpaceFlag(b, i, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	if b[i] != ':' {
		return i, syntaxErr(i, "want ':', got %q", b[i])
	}
	i = skipSpaceFlag(b, i+1, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	return i, nil
}

// Next is called after a member or element: it skips whitespace and either a
// ',' (more = true, the index of the next token returned) or the closer
// (more = false, the index just past it).
func Next(b []byte, i int, closer byte, fl *Flags) (next int, more bool, err error) {
	if i+1 < len(b) {
		switch b[i] {
		case ',':
			if b[i+1] > ' ' {
				return i + 1, true, nil
			}
		case closer:
			return i + 1, false, nil
		}
	}
	i = skipSpaceFlag(b, i, fl)
	if i >= len(b) {
		return i, false, ErrShort
	}
	switch b[i] {
	case ',':
		i = skipSpaceFlag(b, i+1, fl)
		if i >= len(b) {
			return i, false, ErrShort
		}
		return i, true, nil
	case closer:
		return i + 1, false, nil
	default:
		return i, false, syntaxErr(i, "want ',' or %q, got %q", closer, b[i])
	}
}

// Member is one object member: the quoted key and the value's span.
type Member struct {
	Key        []byte // with its quotes, as in the input
	ValueStart int
	ValueEnd   int
}

// Members validates the object that starts at b[i] (after optional
// whitespace) and calls fn for each member in order. It returns the index just
// past the object. fn returning an error stops the walk.
func Members(b []byte, i int, fl *Flags, fn func(m Member) error) (int, error) {
	i = skipSpaceFlag(b, i, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	if b[i] != '{' {
		return i, syntaxErr(i, "want '{', got %q", b[i])
	}
	i = skipSpaceFlag(b, i+1, fl)
	if i >= len(b) {
		return i, ErrShort
	}
	if b[i] == '}' {
		return i + 1, nil
	}
	for {
		if b[i] != '"' {
			return i, syntaxErr(i, "want object key, got %q", b[i])
		}
		ks := i
		var err error
		if i, err = String(b, i, fl); err != nil {
			return i, err
		}
		m := Member{Key: b[ks:i]}
		if i, err = Colon(b, i, fl); err != nil {
			return i, err
		}
		m.ValueStart = i
		if i, err = value(b, i, fl, 1); err != nil {
			return i, err
		}
		m.ValueEnd = i
		if err = fn(m); err != nil {
			return i, err
		}
		var more bool
		if i, more, err = Next(b, i, '}', fl); err != nil || !more {
			return i, err
		}
	}
}

// Unquote returns the content of the quoted JSON string q (which must have
// been validated). Without escapes it returns a sub-slice of q; otherwise it
// decodes into scratch[:0] and returns that.
func Unquote(q []byte, scratch []byte) []byte {
	s := q[1 : len(q)-1]
	esc := false
	for _, c := range s {
		if c == '\\' {
			esc = true
			break
		}
	}
	if !esc {
		return s
	}
	out := scratch[:0]
	for i := 0; i < len(s); {
		c := s[i]
		if c != '\\' {
			out = append(out, c)
			i++
			continue
		}
		switch s[i+1] {
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r := rune(hex4(s[i+2 : i+6]))
			i += 6
			if r >= 0xD800 && r < 0xDC00 && i+6 <= len(s) && s[i] == '\\' && s[i+1] == 'u' {
				if r2 := rune(hex4(s[i+2 : i+6])); r2 >= 0xDC00 && r2 < 0xE000 {
					r = (r-0xD800)<<10 | (r2 - 0xDC00) + 0x10000
					i += 6
				}
			}
			if r >= 0xD800 && r < 0xE000 {
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
			continue
		default: // " \ /
			out = append(out, s[i+1])
		}
		i += 2
	}
	return out
}

func hex4(h []byte) int {
	v := 0
	for _, c := range h {
		v <<= 4
		switch {
		case c >= '0' && c <= '9':
			v |= int(c - '0')
		case c >= 'a' && c <= 'f':
			v |= int(c-'a') + 10
		default:
			v |= int(c-'A') + 10
		}
	}
	return v
}

// StringValue returns the unquoted content of b[vs:ve] when it is a string,
// and ok=false for any other kind of value.
func StringValue(b []byte, vs, ve int, scratch []byte) (s []byte, ok bool) {
	if ve-vs < 2 || b[vs] != '"' {
		return nil, false
	}
	return Unquote(b[vs:ve], scratch), true
}
