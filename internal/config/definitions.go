package config

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// startTimeRegex is the start_time format of every non-metrics service
// (spec config.md §10).
const startTimeRegex = `^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$`

// defChecker walks one definition, collecting catalogue errors.
type defChecker struct {
	name  string
	props map[string]any
	errs  Errors
}

func (c *defChecker) path(key string) string {
	p := "definitions." + c.name + ".module_properties"
	if key != "" {
		p += "." + key
	}
	return p
}

func (c *defChecker) fail(r, key string, extra ...string) {
	base := "definitions." + c.name + ".module_properties"
	args := append([]string{
		"module_properties_key_path", base,
		"module_properties_path", base,
		"sqs_s3_processor_properties_key_path", base + ".sqs_s3_processor",
	}, extra...)
	c.errs = append(c.errs, newError(r, c.path(key), args...))
}

// str checks a mandatory string property: missing or empty → missRow, not a
// string → typeRow. It returns the value and whether it is usable.
func (c *defChecker) str(key, missRow, typeRow string) (string, bool) {
	v, ok := c.props[key]
	if !ok || v == nil || v == "" {
		c.fail(missRow, key)
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		c.fail(typeRow, key)
		return "", false
	}
	return s, true
}

func (c *defChecker) regex(key, missRow, typeRow, badRow string, needGroup bool) {
	s, ok := c.str(key, missRow, typeRow)
	if !ok {
		return
	}
	re, err := regexp.Compile(s)
	if err != nil || needGroup && re.NumSubexp() < 1 {
		c.fail(badRow, key)
	}
}

// tagBase checks the tag template rows: missing, type, the four required
// placeholders, the allowed six.
func (c *defChecker) tagBase(miss, typ, required, allowed string) {
	s, ok := c.str("tag_base", miss, typ)
	if !ok {
		return
	}
	if len(tag.Missing(s)) > 0 {
		c.fail(required, "tag_base")
	}
	if len(tag.Unknown(s)) > 0 {
		c.fail(allowed, "tag_base")
	}
}

func (c *defChecker) intProp(key, missRow, typeRow, rangeRow string, min int) {
	v, ok := c.props[key]
	if !ok || v == nil {
		c.fail(missRow, key)
		return
	}
	n, ok := v.(int)
	if !ok {
		c.fail(typeRow, key)
		return
	}
	if n < min {
		c.fail(rangeRow, key)
	}
}

// queueName checks the SQS queue-name rows (A24–A29 or B10–B15).
func (c *defChecker) queueName(rows [6]string) {
	c.str("sqs_queue_custom_name_key", rows[0], rows[1])
	v, ok := c.props["sqs_queue_required_default_name"]
	if !ok {
		return
	}
	req, isBool := v.(bool)
	if !isBool {
		c.fail(rows[2], "sqs_queue_required_default_name")
		return
	}
	if !req {
		return
	}
	if s, ok := c.str("sqs_queue_default_name", rows[3], rows[4]); ok && !strings.Contains(s, "{input_id}") {
		c.fail(rows[5], "sqs_queue_default_name")
	}
}

