// Package jsonpay turns a JSON object received from AWS into a Devo payload:
// compact, valid UTF-8, with "@devo_pulling_id" as its last top-level key
// (devo-output.md §14 and §15.8).
package jsonpay

import (
	"errors"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/jsontext"
)

// Key is the member that Append adds (and replaces).
const Key = "@devo_pulling_id"

var (
	// ErrNotObject: the input is valid JSON (or starts like it) but not an object.
	ErrNotObject = errors.New("payload is not a JSON object")
	// ErrInvalid: the input is not one well-formed JSON value.
	ErrInvalid = errors.New("payload is not valid JSON")
)

var quotedKey = []byte(`"` + Key + `"`)

// Append appends to dst the compacted form of the JSON object raw, without
// any top-level Key member, followed by Key with the value pullingID as the
// last member. Whitespace between tokens is removed; keys, their order and
// every value are kept byte for byte (escapes included), except that each
// byte of invalid UTF-8 inside a string becomes U+FFFD.
//
// Errors wrap ErrNotObject or ErrInvalid; dst is returned unchanged with them.
// When raw is already compact, valid UTF-8 and has no Key member, the body is
// copied in one piece.
func Append(dst, raw []byte, pullingID string) ([]byte, error) {
	i := jsontext.SkipSpace(raw, 0)
	if i >= len(raw) {
		return dst, fmt.Errorf("%w: empty input", ErrInvalid)
	}
	if raw[i] != '{' {
		if _, err := jsontext.Value(raw, i, new(jsontext.Flags)); err != nil {
			return dst, invalid(err)
		}
		return dst, fmt.Errorf("%w: starts with %q", ErrNotObject, raw[i])
	}
	var fl jsontext.Flags
	hasKey := false
	end, err := jsontext.Members(raw, i, &fl, func(m jsontext.Member) error {
		if isKey(m.Key) {
			hasKey = true
		}
		return nil
	})
	if err != nil {
		return dst, invalid(err)
	}
	if t := jsontext.SkipSpace(raw, end); t != len(raw) {
		return dst, fmt.Errorf("%w: data after the object at offset %d", ErrInvalid, t)
	}
	if fl&(jsontext.Space|jsontext.BadUTF8) == 0 && !hasKey && i == 0 {
		return AppendPlain(dst, raw[:end], pullingID), nil
	}

	dst = append(dst, '{')
	n := 0
	_, err = jsontext.Members(raw, i, &fl, func(m jsontext.Member) error {
		if isKey(m.Key) {
			return nil
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		n++
		dst = compact(dst, m.Key)
		dst = append(dst, ':')
		dst = compact(dst, raw[m.ValueStart:m.ValueEnd])
		return nil
	})
	if err != nil { // validated above; kept for safety against future edits
		return dst, invalid(err)
	}
	if n > 0 {
		dst = append(dst, ',')
	}
	return appendKey(dst, pullingID), nil
}

// AppendPlain appends to dst the object raw followed by Key with the value
// pullingID as its last member. raw must be what Append would copy as is:
// one valid JSON object with no whitespace between or around its tokens,
// valid UTF-8, and no top-level Key member. A reader that has validated raw
// (cloudtrail.Record.Plain) calls it to skip Append's second pass.
func AppendPlain(dst, raw []byte, pullingID string) []byte {
	dst = append(dst, raw[:len(raw)-1]...)
	if len(raw) > 2 { // not {}
		dst = append(dst, ',')
	}
	return appendKey(dst, pullingID)
}

func invalid(err error) error {
	if errors.Is(err, jsontext.ErrShort) {
		return fmt.Errorf("%w: truncated", ErrInvalid)
	}
	return fmt.Errorf("%w: %v", ErrInvalid, err)
}

func isKey(quoted []byte) bool {
	if len(quoted) == len(quotedKey) && string(quoted) == string(quotedKey) {
		return true
	}
	// An escaped spelling ("\u0040devo_pulling_id") is the same key.
	var scratch [32]byte
	for _, c := range quoted {
		if c == '\\' {
			return string(jsontext.Unquote(quoted, scratch[:0])) == Key
		}
	}
	return false
}

func appendKey(dst []byte, id string) []byte {
	dst = append(dst, quotedKey...)
	dst = append(dst, ':', '"')
	plain := true
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == '"' || c == '\\' {
			plain = false
			break
		}
	}
	if plain { // the usual "1717161300.123456"
		dst = append(dst, id...)
		return append(dst, '"', '}')
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, `\u00`...)
			dst = append(dst, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"', '}')
}

// compact copies the validated JSON value v, dropping whitespace outside
// strings and replacing invalid UTF-8 inside them.
func compact(dst, v []byte) []byte {
	inStr := false
	for i := 0; i < len(v); {
		c := v[i]
		switch {
		case !inStr:
			if c != ' ' && c != '\t' && c != '\n' && c != '\r' {
				dst = append(dst, c)
				inStr = c == '"'
			}
			i++
		case c == '\\':
			dst = append(dst, c, v[i+1])
			i += 2
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			inStr = c != '"'
			i++
		default:
			r, size := utf8.DecodeRune(v[i:])
			if r == utf8.RuneError && size == 1 {
				dst = append(dst, "\uFFFD"...)
			} else {
				dst = append(dst, v[i:i+size]...)
			}
			i += size
		}
	}
	return dst
}

// PullingID formats t as the value of Key: Unix epoch seconds with exactly six
// decimals, for example "1655983326.290848".
func PullingID(t time.Time) string {
	us := t.UnixMicro()
	sec, frac := us/1e6, us%1e6
	if frac < 0 {
		sec, frac = sec-1, frac+1e6
	}
	b := strconv.AppendInt(make([]byte, 0, 24), sec, 10)
	b = append(b, '.')
	f := strconv.AppendInt(make([]byte, 0, 8), frac, 10)
	for k := len(f); k < 6; k++ {
		b = append(b, '0')
	}
	return string(append(b, f...))
}
