package config

import (
	"regexp"
	"slices"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// The S3+SQS log family: files written to S3 and announced on an SQS
// standard queue, read by internal/source/s3sqs. Each object's key gives its
// event type (tags.md §4.3).

// The kinds of the family.
const (
	S3Logs   ServiceKind = "s3 logs"  // non-cloudwatch-logs: VPC Flow Logs / CloudFront via S3+SQS
	Umbrella ServiceKind = "umbrella" // cisco-umbrella via S3+SQS
)

// non-cloudwatch-logs has one definition per type because VPC and
// CloudFront files go to different tables.
const (
	defFlowLogs   = "non-cloudwatch-logs.flowlogs"
	defCloudFront = "non-cloudwatch-logs.cloudfrontlogs"
	defUmbrella   = "cisco-umbrella"
)

// S3Settings are the settings of the S3+SQS log kinds.
type S3Settings struct {
	// TypeTagTemplates holds, for non-cloudwatch-logs, the template of each
	// type ("flowlogs" → cloud.aws.vpc…, "cloudfrontlogs" → cloud.aws.cloudfront…):
	// a file's classification picks the table. Nil for other services.
	TypeTagTemplates  map[string]string
	EventTypePatterns []Pattern // S3 key → event type, in file order
}

// s3LogPatterns is the built-in key map of non-cloudwatch-logs; both types
// share it.
var s3LogPatterns = []any{[]any{"flowlogs", `(^|/)vpcflowlogs/`}, []any{"logs", `(^|/)[A-Z0-9]+\.\d{4}-\d{2}-\d{2}-\d{2}\.[A-Za-z0-9]+\.gz$`}}

var s3LogsKind = &kindSpec{
	kind: S3Logs, section: "B", sqs: true,
	services: []string{"non-cloudwatch-logs"},
	types:    []string{"flowlogs", "cloudfrontlogs"},
	parts:    []part{derivePart, sqsPart, startTimePart, s3LogsPart},
	definitionFor: func(s *Service) string {
		if slices.Contains(s.Types, "flowlogs") || len(s.Types) == 0 {
			return defFlowLogs
		}
		return defCloudFront
	},
	definitions: map[string]definition{
		defFlowLogs: {"B", map[string]any{
			"tag_base":                          "cloud.aws.vpc.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default":                "unknown",
			"enable_auto_event_type":            "false",
			"enable_auto_event_type_config_key": "auto_event_type",
			"start_time_regex":                  startTimeRegex,
			"sqs_s3_processor":                  map[string]any{"class_name": "vpcflow"},
			"sqs_queue_custom_name_key":         "sqs_queue_name",
			"sqs_queue_required_default_name":   false,
			"event_type_file_regex_patterns":    s3LogPatterns,
		}},
		defCloudFront: {"B", map[string]any{
			"tag_base":                          "cloud.aws.cloudfront.{event_type}.{account_id}.{region_id}.{format_version}",
			"event_type_default":                "unknown",
			"enable_auto_event_type":            "false",
			"enable_auto_event_type_config_key": "auto_event_type",
			"start_time_regex":                  startTimeRegex,
			"sqs_s3_processor":                  map[string]any{"class_name": "cloudfront"},
			"sqs_queue_custom_name_key":         "sqs_queue_name",
			"sqs_queue_required_default_name":   false,
			"event_type_file_regex_patterns":    s3LogPatterns,
		}},
	},
}

var umbrellaKind = &kindSpec{
	kind: Umbrella, section: "B", sqs: true,
	services: []string{"cisco-umbrella"},
	// The event type always comes from the S3 key.
	parts: []part{fixedAutoPart(true), sqsPart, startTimePart, patternsPart},
	definitions: map[string]definition{defUmbrella: {"B", map[string]any{
		"tag_base":                        "sig.cisco.umbrella.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default":              "unknown",
		"start_time_regex":                startTimeRegex,
		"sqs_s3_processor":                map[string]any{"class_name": "umbrella"},
		"sqs_queue_custom_name_key":       "sqs_queue_name",
		"sqs_queue_required_default_name": false,
		"event_type_file_regex_patterns":  []any{[]any{"dns", `(^|/)dnslogs/`}, []any{"ip", `(^|/)iplogs/`}, []any{"proxy", `(^|/)proxylogs/`}},
	}}},
}

// s3LogsPart gives each type of non-cloudwatch-logs its tag template (a
// file's classification picks the table) and reads the key patterns.
var s3LogsPart = part{
	keys: patternsPart.keys,
	decode: func(b *block) {
		s := b.s
		s.TypeTagTemplates = map[string]string{}
		for _, t := range s.Types {
			s.TypeTagTemplates[t] = templateFor(s.Tag, builtinFor("non-cloudwatch-logs."+t).tagBase, b.in.Environment)
		}
		if len(s.Types) > 0 {
			s.TagTemplate = s.TypeTagTemplates[s.Types[0]]
		}
		s.EventTypePatterns = builtinFor(defFlowLogs).patterns
		readPatterns(b)
	},
}

// patternsPart reads event_type_file_regex_patterns over the definition's
// built-in map.
var patternsPart = part{
	keys: keys("event_type_file_regex_patterns"),
	decode: func(b *block) {
		b.s.EventTypePatterns = b.def.patterns
		readPatterns(b)
	},
}

// readPatterns reads event_type_file_regex_patterns; a user map replaces
// the built-in one, in file order.
func readPatterns(b *block) {
	const key = "event_type_file_regex_patterns"
	pv, ok := b.get(key)
	if !ok {
		return
	}
	if pv.kind != kMap || len(pv.keys) == 0 {
		b.expect(key, "a mapping of event type to regular expression")
		return
	}
	var out []Pattern
	for _, et := range pv.keys {
		ev := pv.m[et]
		re, err := regexp.Compile(ev.s)
		if ev.kind != kString || err != nil {
			b.fail("P9", key+"."+et, "event_type", et)
			continue
		}
		if tag.Sanitize(et, "") != et {
			b.expect(key+"."+et, "keyed by an event type made of a-z, 0-9, '-' and '_'")
			continue
		}
		out = append(out, Pattern{EventType: et, Re: re})
	}
	b.s.EventTypePatterns = out
}
