// Package eventbridge validates EventBridge envelopes (aws-formats.md §5)
// and splits Security Hub findings events into one payload per finding (§6).
//
// It never decodes detail: it walks the top-level members, keeps the
// original bytes, and rebuilds split payloads by byte splicing, so key
// order and values stay exactly as received.
package eventbridge

import (
	"errors"
	"fmt"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/format/internal/jsontext"
)

var (
	// ErrNotJSON: the body is not one valid JSON value.
	ErrNotJSON = errors.New("body is not JSON")
	// ErrNotEnvelope: valid JSON, but not an object with the envelope's
	// required members (for example a body rewritten by an input
	// transformer). The caller emits such a body as it is.
	ErrNotEnvelope = errors.New("body is not an EventBridge envelope")
)

// Error says what was wrong; it unwraps to ErrNotJSON or ErrNotEnvelope.
type Error struct {
	Err    error
	Detail string
}

func (e *Error) Error() string { return e.Err.Error() + ": " + e.Detail }
func (e *Error) Unwrap() error { return e.Err }

// Required are the members every envelope has; all are strings except
// detail, an object.
var Required = []string{"version", "id", "detail-type", "source", "account", "time", "region", "detail"}

// FindingsDetailTypes are the Security Hub detail types (§6).
var FindingsDetailTypes = []string{
	"Security Hub Findings - Imported",
	"Security Hub Findings - Custom Action",
	"Security Hub Insight Results",
	"Findings Imported V2",
}

// Envelope is a validated EventBridge event. Raw is the body as given (it
// aliases the caller's slice).
type Envelope struct {
	Version    string
	ID         string
	DetailType string
	Source     string
	Account    string
	Time       string
	Region     string
	Raw        []byte

	detailStart, detailEnd int
}

// Parse validates body as an EventBridge envelope. Errors are *Error.
func Parse(body []byte) (Envelope, error) {
	env := Envelope{Raw: body}
	var fl jsontext.Flags
	start := jsontext.SkipSpace(body, 0)
	if start >= len(body) {
		return env, &Error{Err: ErrNotJSON, Detail: "empty body"}
	}
	end, err := jsontext.Value(body, start, &fl)
	if err == nil {
		if t := jsontext.SkipSpace(body, end); t != len(body) {
			err = &jsontext.SyntaxError{Offset: t, Msg: "data after the value"}
		}
	}
	if err != nil {
		if errors.Is(err, jsontext.ErrShort) {
			return env, &Error{Err: ErrNotJSON, Detail: "truncated"}
		}
		return env, &Error{Err: ErrNotJSON, Detail: err.Error()}
	}
	if body[start] != '{' {
		return env, &Error{Err: ErrNotEnvelope, Detail: fmt.Sprintf("a JSON value starting with %q, not an object", body[start])}
	}
	var seen [8]bool
	var bad []string
	_, err = jsontext.Members(body, start, &fl, func(m jsontext.Member) error {
		key := string(jsontext.Unquote(m.Key, nil))
		for i, name := range Required {
			if key != name {
				continue
			}
			seen[i] = true
			if name == "detail" {
				if body[m.ValueStart] != '{' {
					bad = append(bad, "detail is not an object")
				}
				env.detailStart, env.detailEnd = m.ValueStart, m.ValueEnd
				return nil
			}
			s, ok := jsontext.StringValue(body, m.ValueStart, m.ValueEnd, nil)
			if !ok {
				bad = append(bad, name+" is not a string")
				return nil
			}
			*env.field(name) = string(s)
		}
		return nil
	})
	if err != nil { // validated above
		return env, &Error{Err: ErrNotJSON, Detail: err.Error()}
	}
	var missing []string
	for i, ok := range seen {
		if !ok {
			missing = append(missing, Required[i])
		}
	}
	if len(missing) > 0 {
		bad = append(bad, "missing "+strings.Join(missing, ", "))
	}
	if len(bad) > 0 {
		return env, &Error{Err: ErrNotEnvelope, Detail: strings.Join(bad, "; ")}
	}
	return env, nil
}

func (e *Envelope) field(name string) *string {
	switch name {
	case "version":
		return &e.Version
	case "id":
		return &e.ID
	case "detail-type":
		return &e.DetailType
	case "source":
		return &e.Source
	case "account":
		return &e.Account
	case "time":
		return &e.Time
	}
	return &e.Region
}

// Detail returns the raw bytes of the detail object.
func (e Envelope) Detail() []byte { return e.Raw[e.detailStart:e.detailEnd] }

// IsFindings reports whether the detail type is one of FindingsDetailTypes.
func IsFindings(detailType string) bool {
	for _, t := range FindingsDetailTypes {
		if t == detailType {
			return true
		}
	}
	return false
}

// Part is one payload to emit. Payload is the envelope with detail.findings
// holding only Finding; Finding is that finding's raw JSON. For an envelope
// that is not split, Payload is the whole envelope and Finding is nil.
type Part struct {
	Payload []byte
	Finding []byte
}

// Split returns one Part per element of detail.findings, each a copy of the
// envelope whose findings array holds exactly that element (the §6
// decision: account, region, time, detail-type and id stay with every
// finding). An envelope without a findings array, or with an empty one, is
// returned whole as a single Part so nothing is lost. Payloads are new
// memory; Finding slices alias env.Raw.
func Split(env Envelope) ([]Part, error) {
	whole := []Part{{Payload: env.Raw}}
	if env.detailEnd == 0 {
		return whole, nil
	}
	raw := env.Raw
	var fl jsontext.Flags
	fs, fe := -1, -1
	_, err := jsontext.Members(raw, env.detailStart, &fl, func(m jsontext.Member) error {
		if string(jsontext.Unquote(m.Key, nil)) == "findings" {
			fs, fe = m.ValueStart, m.ValueEnd
		}
		return nil
	})
	if err != nil {
		return nil, &Error{Err: ErrNotEnvelope, Detail: "detail: " + err.Error()}
	}
	if fs < 0 || raw[fs] != '[' {
		return whole, nil
	}
	var spans [][2]int
	i := jsontext.SkipSpace(raw, fs+1)
	if raw[i] != ']' {
		for {
			end, err := jsontext.Value(raw, i, &fl)
			if err != nil {
				return nil, &Error{Err: ErrNotEnvelope, Detail: "detail.findings: " + err.Error()}
			}
			spans = append(spans, [2]int{i, end})
			var more bool
			if i, more, err = jsontext.Next(raw, end, ']', &fl); err != nil {
				return nil, &Error{Err: ErrNotEnvelope, Detail: "detail.findings: " + err.Error()}
			}
			if !more {
				break
			}
		}
	}
	if len(spans) == 0 {
		return whole, nil
	}
	head, tail := raw[:fs], raw[fe:]
	size := 0
	for _, s := range spans {
		size += len(head) + 2 + (s[1] - s[0]) + len(tail)
	}
	buf := make([]byte, 0, size)
	parts := make([]Part, len(spans))
	for k, s := range spans {
		from := len(buf)
		buf = append(buf, head...)
		buf = append(buf, '[')
		buf = append(buf, raw[s[0]:s[1]]...)
		buf = append(buf, ']')
		buf = append(buf, tail...)
		parts[k] = Part{Payload: buf[from:len(buf):len(buf)], Finding: raw[s[0]:s[1]]}
	}
	return parts, nil
}
