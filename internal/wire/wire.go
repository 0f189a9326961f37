// Package wire encodes events into the bytes the network outputs write: the
// Devo line (devo-output.md §3, fixed date) and the RFC 3164 line with a real
// UTC timestamp (§15.9), with octet-counted framing (§5) for payloads that
// carry an interior LF.
//
// Encoders append to a caller-owned buffer and allocate nothing per event.
package wire

import (
	"bytes"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Format selects the header of a line.
type Format uint8

const (
	// DevoLine is `<14>Jan  1 00:00:00 HOST TAG: PAYLOAD`: the fixed date of
	// the reference SDK, which Devo ignores (it stamps eventdate itself).
	DevoLine Format = iota
	// RFC3164 is `<14>Mmm _d HH:MM:SS HOST TAG: PAYLOAD` with the event's
	// send time in UTC and a space-padded day.
	RFC3164
)

func (f Format) String() string {
	switch f {
	case DevoLine:
		return "devo_line"
	case RFC3164:
		return "rfc3164"
	}
	return "unknown"
}

const (
	pri       = "<14>"
	fixedDate = "Jan  1 00:00:00"
	// stampLayout is RFC 3164's TIMESTAMP: the day is padded with a space.
	stampLayout = "Jan _2 15:04:05"
)

// Host returns name as it may appear in the HOSTNAME field: spaces become
// '_' (a space would end the field) and an empty name becomes "localhost".
func Host(name string) string {
	if name == "" {
		return "localhost"
	}
	return strings.ReplaceAll(name, " ", "_")
}

// Encoder appends complete lines for one host in one format. The zero value
// writes Devo lines for host "localhost"; use NewEncoder.
type Encoder struct {
	format Format
	host   string
}

// NewEncoder returns an encoder for host (sanitised with Host) in format f.
func NewEncoder(f Format, host string) Encoder {
	return Encoder{format: f, host: Host(host)}
}

// Format is the encoder's line format.
func (e Encoder) Format() Format { return e.format }

// Host is the sanitised HOSTNAME the encoder writes.
func (e Encoder) Host() string {
	if e.host == "" {
		return "localhost"
	}
	return e.host
}

// Append appends the line for (tag, payload) to dst and returns the extended
// buffer. now is used only by RFC3164 (converted to UTC).
func (e Encoder) Append(dst []byte, now time.Time, tag string, payload []byte) []byte {
	if e.format == RFC3164 {
		return AppendRFC3164(dst, now, e.Host(), tag, payload)
	}
	return AppendDevo(dst, e.Host(), tag, payload)
}

// AppendTrusted is Append for a payload the caller guarantees is valid
// UTF-8 holding no LF (pipeline.Event.Clean: compact JSON from jsonpay,
// for example): it skips the UTF-8 and LF scans, which cost a few percent
// of the CloudTrail path. Given anything else it would write a broken line.
func (e Encoder) AppendTrusted(dst []byte, now time.Time, tag string, payload []byte) []byte {
	dst = append(dst, pri...)
	if e.format == RFC3164 {
		dst = now.UTC().AppendFormat(dst, stampLayout)
	} else {
		dst = append(dst, fixedDate...)
	}
	dst = append(dst, ' ')
	dst = append(dst, e.Host()...)
	dst = append(dst, ' ')
	dst = append(dst, tag...)
	dst = append(dst, ':', ' ')
	dst = append(dst, payload...)
	return append(dst, '\n')
}

// AppendDevo appends the Devo line of §3 for an already sanitised host.
// Invalid UTF-8 in the payload becomes U+FFFD (one per invalid byte), one LF
// ends the line unless the payload already ends with one, and a payload
// with an interior LF is framed with its octet count (§5).
func AppendDevo(dst []byte, host, tag string, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, pri...)
	dst = append(dst, fixedDate...)
	return finish(dst, start, host, tag, payload)
}

// AppendRFC3164 appends the RFC 3164 line of §15.9: like AppendDevo, but
// with t in UTC as the timestamp.
func AppendRFC3164(dst []byte, t time.Time, host, tag string, payload []byte) []byte {
	start := len(dst)
	dst = append(dst, pri...)
	dst = t.UTC().AppendFormat(dst, stampLayout)
	return finish(dst, start, host, tag, payload)
}

func finish(dst []byte, start int, host, tag string, payload []byte) []byte {
	dst = append(dst, ' ')
	dst = append(dst, host...)
	dst = append(dst, ' ')
	dst = append(dst, tag...)
	dst = append(dst, ':', ' ')
	body := payload
	if n := len(body); n > 0 && body[n-1] == '\n' {
		body = body[:n-1]
	}
	dst = appendValid(dst, body)
	dst = append(dst, '\n')
	if !hasLF(body) {
		return dst
	}
	return frame(dst, start)
}

func hasLF(b []byte) bool { return bytes.IndexByte(b, '\n') >= 0 }

// frame prefixes dst[start:] with its length and a space (RFC 6587 octet
// counting), in place.
func frame(dst []byte, start int) []byte {
	var num [20]byte
	prefix := strconv.AppendInt(num[:0], int64(len(dst)-start), 10)
	prefix = append(prefix, ' ')
	n := len(prefix)
	end := len(dst)
	dst = append(dst, prefix...) // grow by n
	copy(dst[start+n:], dst[start:end])
	copy(dst[start:], prefix)
	return dst
}

// appendValid appends b with each byte of invalid UTF-8 replaced by U+FFFD.
func appendValid(dst, b []byte) []byte {
	if utf8.Valid(b) {
		return append(dst, b...)
	}
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, b[:size]...)
		}
		b = b[size:]
	}
	return dst
}
