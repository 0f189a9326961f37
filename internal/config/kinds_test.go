package config

import (
	"bytes"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRegistryIsConsistent holds every registered kind to what the decoder
// assumes of it, so that a new entry cannot make the decoder report a row
// its section does not have (the old decoder panicked on auto_event_type
// under metrics for that reason).
func TestRegistryIsConsistent(t *testing.T) {
	if got := Kinds(); len(got) != len(kinds) || len(kindSpecs) != len(kinds) {
		t.Fatalf("Kinds() = %v for %d registry entries", got, len(kinds))
	}
	for _, spec := range kinds {
		k := spec.kind
		if k == "" || k.String() != string(k) {
			t.Errorf("kind %q: bad name", k)
		}
		if len(spec.services) == 0 && !spec.custom {
			t.Errorf("%s: no service key runs it", k)
		}
		if k.SQS() != spec.sqs {
			t.Errorf("%s: SQS() = %v, registry says %v", k, k.SQS(), spec.sqs)
		}
		rows := sections[spec.section]
		// One service per key that runs the kind, as the decoder makes it.
		var svcs []*Service
		for _, name := range spec.services {
			svcs = append(svcs, &Service{Name: name, Kind: k, Types: spec.types})
		}
		if spec.custom {
			svcs = append(svcs, &Service{Name: "custom_1", Custom: true, Kind: k, Types: spec.types})
		}
		for _, s := range svcs {
			name := s.Name
			if spec.definitionFor != nil {
				name = spec.definitionFor(s)
			}
			if _, ok := definitions[name]; !ok {
				t.Errorf("%s: service %s uses definition %q, which is not registered", k, s.Name, name)
				continue
			}
			def := builtinFor(name)
			var known []string
			for _, pt := range spec.parts {
				known = append(known, pt.keys(def)...)
			}
			if slices.Contains(known, "start_time") && (rows.startType == "" || rows.startFormat == "") {
				t.Errorf("%s: reads start_time but section %s has no rows for it", k, spec.section)
			}
			if slices.Contains(known, def.autoKey) && rows.autoType == "" {
				t.Errorf("%s: reads %s but section %s has no row for it", k, def.autoKey, spec.section)
			}
			if spec.sqs && (!slices.Contains(known, def.queueKey) || rows.queueMissing == "" || rows.queueNotString == "" || rows.queueNotScalar == "") {
				t.Errorf("%s: reads SQS but not the queue key %s with section %s's rows", k, def.queueKey, spec.section)
			}
		}
	}
	for name, specs := range predefined {
		for _, spec := range specs[1:] {
			if len(spec.types) == 0 {
				t.Errorf("%s: kind %s shares the key but no type selects it", name, spec.kind)
			}
		}
	}
	if len(customs) == 0 || len(customs[0].types) == 0 {
		t.Error("custom keys have no default kind with a type")
	}
}

// withKind registers spec for the duration of the test.
func withKind(t *testing.T, spec *kindSpec) {
	t.Helper()
	saved := struct {
		kinds       []*kindSpec
		specs       map[ServiceKind]*kindSpec
		predefined  map[string][]*kindSpec
		customs     []*kindSpec
		definitions map[string]any
		sections    map[string]string
	}{kinds, maps.Clone(kindSpecs), maps.Clone(predefined), slices.Clone(customs), maps.Clone(definitions), maps.Clone(definitionSections)}
	kinds = append(slices.Clone(kinds), spec)
	index(spec)
	t.Cleanup(func() {
		kinds, kindSpecs, predefined, customs = saved.kinds, saved.specs, saved.predefined, saved.customs
		definitions, definitionSections = saved.definitions, saved.sections
		builtinsMu.Lock()
		for name := range spec.definitions {
			delete(builtins, name)
		}
		builtinsMu.Unlock()
	})
}

// TestNewKindIsOneRegistryEntry adds a kind the way docs/architecture.md
// says, one entry with its keys, definition and part, and shows that the
// decoder, Validate and the summary need nothing else: its keys are known,
// its defaults apply, its mistakes are reported with its section's rows and
// its definition is checked.
func TestNewKindIsOneRegistryEntry(t *testing.T) {
	const inspector ServiceKind = "inspector"
	severity := map[string]int{} // the kind's own typed setting, by service
	withKind(t, &kindSpec{
		kind: inspector, section: "C",
		services: []string{"aws-inspector"},
		parts: []part{startTimePart, {
			keys: keys("min_severity"),
			decode: func(b *block) {
				severity[b.s.Name] = b.d.integer(b.v, "min_severity", b.path, 4, 1, 10)
			},
		}},
		definitions: map[string]definition{"aws-inspector": {"G", map[string]any{
			"tag_base":           "cloud.aws.inspector.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default": "findings",
			"start_time_regex":   startTimeRegex,
		}}},
	})

	if !slices.Contains(PredefinedServices(), "aws-inspector") || !slices.Contains(Kinds(), inspector) || inspector.SQS() {
		t.Fatalf("registry: services %v, kinds %v", PredefinedServices(), Kinds())
	}
	c, errs := load(t, "config.yaml", withServices(`{aws-inspector: {min_severity: 7, start_time: "2024-05-01T00:00:00Z", request_period_in_seconds: 300}}`))
	if errs != nil || len(c.Warnings) != 0 {
		t.Fatalf("errors %v, warnings %v", errs, c.Warnings)
	}
	s := c.Inputs[0].Services[0]
	if s.Kind != inspector || s.Custom || s.TagTemplate != "cloud.aws.inspector.{event_type}.{account_id}.{region_id}.{format_version}" ||
		s.DefaultEventType != "findings" || s.StartTime != "2024-05-01T00:00:00Z" || s.RequestPeriod != 5*time.Minute ||
		!slices.Equal(s.Regions, []string{"eu-west-1"}) || severity["aws-inspector"] != 7 {
		t.Errorf("decoded %+v, severity %d", s, severity["aws-inspector"])
	}
	var sum bytes.Buffer
	c.Summary(&sum)
	if !strings.Contains(sum.String(), "service aws-inspector (predefined, inspector) regions [eu-west-1]") {
		t.Errorf("summary:\n%s", sum.String())
	}

	c, errs = load(t, "config.yaml", withServices(`{aws-inspector: {min_severity: 70, tag: 5, start_time: "yesterday", colour: red}}`))
	got := map[string]string{}
	for _, e := range errs {
		got[e.Path] = e.Row
	}
	want := map[string]string{svc + "aws-inspector.min_severity": "P20", svc + "aws-inspector.tag": "C28", svc + "aws-inspector.start_time": "C32"}
	if !maps.Equal(got, want) {
		t.Errorf("problems %v, want %v", got, want)
	}
	if !slices.Equal(c.Warnings, []string{svc + "aws-inspector.colour: unknown key, ignored"}) {
		t.Errorf("warnings %v", c.Warnings)
	}

	// Its definition is checked like the built-in ones.
	definitions["aws-inspector"].(map[string]any)["module_properties"].(map[string]any)["tag_base"] = "cloud.aws.inspector"
	if rows := CheckDefinitions().Rows(); !slices.Equal(rows, []string{"C5"}) {
		t.Errorf("a broken definition of the new kind gave %v, want [C5]", rows)
	}
}
