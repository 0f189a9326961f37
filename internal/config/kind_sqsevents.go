package config

// The EventBridge family: AWS events that an EventBridge rule sends to an
// SQS FIFO queue, read by internal/source/sqsevents.

// The kinds of the family.
const (
	EventBridge ServiceKind = "eventbridge" // service-events-all: EventBridge → SQS FIFO
	SecurityHub ServiceKind = "securityhub" // sqs-cloudwatch-consumer: Security Hub findings
)

const (
	defEventBridge = "service-events-all"
	defSecurityHub = "sqs-cloudwatch-consumer"
)

var eventBridgeKind = &kindSpec{
	kind: EventBridge, section: "A", sqs: true,
	services: []string{"service-events-all"},
	parts:    []part{derivePart, sqsPart},
	definitions: map[string]definition{defEventBridge: {"A", map[string]any{
		"tag_base":                          "cloud.aws.cloudwatch.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default":                "events",
		"event_type_source_field_name":      "source",
		"event_type_extracting_regex":       `^aws\.([a-z0-9-]+)$`,
		"enable_auto_event_type":            "false",
		"enable_auto_event_type_config_key": "auto_event_type",
		"sqs_queue_custom_name_key":         "sqs_queue_name",
		"sqs_queue_required_default_name":   false,
	}}},
}

var securityHubKind = &kindSpec{
	kind: SecurityHub, section: "A", sqs: true,
	services: []string{"sqs-cloudwatch-consumer"},
	// Findings always go to the findings table, whatever auto_event_type says.
	parts: []part{fixedAutoPart(false), sqsPart},
	// The derivation fields exist because section A requires them; the
	// service never turns auto_event_type on.
	definitions: map[string]definition{defSecurityHub: {"A", map[string]any{
		"tag_base":                          "cloud.aws.securityhub.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default":                "findings",
		"event_type_source_field_name":      "source",
		"event_type_extracting_regex":       `^aws\.(securityhub)$`,
		"enable_auto_event_type":            "false",
		"enable_auto_event_type_config_key": "auto_event_type",
		"sqs_queue_custom_name_key":         "sqs_queue_name",
		"sqs_queue_required_default_name":   false,
	}}},
}