// checkDefinition validates one definition with the rows of its section.
func checkDefinition(name string, def any, section string) Errors {
	c := &defChecker{name: name}
	first := section[:1]
	if first == "G" {
		first = "C"
	}
	propsRows := map[string][2]string{"A": {"A1", "A2"}, "B": {"B1", "B2"}, "C": {"C1", "C2"}, "D": {"D2", "D3"}, "E": {"E1", "E2"}}[first]
	d, _ := def.(map[string]any)
	raw, ok := d["module_properties"]
	if !ok || raw == nil {
		c.fail(propsRows[0], "")
		return c.errs
	}
	props, ok := raw.(map[string]any)
	if !ok {
		c.fail(propsRows[1], "")
		return c.errs
	}
	if len(props) == 0 {
		c.fail(propsRows[0], "")
		return c.errs
	}
	c.props = props

	switch section {
	case "A":
		c.tagBase("A3", "A4", "A5", "A6")
		c.str("event_type_default", "A7", "A8")
		c.derivation()
		c.str("enable_auto_event_type", "A14", "A15")
		c.str("enable_auto_event_type_config_key", "A16", "A17")
		c.processorMapping()
		c.queueName([6]string{"A24", "A25", "A26", "A27", "A28", "A29"})
	case "B":
		// Section B has no tag rows; the product's first table (A) is the
		// generic one, so its rows check the tag of S3+SQS definitions.
		c.tagBase("A3", "A4", "A5", "A6")
		c.str("event_type_default", "A7", "A8")
		c.regex("start_time_regex", "B3", "B4", "B5", false)
		c.s3Part()
	case "CB", "C", "G":
		c.tagBase("C3", "C4", "C5", "C6")
		c.str("event_type_default", "C7", "C8")
		c.regex("start_time_regex", "C13", "C14", "C15", false)
		if section == "G" {
			break
		}
		c.derivation()
		c.str("enable_auto_event_type", "C9", "C10")
		c.str("enable_auto_event_type_config_key", "C11", "C12")
		c.intProp("gap_until_now_in_minutes", "C16", "C17", "C18", 0)
		c.intProp("time_slot_in_hours", "C19", "C20", "C21", 1)
		switch v := props["sources"].(type) {
		case nil:
			c.fail("C22", "sources")
		case string:
			if v == "" {
				c.fail("C22", "sources")
			}
		case []any:
			if len(v) == 0 {
				c.fail("C22", "sources")
			}
		default:
			c.fail("C23", "sources")
		}
		if section == "CB" {
			c.s3Part()
		}
	case "D":
		c.tagBase("D4", "D5", "D6", "D7")
		c.str("event_type_default", "A7", "A8")
		c.regex("start_time_regex", "D8", "D9", "D10", false)
	case "E":
		c.str("tag_base", "E3", "E4")
		if s, ok := props["tag_base"].(string); ok && s != "" {
			// E has no placeholder rows; A5/A6 are the generic ones.
			if len(tag.Missing(s)) > 0 {
				c.fail("A5", "tag_base")
			}
			if len(tag.Unknown(s)) > 0 {
				c.fail("A6", "tag_base")
			}
		}
		c.str("event_type_default", "A7", "A8")
		c.regex("start_time_regex", "D8", "D9", "D10", false)
		fromConfig, _ := props["metric_namespace_from_config"].(bool)
		switch v := props["metric_namespace"].(type) {
		case nil:
			if !fromConfig {
				c.fail("E5", "metric_namespace")
			}
		case []any:
			if len(v) == 0 && !fromConfig {
				c.fail("E5", "metric_namespace")
			}
		default:
			c.fail("E6", "metric_namespace")
		}
	default:
		panic("config: unknown definition section " + section)
	}
	return c.errs
}

// derivation checks the auto_event_type field/regex pair (A9–A13).
func (c *defChecker) derivation() {
	c.str("event_type_source_field_name", "A9", "A10")
	c.regex("event_type_extracting_regex", "A11", "A12", "A13", true)
}

// processorMapping checks the optional event_type_processor_mapping (A18–A23).
func (c *defChecker) processorMapping() {
	v, ok := c.props["event_type_processor_mapping"]
	if !ok {
		return
	}
	m, ok := v.(map[string]any)
	if !ok {
		c.fail("A18", "event_type_processor_mapping")
		return
	}
	if len(m) == 0 {
		c.fail("A19", "event_type_processor_mapping")
		return
	}
	for _, name := range sortedKeys(m) {
		entry, _ := m[name].(map[string]any)
		for _, f := range []struct{ key, miss, typ string }{{"processor_class", "A20", "A21"}, {"tagging", "A22", "A23"}} {
			key := "event_type_processor_mapping." + name + "." + f.key
			switch s := entry[f.key].(type) {
			case string:
				if s == "" {
					c.fail(f.miss, key, "processor_name", name)
				}
			case nil:
				c.fail(f.miss, key, "processor_name", name)
			default:
				c.fail(f.typ, key, "processor_name", name)
			}
		}
	}
}

