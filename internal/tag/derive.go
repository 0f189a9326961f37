package tag

import (
	"bytes"
	"regexp"
	"strings"
)

// Sanitize makes a derived value usable as one tag level (tags.md §4.4):
// lower-case, every byte outside [a-z0-9_-] replaced with "_", and def when
// the result is empty. A level therefore never holds a dot or a space.
func Sanitize(s, def string) string {
	if s == "" {
		return def
	}
	clean := true
	for i := 0; i < len(s); i++ {
		if !isLevelByte(s[i]) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range strings.ToLower(s) {
		if r < 0x80 && isLevelByte(byte(r)) {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

func isLevelByte(c byte) bool {
	return c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9'
}

// Deriver turns one field of a record into an event type: capture group 1 of
// Re applied to the field's value, sanitised, or Default when Re does not
// match (tags.md §4.1 and §4.2).
type Deriver struct {
	Field   string         // record field holding the value, e.g. "eventSource"
	Re      *regexp.Regexp // must have a capture group 1
	Default string         // event type when there is no match
}

// EventType derives the event type from the field's value.
func (d *Deriver) EventType(value string) string {
	if d.Re == nil {
		return d.Default
	}
	m := d.Re.FindStringSubmatch(value)
	if len(m) < 2 {
		return d.Default
	}
	return Sanitize(m[1], d.Default)
}

// Pattern maps an S3 object key to an event type when Re matches it.
type Pattern struct {
	EventType string
	Re        *regexp.Regexp
}

// Match returns the event type of the first pattern, in order, that matches
// the decoded object key, or def when none does (tags.md §4.3).
func Match(patterns []Pattern, key, def string) string {
	for _, p := range patterns {
		if p.Re.MatchString(key) {
			return p.EventType
		}
	}
	return def
}

// LogKind is what a file of the non-cloudwatch-logs service holds.
type LogKind int

// The kinds of S3 log file ClassifyS3Log tells apart.
const (
	LogUnknown LogKind = iota
	LogVPCFlow
	LogCloudFront
)

func (k LogKind) String() string {
	switch k {
	case LogVPCFlow:
		return "vpc flow logs"
	case LogCloudFront:
		return "cloudfront"
	}
	return "unknown"
}

// cloudFrontKey is the standard-log object name <DISTID>.<YYYY-MM-DD-HH>.<id>.gz.
var cloudFrontKey = regexp.MustCompile(`(^|/)[A-Z0-9]+\.\d{4}-\d{2}-\d{2}-\d{2}\.[A-Za-z0-9]+\.gz$`)

// ClassifyS3Log tells VPC Flow Logs from CloudFront standard logs sharing one
// queue (tags.md §3): by the decoded key first, then by the file's first
// line (pass nil when it is not read yet; a LogUnknown answer then means
// "read the first line and ask again"). LogUnknown after the first line
// means the file is neither and is discarded.
func ClassifyS3Log(key string, firstLine []byte) LogKind {
	switch {
	case strings.Contains(key, "vpcflowlogs"):
		return LogVPCFlow
	case cloudFrontKey.MatchString(key):
		return LogCloudFront
	case bytes.HasPrefix(firstLine, []byte("#Version:")):
		return LogCloudFront
	case bytes.HasPrefix(firstLine, []byte("version ")):
		return LogVPCFlow
	}
	return LogUnknown
}
