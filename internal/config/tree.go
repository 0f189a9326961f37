package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// kind is the type of one value of the parsed file.
type kind int

const (
	kNull kind = iota
	kString
	kInt
	kFloat
	kBool
	kMap
	kList
)

func (k kind) String() string {
	return [...]string{"null", "string", "integer", "number", "boolean", "mapping", "list"}[k]
}

// value is one node of a config file, the same for YAML and JSON. Mappings
// keep file order because event_type_file_regex_patterns is ordered.
type value struct {
	kind  kind
	s     string // kString; also the text of every scalar
	i     int64
	f     float64
	b     bool
	keys  []string
	m     map[string]*value
	list  []*value
	line  int
	plain bool // a YAML plain scalar: its type follows from its text
}

func (v *value) get(key string) (*value, bool) {
	if v == nil || v.kind != kMap {
		return nil, false
	}
	c, ok := v.m[key]
	return c, ok
}

// empty reports whether v counts as "missing or empty" in the catalogue.
func (v *value) empty() bool {
	if v == nil {
		return true
	}
	switch v.kind {
	case kNull:
		return true
	case kString:
		return v.s == ""
	case kMap:
		return len(v.keys) == 0
	case kList:
		return len(v.list) == 0
	}
	return false
}

func (v *value) set(key string, c *value) {
	if _, ok := v.m[key]; !ok {
		v.keys = append(v.keys, key)
	}
	v.m[key] = c
}

// parseFile reads path as YAML or JSON, chosen by extension. Errors name the
// file and, when known, the line.
func parseFile(path string) (*value, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	lower := strings.ToLower(path)
	switch {
	case strings.HasSuffix(lower, ".yaml"), strings.HasSuffix(lower, ".yml"):
		return parseYAML(path, data)
	case strings.HasSuffix(lower, ".json"):
		return parseJSON(path, data)
	}
	return nil, fmt.Errorf("config %s: unsupported extension, use .yaml, .yml or .json", path)
}

func parseYAML(path string, data []byte) (*value, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &value{kind: kMap, m: map[string]*value{}}, nil
	}
	return fromYAML(path, doc.Content[0], 0)
}

func fromYAML(path string, n *yaml.Node, depth int) (*value, error) {
	if depth > 100 {
		return nil, fmt.Errorf("config %s: line %d: nesting too deep", path, n.Line)
	}
	switch n.Kind {
	case yaml.AliasNode:
		return fromYAML(path, n.Alias, depth+1)
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return &value{kind: kNull, line: n.Line}, nil
		}
		return fromYAML(path, n.Content[0], depth+1)
	case yaml.SequenceNode:
		v := &value{kind: kList, line: n.Line}
		for _, c := range n.Content {
			cv, err := fromYAML(path, c, depth+1)
			if err != nil {
				return nil, err
			}
			v.list = append(v.list, cv)
		}
		return v, nil
	case yaml.MappingNode:
		v := &value{kind: kMap, m: map[string]*value{}, line: n.Line}
		var merges []*value
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, c := n.Content[i], n.Content[i+1]
			cv, err := fromYAML(path, c, depth+1)
			if err != nil {
				return nil, err
			}
			if k.Kind == yaml.ScalarNode && k.Tag == "!!merge" {
				merges = append(merges, cv)
				continue
			}
			if k.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("config %s: line %d: mapping keys must be scalars", path, k.Line)
			}
			if _, dup := v.m[k.Value]; dup {
				return nil, fmt.Errorf("config %s: line %d: key %q repeated", path, k.Line, k.Value)
			}
			v.set(k.Value, cv)
		}
		// "<<: *anchor" fills in keys the mapping does not set itself.
		for _, mv := range merges {
			srcs := []*value{mv}
			if mv.kind == kList {
				srcs = mv.list
			}
			for _, src := range srcs {
				if src.kind != kMap {
					return nil, fmt.Errorf("config %s: line %d: merge value must be a mapping", path, n.Line)
				}
				for _, k := range src.keys {
					if _, ok := v.m[k]; !ok {
						v.set(k, src.m[k])
					}
				}
			}
		}
		return v, nil
	}
	v := &value{s: n.Value, line: n.Line, plain: n.Style == 0}
	if err := resolveScalar(v, n.ShortTag()); err != nil {
		return nil, fmt.Errorf("config %s: line %d: %w", path, n.Line, err)
	}
	return v, nil
}

