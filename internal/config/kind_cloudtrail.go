package config

import (
	"slices"
	"time"
)

// The CloudTrail family: audit-events-all, read through the LookupEvents API
// (types [audits_api]) or from CloudTrail files in S3 announced on SQS
// (types [audits_s3], internal/source/s3sqs). The same block switches
// between the two by its types, so each accepts the other's keys.

// The kinds of the family.
const (
	CloudTrailAPI ServiceKind = "cloudtrail api" // audit-events-all with audits_api
	CloudTrailS3  ServiceKind = "cloudtrail s3"  // audit-events-all with audits_s3
)

const defCloudTrail = "audit-events-all"

// CloudTrailSettings are the settings of audit-events-all. The walk
// (GapUntilNow, TimeSlot, Sources) is read for both types so that a block
// can switch between them; only audits_api uses it.
type CloudTrailSettings struct {
	GapUntilNow    time.Duration // gap_until_now_in_minutes, default 15 min: collect up to now − gap
	TimeSlot       time.Duration // time_slot_in_hours, default 1 h: the size of one LookupEvents window
	Sources        []string      // CloudTrail event sources, one lookup each; nil means all sources
	DropEventNames []string      // eventName values dropped and counted as "dropped"
}

var cloudTrailAPIKind = &kindSpec{
	kind: CloudTrailAPI, section: "C",
	services:    []string{"audit-events-all"},
	types:       []string{"audits_api"},
	typeAliases: map[string]string{"audit_apis": "audits_api"}, // the product documentation's other spelling
	parts:       []part{derivePart, ignoredQueuePart, startTimePart, cloudTrailPart},
	// "CB": one definition serves audits_api (C rows) and audits_s3 (B rows).
	definitions: map[string]definition{defCloudTrail: {"CB", map[string]any{
		"tag_base":                          "cloud.aws.cloudtrail.{event_type}.{account_id}.{region_id}.{format_version}",
		"event_type_default":                "events",
		"event_type_source_field_name":      "eventSource",
		"event_type_extracting_regex":       `^([a-z0-9-]+)\.amazonaws\.com$`,
		"enable_auto_event_type":            "false",
		"enable_auto_event_type_config_key": "auto_event_type",
		"start_time_regex":                  startTimeRegex,
		"gap_until_now_in_minutes":          15,
		"time_slot_in_hours":                1,
		"sources":                           "all_sources",
		"sqs_s3_processor":                  map[string]any{"class_name": "cloudtrail"},
		"sqs_queue_custom_name_key":         "sqs_queue_name",
		"sqs_queue_required_default_name":   false,
	}}},
}

var cloudTrailS3Kind = &kindSpec{
	kind: CloudTrailS3, section: "B", sqs: true,
	services: []string{"audit-events-all"},
	types:    []string{"audits_s3"},
	parts:    []part{derivePart, sqsPart, startTimePart, cloudTrailPart},
}

// ignoredQueuePart accepts the SQS keys of audits_s3 under audits_api and
// warns that the queue is not used.
var ignoredQueuePart = part{
	keys: sqsPart.keys,
	decode: func(b *block) {
		if _, ok := b.v.get(b.def.queueKey); ok {
			b.warn(b.def.queueKey, "ignored with types [audits_api]")
		}
	},
}

// cloudTrailPart reads the LookupEvents walk (C29, C30, C33, C35, P11, P12)
// and drop_event_names, which both types honour.
var cloudTrailPart = part{
	keys: keys("gap_until_now_in_minutes", "time_slot_in_hours", "sources", "drop_event_names"),
	decode: func(b *block) {
		s := CloudTrailSettings{GapUntilNow: b.def.gap, TimeSlot: b.def.slot}
		if gv, ok := b.get("gap_until_now_in_minutes"); ok {
			switch {
			case gv.kind != kInt:
				b.fail("C30", "gap_until_now_in_minutes")
			case gv.i < 0:
				b.fail("P11", "gap_until_now_in_minutes")
			default:
				s.GapUntilNow = time.Duration(gv.i) * time.Minute
			}
		}
		if tv, ok := b.get("time_slot_in_hours"); ok {
			switch {
			case tv.kind != kInt:
				b.fail("C35", "time_slot_in_hours")
			case tv.i <= 0:
				b.fail("P12", "time_slot_in_hours")
			default:
				s.TimeSlot = time.Duration(tv.i) * time.Hour
			}
		}
		s.Sources = b.def.sources
		if sv, ok := b.get("sources"); ok {
			if list, ok := stringList(sv, true); ok {
				s.Sources = list
			} else {
				b.fail("C29", "sources")
			}
		}
		if slices.Contains(s.Sources, "all_sources") {
			s.Sources = nil
		}
		if dv, ok := b.get("drop_event_names"); ok {
			if list, ok := stringList(dv, false); ok {
				s.DropEventNames = list
			} else {
				b.fail("C33", "drop_event_names")
			}
		}
		b.s.CloudTrailSettings = s
	},
}
