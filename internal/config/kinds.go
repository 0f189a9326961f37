package config

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// ServiceKind names the puller that runs a service, e.g. "eventbridge".
// Each kind is one entry of the kinds registry below, declared with its
// settings, defaults and rows in its own kind_*.go file.
type ServiceKind string

// String returns the kind's name as logs and the validate summary print it.
func (k ServiceKind) String() string { return string(k) }

// SQS reports whether the kind reads an SQS queue (and so has SQSSettings).
func (k ServiceKind) SQS() bool {
	spec := kindSpecs[k]
	return spec != nil && spec.sqs
}

// Kinds returns every registered service kind, in registry order.
func Kinds() []ServiceKind {
	out := make([]ServiceKind, len(kinds))
	for i, spec := range kinds {
		out[i] = spec.kind
	}
	return out
}

// kindSpec is one service kind's entry in the registry: everything the
// decoder needs to read, default and validate a service block of that kind.
// Keys common to every kind (tag, types, regions, endpoints,
// request_period_in_seconds) are read by (*decoder).service; the rest belongs
// to the kind's parts.
type kindSpec struct {
	kind ServiceKind
	// section is the catalogue section (A–E) whose user rows report this
	// kind's mistakes: the same mistake has a row in several sections.
	section string
	// sqs: the kind reads an SQS queue.
	sqs bool
	// services are the predefined service keys this kind runs.
	services []string
	// custom: custom keys (any key that is not predefined) may run this
	// kind. The first custom kind of the registry is their default.
	custom bool
	// types are the values of a service's "types" that select or refine
	// this kind; typeAliases maps other spellings to them.
	types       []string
	typeAliases map[string]string
	// needsRate: a service of this kind makes the input's
	// requests_per_second mandatory (row D1).
	needsRate bool
	// parts are the settings blocks of the kind, decoded in this order.
	parts []part
	// definitions are the built-in definitions the kind owns (the product's
	// module_properties): its defaults, checked by the "Internal
	// definitions" rows of the catalogue.
	definitions map[string]definition
	// definitionFor picks the built-in definition of a decoded service;
	// nil means the one named after the service key.
	definitionFor func(s *Service) string
}

// definition is one built-in service definition and the catalogue section
// whose "Internal definitions" rows check it (see checkDefinition).
type definition struct {
	section string
	props   map[string]any // module_properties
}

// part is one block of settings of a kind: the keys it reads and the
// function that decodes them into the kind's typed settings, applying the
// defaults and reporting the catalogue rows of the kind's section.
type part struct {
	keys   func(def *builtin) []string
	decode func(b *block)
}

// keys is a part's key list that does not depend on the definition.
func keys(k ...string) func(*builtin) []string {
	return func(*builtin) []string { return k }
}

// kinds is the registry: one line per service kind. Its order is the order
// in which types are listed in messages (custom keys: logs, then metrics)
// and the first kind of a key shared by several is that key's default.
var kinds = []*kindSpec{
	eventBridgeKind,
	securityHubKind,
	cloudTrailAPIKind,
	cloudTrailS3Kind,
	s3LogsKind,
	umbrellaKind,
	logsKind,
	metricsKind,
	guardDutyKind,
}

// Indexes over the registry, filled once by init.
var (
	kindSpecs  map[ServiceKind]*kindSpec
	predefined map[string][]*kindSpec // service key → the kinds that run it, in registry order
	customs    []*kindSpec            // the kinds a custom key may run
	// definitions holds every built-in definition by name, as plain data
	// in the product's shape, and definitionSections the section that
	// checks each one.
	definitions        map[string]any
	definitionSections map[string]string
)

func init() {
	kindSpecs = map[ServiceKind]*kindSpec{}
	predefined = map[string][]*kindSpec{}
	definitions = map[string]any{}
	definitionSections = map[string]string{}
	for _, spec := range kinds {
		index(spec)
	}
}