// resolveScalar types v from its YAML tag. Timestamps stay text: start_time
// is always read as a string (spec config.md §1).
func resolveScalar(v *value, tag string) error {
	switch tag {
	case "!!null":
		v.kind = kNull
	case "!!bool":
		v.kind = kBool
		var b bool
		if err := yaml.Unmarshal([]byte(v.s), &b); err != nil {
			return err
		}
		v.b = b
	case "!!int":
		var i int64
		if err := yaml.Unmarshal([]byte(v.s), &i); err != nil {
			return fmt.Errorf("integer %q out of range", v.s)
		}
		v.kind, v.i = kInt, i
	case "!!float":
		var f float64
		if err := yaml.Unmarshal([]byte(v.s), &f); err != nil {
			return err
		}
		v.kind, v.f = kFloat, f
	default: // !!str, !!timestamp, !!binary and custom tags
		v.kind = kString
	}
	return nil
}

func parseJSON(path string, data []byte) (*value, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := fromJSON(dec, data, 0)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			err = errors.New("unexpected data after the top-level value")
		}
	}
	if err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return nil, fmt.Errorf("config %s: line %d: %w", path, lineAt(data, se.Offset), err)
		}
		return nil, fmt.Errorf("config %s: line %d: %w", path, lineAt(data, dec.InputOffset()), err)
	}
	return v, nil
}

func lineAt(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func fromJSON(dec *json.Decoder, data []byte, depth int) (*value, error) {
	if depth > 100 {
		return nil, errors.New("nesting too deep")
	}
	line := lineAt(data, dec.InputOffset())
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, errors.New("unexpected end of file")
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			v := &value{kind: kMap, m: map[string]*value{}, line: line}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				c, err := fromJSON(dec, data, depth+1)
				if err != nil {
					return nil, err
				}
				if _, dup := v.m[k]; dup {
					return nil, fmt.Errorf("key %q repeated", k)
				}
				v.set(k, c)
			}
			_, err := dec.Token()
			return v, err
		case '[':
			v := &value{kind: kList, line: line}
			for dec.More() {
				c, err := fromJSON(dec, data, depth+1)
				if err != nil {
					return nil, err
				}
				v.list = append(v.list, c)
			}
			_, err := dec.Token()
			return v, err
		}
		return nil, fmt.Errorf("unexpected %q", t)
	case string:
		return &value{kind: kString, s: t, line: line}, nil
	case bool:
		return &value{kind: kBool, b: t, s: strconv.FormatBool(t), line: line}, nil
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return &value{kind: kInt, i: i, s: t.String(), line: line}, nil
		}
		f, err := t.Float64()
		if err != nil {
			return nil, err
		}
		return &value{kind: kFloat, f: f, s: t.String(), line: line}, nil
	case nil:
		return &value{kind: kNull, line: line}, nil
	}
	return nil, fmt.Errorf("unexpected token %v", tok)
}

// expandEnv replaces ${NAME} in every string value with the environment
// variable NAME, and ${NAME:-default} with default when NAME is unset or
// empty. A YAML plain scalar is typed again after expansion, so
// "port: ${PORT}" gives an integer. "$${" writes a literal "${".
func expandEnv(v *value, path string, lookup func(string) (string, bool)) error {
	switch v.kind {
	case kMap:
		for _, k := range v.keys {
			if err := expandEnv(v.m[k], joinPath(path, k), lookup); err != nil {
				return err
			}
		}
	case kList:
		for i, c := range v.list {
			if err := expandEnv(c, fmt.Sprintf("%s[%d]", path, i), lookup); err != nil {
				return err
			}
		}
	case kString:
		if !strings.Contains(v.s, "${") {
			return nil
		}
		s, err := expandString(v.s, lookup)
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		v.s = s
		if v.plain {
			n := yaml.Node{Kind: yaml.ScalarNode, Value: s}
			if err := resolveScalar(v, n.ShortTag()); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
	}
	return nil
}

func expandString(s string, lookup func(string) (string, bool)) (string, error) {
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			return b.String(), nil
		}
		if i > 0 && s[i-1] == '$' {
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			continue
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return "", errors.New(`unterminated "${" reference`)
		}
		name := s[i+2 : i+j]
		// ${NAME:-default}: the default when NAME is unset or empty, as
		// in a POSIX shell, so one file serves AWS and a local emulator.
		name, def, hasDef := strings.Cut(name, ":-")
		if !validEnvName(name) {
			return "", fmt.Errorf("invalid environment variable name %q", name)
		}
		val, ok := lookup(name)
		if hasDef && (!ok || val == "") {
			val, ok = def, true
		}
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", name)
		}
		b.WriteString(s[:i])
		b.WriteString(val)
		s = s[i+j+1:]
	}
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
