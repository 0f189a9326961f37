package config

// Logs runs the CloudWatch Logs puller: custom keys (types [logs], the
// default of a key that is not predefined).
const Logs ServiceKind = "logs"

const defCustomLogs = "custom.logs"

// LogsSettings are the settings of a CloudWatch Logs service.
type LogsSettings struct {
	LogGroup                   string // a name, a prefix ending in "*", or "/" for all groups
	UseFirstOptimizedRetrieval bool   // first run: read only the streams active since start_time
}

var logsKind = &kindSpec{
	kind: Logs, section: "D",
	custom:        true,
	types:         []string{"logs"},
	needsRate:     true,
	parts:         []part{startTimePart, logsPart},
	definitionFor: func(*Service) string { return defCustomLogs },
	definitions: map[string]definition{defCustomLogs: {"D", map[string]any{
		"tag_base":           "cloud.aws.cloudwatch.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default": "logs",
		"start_time_regex":   startTimeRegex,
	}}},
}

// logsPart reads the log group (D17, D18) and the first-run strategy (D16).
var logsPart = part{
	keys: keys("log_group", "use_first_optimized_retrieval"),
	decode: func(b *block) {
		var s LogsSettings
		lv, ok := b.v.get("log_group")
		switch {
		case !ok || lv.empty():
			b.fail("D17", "log_group")
		case lv.kind != kString:
			b.fail("D18", "log_group")
		default:
			s.LogGroup = lv.s
		}
		if uv, ok := b.get("use_first_optimized_retrieval"); ok {
			if uv.kind != kBool {
				b.fail("D16", "use_first_optimized_retrieval")
			} else {
				s.UseFirstOptimizedRetrieval = uv.b
			}
		}
		b.s.LogsSettings = s
	},
}
