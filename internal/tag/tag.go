// Package tag builds Devo tags: it parses tag templates with the product's
// six placeholders, expands them with per-event values, derives event types
// from record fields and S3 object keys, and caches expanded tags.
//
// A Devo tag names the destination table in its first four dot-separated
// levels; the levels after that are metadata (spec/tags.md).
package tag

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// MaxLength is the longest tag the collector SDK accepts, after expansion.
const MaxLength = 1024

// FormatVersion is the value of {format_version}: both tags the product
// shows end in ".1" before any environment level.
const FormatVersion = "1"

// The six placeholders a template may use.
const (
	EventType    = "event_type"
	AccountID    = "account_id"
	RegionID     = "region_id"
	Format       = "format_version"
	Environment  = "environment"
	ServiceName  = "service_name"
	envSuffix    = ".{" + Environment + "}"
	requiredTail = ".{" + EventType + "}.{" + AccountID + "}.{" + RegionID + "}.{" + Format + "}"
)

// Allowed lists the placeholders a template may use, in the order the
// product's error messages print them.
var Allowed = []string{EventType, AccountID, RegionID, Format, Environment, ServiceName}

// Required lists the placeholders every built-in tag base must contain.
var Required = []string{EventType, AccountID, RegionID, Format}

// Base returns the built-in template for a table base such as
// "cloud.aws.cloudtrail": base.{event_type}.{account_id}.{region_id}.{format_version},
// plus ".{environment}" when withEnvironment is set.
func Base(base string, withEnvironment bool) string {
	t := base + requiredTail
	if withEnvironment {
		t += envSuffix
	}
	return t
}

// Values fills a template's placeholders. An empty FormatVersion means
// FormatVersion ("1"). An empty Environment removes the environment level
// together with the dot before it, so a tag never ends in a dot.
type Values struct {
	EventType, AccountID, RegionID, FormatVersion, Environment, ServiceName string
}

func (v *Values) get(name string) string {
	switch name {
	case EventType:
		return v.EventType
	case AccountID:
		return v.AccountID
	case RegionID:
		return v.RegionID
	case Format:
		if v.FormatVersion == "" {
			return FormatVersion
		}
		return v.FormatVersion
	case Environment:
		return v.Environment
	case ServiceName:
		return v.ServiceName
	}
	return ""
}

// part is a literal run of text or, when name is set, one placeholder.
type part struct {
	lit, name string
}

// Template is a compiled tag template. It is immutable and safe for
// concurrent use.
type Template struct {
	raw   string
	parts []part
	names []string
}

// ErrPlaceholders is wrapped by the error Compile returns for a template
// that uses placeholders outside Allowed.
var ErrPlaceholders = errors.New("unexpected placeholders")

// Compile parses a template. A placeholder is "{name}" where name is made of
// letters, digits and underscores; any other brace is literal text. A
// template without placeholders is valid and expands to itself. Names
// outside Allowed are an error wrapping ErrPlaceholders.
func Compile(s string) (*Template, error) {
	t := &Template{raw: s}
	for _, seg := range scan(s) {
		t.parts = append(t.parts, seg)
		if seg.name != "" && !slices.Contains(t.names, seg.name) {
			t.names = append(t.names, seg.name)
		}
	}
	if bad := Unknown(s); len(bad) > 0 {
		return nil, fmt.Errorf("tag template %q: %w: %s", s, ErrPlaceholders, strings.Join(bad, ", "))
	}
	return t, nil
}

// MustCompile is Compile for templates known to be valid; it panics otherwise.
func MustCompile(s string) *Template {
	t, err := Compile(s)
	if err != nil {
		panic(err)
	}
	return t
}

// scan splits s into literal and placeholder parts, merging adjacent literals.
func scan(s string) []part {
	var parts []part
	var lit strings.Builder
	for i := 0; i < len(s); {
		if s[i] == '{' {
			j := i + 1
			for j < len(s) && isNameByte(s[j]) {
				j++
			}
			if j > i+1 && j < len(s) && s[j] == '}' {
				if lit.Len() > 0 {
					parts = append(parts, part{lit: lit.String()})
					lit.Reset()
				}
				parts = append(parts, part{name: s[i+1 : j]})
				i = j + 1
				continue
			}
		}
		lit.WriteByte(s[i])
		i++
	}
	if lit.Len() > 0 {
		parts = append(parts, part{lit: lit.String()})
	}
	return parts
}

func isNameByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

// Placeholders returns the distinct placeholder names s uses, in order of
// first use.
func Placeholders(s string) []string {
	var names []string
	for _, p := range scan(s) {
		if p.name != "" && !slices.Contains(names, p.name) {
			names = append(names, p.name)
		}
	}
	return names
}

// Unknown returns the placeholders of s that are not in Allowed.
func Unknown(s string) []string {
	var bad []string
	for _, n := range Placeholders(s) {
		if !slices.Contains(Allowed, n) {
			bad = append(bad, n)
		}
	}
	return bad
}

// Missing returns the Required placeholders that s does not use.
func Missing(s string) []string {
	have := Placeholders(s)
	var miss []string
	for _, n := range Required {
		if !slices.Contains(have, n) {
			miss = append(miss, n)
		}
	}
	return miss
}

// String returns the template as written.
func (t *Template) String() string { return t.raw }

// Has reports whether the template uses the placeholder name.
func (t *Template) Has(name string) bool { return slices.Contains(t.names, name) }

// Expand fills the placeholders with v. When v.Environment is empty the
// {environment} placeholder disappears together with one dot right before it.
func (t *Template) Expand(v Values) string {
	n := 0
	for _, p := range t.parts {
		n += len(p.lit) + 16
	}
	buf := make([]byte, 0, n)
	for _, p := range t.parts {
		if p.name == "" {
			buf = append(buf, p.lit...)
			continue
		}
		val := v.get(p.name)
		if p.name == Environment && val == "" {
			if len(buf) > 0 && buf[len(buf)-1] == '.' {
				buf = buf[:len(buf)-1]
			}
			continue
		}
		buf = append(buf, val...)
	}
	return string(buf)
}
