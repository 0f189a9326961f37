package config

import (
	"maps"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

func TestBuiltinDefinitionsPass(t *testing.T) {
	if errs := CheckDefinitions(); len(errs) != 0 {
		t.Fatalf("built-in definitions fail their own checks:\n%v", errs)
	}
	for name, section := range definitionSections {
		if _, ok := definitions[name]; !ok {
			t.Errorf("section for unknown definition %s (%s)", name, section)
		}
		b := builtinFor(name)
		if _, err := tag.Compile(b.tagBase); err != nil || len(tag.Missing(b.tagBase)) > 0 || b.defaultEventType == "" || b.startRe == nil && section != "A" {
			t.Errorf("%s: unusable builtin %+v", name, b)
		}
	}
	for name := range definitions {
		if _, ok := definitionSections[name]; !ok {
			t.Errorf("definition %s has no section", name)
		}
	}
	if len(builtinFor(defFlowLogs).patterns) != 2 || len(builtinFor(defUmbrella).patterns) != 3 {
		t.Error("built-in S3 key patterns do not compile")
	}
}

type mutation func(p map[string]any)

func del(key string) mutation { return func(p map[string]any) { delete(p, key) } }
func put(key string, v any) mutation {
	return func(p map[string]any) { p[key] = v }
}
func puts(kv ...any) mutation {
	return func(p map[string]any) {
		for i := 0; i+1 < len(kv); i += 2 {
			p[kv[i].(string)] = kv[i+1]
		}
	}
}

// definitionRowCases breaks a copy of one built-in definition per
// "Internal definitions" row. A nil mutation with a non-nil whole replaces
// the definition itself (rows about module_properties).
var definitionRowCases = []struct {
	row, def string
	mutate   mutation
	whole    any
}{
	{"A1", defEventBridge, nil, map[string]any{}},
	{"A2", defEventBridge, nil, map[string]any{"module_properties": "x"}},
	{"A3", defEventBridge, del("tag_base"), nil},
	{"A4", defEventBridge, put("tag_base", 5), nil},
	{"A5", defEventBridge, put("tag_base", "cloud.aws.cloudwatch.{event_type}"), nil},
	{"A6", defSecurityHub, put("tag_base", "cloud.{event_type}.{account_id}.{region_id}.{format_version}.{bucket}"), nil},
	{"A7", defEventBridge, del("event_type_default"), nil},
	{"A8", defEventBridge, put("event_type_default", 1), nil},
	{"A9", defEventBridge, del("event_type_source_field_name"), nil},
	{"A10", defEventBridge, put("event_type_source_field_name", true), nil},
	{"A11", defEventBridge, del("event_type_extracting_regex"), nil},
	{"A12", defEventBridge, put("event_type_extracting_regex", 1), nil},
	{"A13", defEventBridge, put("event_type_extracting_regex", "^aws\\.[a-z]+$"), nil}, // no capture group
	{"A14", defEventBridge, del("enable_auto_event_type"), nil},
	{"A15", defEventBridge, put("enable_auto_event_type", false), nil},
	{"A16", defEventBridge, del("enable_auto_event_type_config_key"), nil},
	{"A17", defEventBridge, put("enable_auto_event_type_config_key", 1), nil},
	{"A18", defEventBridge, put("event_type_processor_mapping", "x"), nil},
	{"A19", defEventBridge, put("event_type_processor_mapping", map[string]any{}), nil},
	{"A20", defEventBridge, put("event_type_processor_mapping", map[string]any{"p": map[string]any{"tagging": "t"}}), nil},
	{"A21", defEventBridge, put("event_type_processor_mapping", map[string]any{"p": map[string]any{"processor_class": 1, "tagging": "t"}}), nil},
	{"A22", defEventBridge, put("event_type_processor_mapping", map[string]any{"p": map[string]any{"processor_class": "c"}}), nil},
	{"A23", defEventBridge, put("event_type_processor_mapping", map[string]any{"p": map[string]any{"processor_class": "c", "tagging": 1}}), nil},
	{"A24", defEventBridge, del("sqs_queue_custom_name_key"), nil},
	{"A25", defEventBridge, put("sqs_queue_custom_name_key", 1), nil},
	{"A26", defEventBridge, put("sqs_queue_required_default_name", "yes"), nil},
	{"A27", defEventBridge, put("sqs_queue_required_default_name", true), nil},
	{"A28", defEventBridge, puts("sqs_queue_required_default_name", true, "sqs_queue_default_name", 1), nil},
	{"A29", defEventBridge, puts("sqs_queue_required_default_name", true, "sqs_queue_default_name", "devo-queue"), nil},
	{"B1", defUmbrella, nil, map[string]any{"module_properties": nil}},
	{"B2", defUmbrella, nil, map[string]any{"module_properties": []any{1}}},
	{"B3", defUmbrella, del("start_time_regex"), nil},
	{"B4", defUmbrella, put("start_time_regex", 1), nil},
	{"B5", defUmbrella, put("start_time_regex", "("), nil},
	{"B6", defFlowLogs, del("sqs_s3_processor"), nil},
	{"B7", defFlowLogs, put("sqs_s3_processor", "x"), nil},
	{"B8", defFlowLogs, put("sqs_s3_processor", map[string]any{"class_name": ""}), nil},
	{"B9", defCloudFront, put("sqs_s3_processor", map[string]any{"class_name": 1}), nil},
	{"B10", defUmbrella, del("sqs_queue_custom_name_key"), nil},
	{"B11", defUmbrella, put("sqs_queue_custom_name_key", 1), nil},
	{"B12", defUmbrella, put("sqs_queue_required_default_name", "x"), nil},
	{"B13", defUmbrella, put("sqs_queue_required_default_name", true), nil},
	{"B14", defCloudTrail, puts("sqs_queue_required_default_name", true, "sqs_queue_default_name", 1), nil},
	{"B15", defCloudTrail, puts("sqs_queue_required_default_name", true, "sqs_queue_default_name", "q"), nil},
	{"C1", defCloudTrail, nil, map[string]any{}},
	{"C2", defCloudTrail, nil, map[string]any{"module_properties": 1}},
	{"C3", defCloudTrail, del("tag_base"), nil},
	{"C4", defCloudTrail, put("tag_base", []any{}), nil},
	{"C5", defCloudTrail, put("tag_base", "cloud.aws.cloudtrail.{event_type}.{account_id}.{region_id}"), nil},
	{"C6", defGuardDuty, put("tag_base", "g.{event_type}.{account_id}.{region_id}.{format_version}.{x}"), nil},
	{"C7", defCloudTrail, del("event_type_default"), nil},
	{"C8", defCloudTrail, put("event_type_default", 1), nil},
	{"C9", defCloudTrail, del("enable_auto_event_type"), nil},
	{"C10", defCloudTrail, put("enable_auto_event_type", true), nil},
	{"C11", defCloudTrail, del("enable_auto_event_type_config_key"), nil},
	{"C12", defCloudTrail, put("enable_auto_event_type_config_key", 1), nil},
	{"C13", defCloudTrail, del("start_time_regex"), nil},
	{"C14", defGuardDuty, put("start_time_regex", 1), nil},
	{"C15", defCloudTrail, put("start_time_regex", "[z-a]"), nil},
	{"C16", defCloudTrail, del("gap_until_now_in_minutes"), nil},
	{"C17", defCloudTrail, put("gap_until_now_in_minutes", "15"), nil},
	{"C18", defCloudTrail, put("gap_until_now_in_minutes", -1), nil},
	{"C19", defCloudTrail, del("time_slot_in_hours"), nil},
	{"C20", defCloudTrail, put("time_slot_in_hours", 1.5), nil},
	{"C21", defCloudTrail, put("time_slot_in_hours", 0), nil},
	{"C22", defCloudTrail, put("sources", []any{}), nil},
	{"C23", defCloudTrail, put("sources", 5), nil},
	{"D2", defCustomLogs, nil, map[string]any{}},
	{"D3", defCustomLogs, nil, map[string]any{"module_properties": "x"}},
	{"D4", defCustomLogs, del("tag_base"), nil},
	{"D5", defCustomLogs, put("tag_base", 1), nil},
	{"D6", defCustomLogs, put("tag_base", "cloud.aws.cloudwatch.logs"), nil},
	{"D7", defCustomLogs, put("tag_base", "c.{event_type}.{account_id}.{region_id}.{format_version}.{stream}"), nil},
	{"D8", defCustomLogs, del("start_time_regex"), nil},
	{"D9", defCustomLogs, put("start_time_regex", 1), nil},
	{"D10", defCustomLogs, put("start_time_regex", "(?P<x"), nil},
	{"E1", defEC2, nil, map[string]any{"module_properties": map[string]any{}}},
	{"E2", defEC2, nil, map[string]any{"module_properties": "x"}},
	{"E3", defEC2, del("tag_base"), nil},
	{"E4", defMetricsAll, put("tag_base", 1), nil},
	{"E5", defEC2, del("metric_namespace"), nil},
	{"E6", defEC2, put("metric_namespace", "AWS/EC2"), nil},
}

func TestDefinitionCheckerCatchesEachRow(t *testing.T) {
	for _, tc := range definitionRowCases {
		t.Run(tc.row, func(t *testing.T) {
			def := tc.whole
			if tc.mutate != nil {
				props := maps.Clone(definitions[tc.def].(map[string]any)["module_properties"].(map[string]any))
				tc.mutate(props)
				def = map[string]any{"module_properties": props}
			}
			errs := checkDefinition(tc.def, def, definitionSections[tc.def])
			if len(errs) != 1 || errs[0].Row != tc.row {
				t.Fatalf("got %v (rows %v), want exactly %s", errs, errs.Rows(), tc.row)
			}
			want := catalogue[tc.row]
			if errs[0].Kind != want.Kind || errs[0].ID != want.ID {
				t.Errorf("%s: %s(%d), want %s(%d)", tc.row, errs[0].Kind, errs[0].ID, want.Kind, want.ID)
			}
		})
	}
	covered := map[string]bool{}
	for _, tc := range definitionRowCases {
		covered[tc.row] = true
	}
	for r, c := range catalogue {
		if c.scope == scopeDefinition && !covered[r] {
			t.Errorf("internal-definition row %s has no test case", r)
		}
	}
}

func TestDefinitionMessages(t *testing.T) {
	props := maps.Clone(definitions[defCloudTrail].(map[string]any)["module_properties"].(map[string]any))
	props["tag_base"] = "cloud.aws.cloudtrail"
	errs := checkDefinition(defCloudTrail, map[string]any{"module_properties": props}, "CB")
	want := `AwsModuleDefinitionError(5): module_properties_key_path}.tag_base" property must have {event_type}, {account_id}, {region_id} and {format_version} placeholders`
	if len(errs) != 1 || errs[0].Error() != want || errs[0].Path != "definitions.audit-events-all.module_properties.tag_base" {
		t.Errorf("got %v", errs)
	}
	errs = checkDefinition(defUmbrella, map[string]any{"module_properties": map[string]any{"tag_base": "sig.cisco.umbrella.{event_type}.{account_id}.{region_id}.{format_version}", "event_type_default": "unknown", "start_time_regex": "x", "sqs_queue_custom_name_key": "q"}}, "B")
	if len(errs) != 1 || errs[0].Error() != `AwsModuleDefinitionError(21): "definitions.cisco-umbrella.module_properties.sqs_s3_processor" mandatory property is missing or empty` {
		t.Errorf("got %v", errs)
	}
}