// index adds spec to the indexes over the registry. It panics on a kind or
// definition registered twice and on a section without rows: coding
// mistakes that must not reach a user.
func index(spec *kindSpec) {
	if kindSpecs[spec.kind] != nil {
		panic("config: service kind " + string(spec.kind) + " registered twice")
	}
	if _, ok := sections[spec.section]; !ok {
		panic("config: service kind " + string(spec.kind) + " has no catalogue section " + spec.section)
	}
	kindSpecs[spec.kind] = spec
	for _, name := range spec.services {
		predefined[name] = append(predefined[name], spec)
	}
	if spec.custom {
		customs = append(customs, spec)
	}
	for name, def := range spec.definitions {
		if _, dup := definitions[name]; dup {
			panic("config: definition " + name + " registered twice")
		}
		definitions[name] = map[string]any{"module_properties": def.props}
		definitionSections[name] = def.section
	}
}

// PredefinedServices returns the predefined service keys, sorted.
func PredefinedServices() []string { return slices.Sorted(maps.Keys(predefined)) }

// allowedTypes lists the types a service accepts (spec config.md §8).
func allowedTypes(cands []*kindSpec) []string {
	var out []string
	for _, spec := range cands {
		for _, t := range spec.types {
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
	}
	return out
}

// sectionRows are the catalogue rows one section uses for the user's
// service settings. Where the same mistake has a row in several sections,
// the section of the service decides.
type sectionRows struct {
	svcMissing, svcNotMap, tagType               string
	queueMissing, queueNotString, queueNotScalar string
	autoType, startType, startFormat             string
}

var sections = map[string]sectionRows{
	"A": {"A32", "A33", "A34", "A35", "A36", "A37", "A38", "", ""},
	"B": {"B18", "B19", "B20", "B21", "B22", "B23", "B24", "B25", "B26"},
	"C": {"C26", "C27", "C28", "", "", "", "C34", "C31", "C32"},
	"D": {"D13", "D14", "D15", "", "", "", "", "D19", "D20"},
	"E": {"E9", "E10", "E11", "", "", "", "", "E15", "E16"},
}

// block is one service block being decoded: what a kind's parts read and
// where they report.
type block struct {
	d    *decoder
	s    *Service
	v    *value // the block, a mapping
	path string // inputs.aws.services.<name>
	in   *Input
	def  *builtin
	rows sectionRows
	spec *kindSpec
}

// get returns the value of key when it is present and not null.
func (b *block) get(key string) (*value, bool) {
	v, ok := b.v.get(key)
	if !ok || v.kind == kNull {
		return nil, false
	}
	return v, true
}

// fail reports catalogue row r at key, with the service's key path and the
// extra placeholder/value pairs.
func (b *block) fail(r, key string, args ...string) *Error {
	e := newError(r, b.path+"."+key, append([]string{"service_config_key_path", b.path}, args...)...)
	b.d.add(e)
	return e
}

// expect reports a value outside the catalogue's typed rows (P20).
func (b *block) expect(key, expected string) { b.d.expect(b.path+"."+key, expected) }

func (b *block) warn(key, format string, args ...any) { b.d.warn(b.path+"."+key, format, args...) }

// owns reports whether one of the kind's parts reads key, taking it over
// from the common decoder.
func (b *block) owns(key string) bool {
	for _, pt := range b.spec.parts {
		if slices.Contains(pt.keys(b.def), key) {
			return true
		}
	}
	return false
}

// commonKeys are read for every kind.
var commonKeys = []string{"tag", "types", "regions", "endpoints", "request_period_in_seconds"}

// service decodes one service block: the kind from the key and its types,
// then the common keys and the parts of the kind.
func (d *decoder) service(name string, v *value, in *Input) *Service {
	p := inputPath + ".services." + name
	s := &Service{Name: name, bad: map[string]bool{}}
	// The kinds that may run the key: a predefined key's, or the custom ones.
	cands, isPredefined := predefined[name]
	s.Custom = !isPredefined
	if s.Custom {
		if d.unknownService(name, v, p) {
			return nil
		}
		cands = customs
	}
	s.Kind = cands[0].kind
	if v.kind == kMap {
		s.Kind = d.kindFromTypes(s, cands, v, p)
	}
	spec := kindSpecs[s.Kind]
	rows := sections[spec.section]
	if v.kind == kNull {
		d.add(newError(rows.svcMissing, p, "service_config_key_path", p))
		return nil
	}
	if v.kind != kMap {
		d.add(newError(rows.svcNotMap, p, "service_config_key_path", p))
		return nil
	}

	defName := s.Name
	if spec.definitionFor != nil {
		defName = spec.definitionFor(s)
	}
	b := &block{d: d, s: s, v: v, path: p, in: in, def: builtinFor(defName), rows: rows, spec: spec}
	known := slices.Clone(commonKeys)
	for _, pt := range spec.parts {
		known = append(known, pt.keys(b.def)...)
	}
	d.unknown(v, p, known...)

	s.DefaultEventType = b.def.defaultEventType
	s.EventTypeField = b.def.field
	s.EventTypeRegex = b.def.re
	b.tag()
	for _, pt := range spec.parts {
		pt.decode(b)
	}
	if !b.owns("request_period_in_seconds") {
		s.RequestPeriod = 60 * time.Second
		if rv, ok := b.get("request_period_in_seconds"); ok {
			if rv.kind != kInt || rv.i < 1 {
				b.expect("request_period_in_seconds", "an integer of 1 or more")
			} else {
				s.RequestPeriod = seconds(int(rv.i))
			}
		}
	}
	b.regionsAndEndpoints()
	return s
}

// unknownService reports P22 for a key that is not predefined and is
// unlikely to be meant as a custom service: it declares no types, and
// either its name is near a predefined one or it has no log_group (so it
// is no CloudWatch Logs service either). The spec's rule "a custom key
// without types means [logs]" still holds for a block with a log_group.
func (d *decoder) unknownService(name string, v *value, p string) bool {
	if tv, ok := v.get("types"); ok && tv.kind != kNull {
		return false
	}
	suggestion, near := closest(name, PredefinedServices())
	if !near {
		if _, hasGroup := v.get("log_group"); hasGroup || v.kind != kMap {
			return false
		}
		suggestion, near = suggestService(name)
	}
	const custom = `a custom service declares "types: [logs]" with a log_group (CloudWatch Logs) or "types: [metrics]"`
	hint := "the predefined services are " + strings.Join(PredefinedServices(), ", ") + "; " + custom
	if near {
		hint = didYouMean(suggestion) + " (" + custom + ")"
	}
	d.add(newError("P22", p, "service_config_key_path", p, "name", name).withHint(hint))
	if near && v.kind == kMap {
		if _, ok := predefined[suggestion]; ok {
			// The block is meant as the suggested service: name its
			// misspelt keys too, so that one run shows every fix.
			d.nearMisses(v, p, keysOf(suggestion))
		}
	}
	return true
}

// keysOf returns every key the predefined service name reads, over all the
// kinds the name may run.
func keysOf(name string) []string {
	known := slices.Clone(commonKeys)
	for _, spec := range predefined[name] {
		defName := name
		if spec.definitionFor != nil {
			defName = spec.definitionFor(&Service{Name: name, Kind: spec.kind})
		}
		if _, ok := definitions[defName]; !ok {
			continue
		}
		def := builtinFor(defName)
		for _, pt := range spec.parts {
			known = append(known, pt.keys(def)...)
		}
	}
	return known
}

// nearMisses reports P21 for each key of m close to, but not one of, known.
// Unlike unknown it says nothing of other keys: m is already refused.
func (d *decoder) nearMisses(m *value, path string, known []string) {
	for _, k := range m.keys {
		if slices.Contains(known, k) {
			continue
		}
		if near, ok := closest(k, known); ok {
			kp := joinPath(path, k)
			d.add(newError("P21", kp, "key_path", kp).withHint(didYouMean(near)))
		}
	}
}

// tag reads the tag override and sets the effective template.
func (b *block) tag() {
	s := b.s
	if tv, ok := b.get("tag"); ok {
		if tv.kind != kString {
			b.fail(b.rows.tagType, "tag")
			s.bad["tag"] = true
		} else if len(tag.Unknown(tv.s)) > 0 {
			b.fail("P18", "tag")
			s.bad["tag"] = true
		} else {
			s.Tag = tv.s
		}
	}
	s.TagTemplate = templateFor(s.Tag, b.def.tagBase, b.in.Environment)
}

// regionsAndEndpoints applies the service's overrides over the input's.
func (b *block) regionsAndEndpoints() {
	s, in := b.s, b.in
	s.Regions = in.Regions
	if _, ok := b.v.get("regions"); ok {
		if r := b.d.regions(b.v, b.path, false); r != nil {
			s.Regions = r
		}
	}
	own := b.d.endpoints(b.v, b.path)
	s.Endpoints = map[string]string{}
	for _, api := range APIs {
		switch {
		case own[api] != "":
			s.Endpoints[api] = own[api]
		case in.Endpoints[api] != "":
			s.Endpoints[api] = in.Endpoints[api]
		case in.EndpointURL != "":
			s.Endpoints[api] = in.EndpointURL
		}
	}
}

// templateFor is the effective tag template: the override as written, or
// the built-in base with the environment level when one is configured.
func templateFor(override, base, environment string) string {
	if override != "" {
		return override
	}
	if environment != "" && !strings.Contains(base, "{environment}") {
		return base + ".{environment}"
	}
	return base
}

// kindFromTypes reads types, fills s.Types and returns the service's kind
// among cands, the kinds that may run its key.
func (d *decoder) kindFromTypes(s *Service, cands []*kindSpec, v *value, p string) ServiceKind {
	var given []string
	tv, present := v.get("types")
	if present && tv.kind != kNull {
		switch tv.kind {
		case kString:
			given = []string{tv.s}
		case kList:
			for _, e := range tv.list {
				given = append(given, e.s)
			}
		default:
			d.expect(p+".types", "a list of types")
			present = false
		}
	} else {
		present = false
	}
	allowed := allowedTypes(cands)
	if len(allowed) == 0 {
		if present {
			d.warn(p+".types", "this service takes no types, ignored")
		}
		return cands[0].kind
	}
	var types []string
	for _, t := range given {
		for _, spec := range cands {
			if canon, ok := spec.typeAliases[t]; ok {
				t = canon
			}
		}
		if !slices.Contains(allowed, t) {
			d.add(newError("P7", p+".types", "service_config_key_path", p, "type", t, "allowed", quoteList(allowed)))
			continue
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	if len(cands) == 1 {
		// The types refine the one kind (non-cloudwatch-logs: flowlogs
		// and/or cloudfrontlogs); no valid type means all of them.
		if len(types) == 0 {
			types = slices.Clone(allowed)
		}
		s.Types = types
		return cands[0].kind
	}
	// Several kinds share the key: one type picks the kind.
	switch {
	case s.Custom:
		if len(types) > 1 {
			// A custom key runs one puller: logs or metrics, not both.
			d.add(newError("P7", p+".types", "service_config_key_path", p, "type", types[1], "allowed", quoteList(allowed)+" (one of them)"))
			types = types[:1]
		}
		if len(types) == 0 {
			types = []string{cands[0].types[0]}
		}
	case len(types) != 1 && (len(types) != 0 || len(given) == 0):
		// P8 speaks of audit-events-all, the one predefined key that
		// several kinds share.
		d.add(newError("P8", p+".types", "service_config_key_path", p))
	}
	s.Types = types
	if len(types) == 1 {
		for _, spec := range cands {
			if slices.Contains(spec.types, types[0]) {
				return spec.kind
			}
		}
	}
	return cands[0].kind
}
