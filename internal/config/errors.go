package config

import (
	"fmt"
	"sort"
	"strings"
)

// scope says who can fix a catalogue row.
type scope int

const (
	scopeUser       scope = iota // the configuration file
	scopeDefinition              // the built-in service definitions (a coding mistake)
	scopeRuntime                 // the user's AWS or Devo environment
)

// row is one line of the error catalogue: kind, id and message template
// exactly as in spec/config.md §13.
type row struct {
	Kind  string
	ID    int
	Msg   string
	scope scope
}

// Project additions beyond the spec's P1–P18; see docs/errors.md.
func init() {
	catalogue["P19"] = row{"OutputConfigurationError", 105, `"outputs.{name}.config.{key}" has an unsupported value "{value}", allowed: {allowed}`, scopeUser}
	catalogue["P20"] = row{"ConfigurationError", 120, `"{key_path}" must be {expected}`, scopeUser}
	catalogue["P21"] = row{"ConfigurationError", 121, `"{key_path}": unknown key`, scopeUser}
	catalogue["P22"] = row{"AwsServiceConfigurationError", 108, `"{service_config_key_path}": unknown service "{name}": it is not a predefined service and declares no "types"`, scopeUser}
	catalogue["P23"] = row{"OutputConfigurationError", 106, `File "{path}" is not {what}: {reason}`, scopeUser}
	catalogue["P24"] = row{"OutputConfigurationError", 107, `"outputs.{name}.config.key" does not belong to the certificate "outputs.{name}.config.cert": {reason}`, scopeUser}
	catalogue["P25"] = row{"CoordinationConfigurationError", 1, `"globals.coordination.type" has an unsupported value "{value}", allowed: {allowed}`, scopeUser}
	catalogue["P26"] = row{"CoordinationConfigurationError", 2, `"globals.coordination.{key}" mandatory property is missing or empty`, scopeUser}
	catalogue["P27"] = row{"CoordinationError", 1, `Coordination table "{table}" in region "{region}" is not available: {reason}`, scopeRuntime}
}

// Error is one configuration problem: a catalogue row with its message
// rendered. Row identifies it ("A34", "P13"…) because kind and id are not
// unique in the product's catalogue.
type Error struct {
	Row  string // catalogue row, e.g. "A34"
	Kind string // e.g. "AwsServiceConfigurationError"
	ID   int
	Path string // key path of the offending value, e.g. "inputs.aws.services.metrics-all.tag"
	Msg  string // rendered message
	// Hint is what to do about it when the catalogue message alone does
	// not say: the expected type, or "did you mean …?". It may be empty.
	Hint string
}

// Error returns "<Kind>(<ID>): <Msg>", the product's catalogue line,
// exactly as the product words it.
func (e *Error) Error() string { return fmt.Sprintf("%s(%d): %s", e.Kind, e.ID, e.Msg) }

// Detail is the line the collector prints: Error, then " (at <Path>)" when
// the catalogue message does not name the key path itself, then " — <Hint>"
// when there is one. Every problem so names what is wrong, where, and the
// fix when one can be suggested.
func (e *Error) Detail() string {
	s := e.Error()
	if e.Path != "" && !strings.Contains(e.Msg, `"`+e.Path+`"`) {
		s += " (at " + e.Path + ")"
	}
	if e.Hint != "" {
		s += " — " + e.Hint
	}
	return s
}

// withHint sets e.Hint and returns e.
func (e *Error) withHint(h string) *Error {
	e.Hint = h
	return e
}

// Errors is every problem found in one pass. Use errors.As to get it from
// the error Load returns.
type Errors []*Error

// Error joins the problems, one per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Rows returns the catalogue rows of es, in order; handy in tests and logs.
func (es Errors) Rows() []string {
	r := make([]string, len(es))
	for i, e := range es {
		r[i] = e.Row
	}
	return r
}

// newError renders catalogue row r. args are placeholder/value pairs; only
// the placeholders named there are replaced, so literal braces in a message
// (A5: "{event_type}, {account_id}…") stay as the product prints them.
func newError(r, path string, args ...string) *Error {
	c, ok := catalogue[r]
	if !ok {
		panic("config: no catalogue row " + r)
	}
	msg := c.Msg
	for i := 0; i+1 < len(args); i += 2 {
		msg = strings.ReplaceAll(msg, "{"+args[i]+"}", args[i+1])
	}
	return &Error{Row: r, Kind: c.Kind, ID: c.ID, Path: path, Msg: msg}
}

// RuntimeError renders a catalogue row of the Runtime scope (B27, P17) for
// the packages that meet those conditions, e.g.
//
//	RuntimeError("B27", "sqs_queue_name", q, "service_name", s, "submodule_config", region, "reason", why)
func RuntimeError(r string, args ...string) *Error {
	if c, ok := catalogue[r]; !ok || c.scope != scopeRuntime {
		panic("config: " + r + " is not a runtime catalogue row")
	}
	return newError(r, "", args...)
}

// quoteList renders names the way the product's messages print lists:
// ["a", "b"].
func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// sortErrors orders problems by key path, then row, so output is stable.
func sortErrors(es Errors) {
	sort.SliceStable(es, func(i, j int) bool {
		if es[i].Path != es[j].Path {
			return es[i].Path < es[j].Path
		}
		return es[i].Row < es[j].Row
	})
}
