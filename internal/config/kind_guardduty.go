package config

// GuardDuty runs aws-guardduty: findings through the GuardDuty API.
const GuardDuty ServiceKind = "guardduty"

const defGuardDuty = "aws-guardduty"

var guardDutyKind = &kindSpec{
	kind: GuardDuty, section: "C",
	services: []string{"aws-guardduty"},
	parts:    []part{startTimePart},
	// "G": GuardDuty has no section of its own; its definition is checked
	// with the C rows it shares (tag base, default event type, start_time
	// regex).
	definitions: map[string]definition{defGuardDuty: {"G", map[string]any{
		"tag_base":           "cloud.aws.guardduty.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default": "findings",
		"start_time_regex":   startTimeRegex,
	}}},
}