// s3Part checks the S3+SQS rows of section B (B6–B15). start_time_regex
// (B3–B5) is checked by the caller: CloudTrail checks it once, with C rows.
func (c *defChecker) s3Part() {
	switch v := c.props["sqs_s3_processor"].(type) {
	case nil:
		c.fail("B6", "sqs_s3_processor")
	case map[string]any:
		if len(v) == 0 {
			c.fail("B6", "sqs_s3_processor")
			break
		}
		switch s := v["class_name"].(type) {
		case string:
			if s == "" {
				c.fail("B8", "sqs_s3_processor.class_name")
			}
		case nil:
			c.fail("B8", "sqs_s3_processor.class_name")
		default:
			c.fail("B9", "sqs_s3_processor.class_name")
		}
	default:
		c.fail("B7", "sqs_s3_processor")
	}
	c.queueName([6]string{"B10", "B11", "B12", "B13", "B14", "B15"})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// CheckDefinitions validates every built-in definition. It returns nothing
// unless the code has a mistake; Validate includes its result so such a
// mistake cannot go unnoticed.
func CheckDefinitions() Errors {
	var errs Errors
	for _, name := range sortedKeys(definitions) {
		errs = append(errs, checkDefinition(name, definitions[name], definitionSections[name])...)
	}
	return errs
}

// builtin is a definition turned into typed values for the decoder.
type builtin struct {
	tagBase          string
	defaultEventType string
	field            string
	re               *regexp.Regexp
	autoDefault      bool
	autoKey          string
	queueKey         string
	startRe          *regexp.Regexp
	gap, slot        time.Duration
	sources          []string
	namespaces       []string
	patterns         []Pattern
}

var (
	builtinsMu sync.Mutex
	builtins   = map[string]*builtin{}
)

// builtinFor returns the typed form of a definition, made on first use.
// Values that fail the checker are left zero; CheckDefinitions reports them.
func builtinFor(name string) *builtin {
	builtinsMu.Lock()
	defer builtinsMu.Unlock()
	b, ok := builtins[name]
	if !ok {
		b = makeBuiltin(definitions[name])
		builtins[name] = b
	}
	return b
}

func makeBuiltin(def any) *builtin {
	b := &builtin{autoKey: "auto_event_type", queueKey: "sqs_queue_name"}
	d, _ := def.(map[string]any)
	p, _ := d["module_properties"].(map[string]any)
	s := func(k string) string { v, _ := p[k].(string); return v }
	b.tagBase = s("tag_base")
	b.defaultEventType = s("event_type_default")
	b.field = s("event_type_source_field_name")
	if re, err := regexp.Compile(s("event_type_extracting_regex")); err == nil && b.field != "" {
		b.re = re
	}
	b.autoDefault = s("enable_auto_event_type") == "true"
	if k := s("enable_auto_event_type_config_key"); k != "" {
		b.autoKey = k
	}
	if k := s("sqs_queue_custom_name_key"); k != "" {
		b.queueKey = k
	}
	if re, err := regexp.Compile(s("start_time_regex")); err == nil && s("start_time_regex") != "" {
		b.startRe = re
	}
	if v, ok := p["gap_until_now_in_minutes"].(int); ok {
		b.gap = time.Duration(v) * time.Minute
	}
	if v, ok := p["time_slot_in_hours"].(int); ok {
		b.slot = time.Duration(v) * time.Hour
	}
	switch v := p["sources"].(type) {
	case string:
		b.sources = []string{v}
	case []any:
		for _, e := range v {
			if es, ok := e.(string); ok {
				b.sources = append(b.sources, es)
			}
		}
	}
	if v, ok := p["metric_namespace"].([]any); ok {
		for _, e := range v {
			if es, ok := e.(string); ok {
				b.namespaces = append(b.namespaces, es)
			}
		}
	}
	if v, ok := p["event_type_file_regex_patterns"].([]any); ok {
		for _, e := range v {
			pair, _ := e.([]any)
			if len(pair) != 2 {
				continue
			}
			et, _ := pair[0].(string)
			expr, _ := pair[1].(string)
			if re, err := regexp.Compile(expr); err == nil {
				b.patterns = append(b.patterns, Pattern{EventType: et, Re: re})
			}
		}
	}
	return b
}

// String helps tests print a builtin.
func (b *builtin) String() string { return fmt.Sprintf("builtin{%s}", b.tagBase) }
