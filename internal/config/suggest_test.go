package config

import "testing"

func TestClosest(t *testing.T) {
	keys := []string{"sqs_queue_name", "auto_event_type", "tag", "types", "regions", "start_time"}
	for in, want := range map[string]string{
		"sqs_queue_nmae": "sqs_queue_name", // swap
		"auto_event_typ": "auto_event_type",
		"SQS-Queue-Name": "sqs_queue_name", // case and separators
		"region":         "regions",
		"tga":            "tag",
		"start_tme":      "start_time",
		"collector_name": "",
		"owner":          "",
		"tags_x":         "",
	} {
		got, ok := closest(in, keys)
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("closest(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSuggestService(t *testing.T) {
	for in, want := range map[string]string{
		"service-event-all":   "service-events-all",
		"metric-all":          "metrics-all",
		"guardduty":           "aws-guardduty",
		"my-cloudtrail":       "audit-events-all",
		"security_hub_events": "sqs-cloudwatch-consumer",
		"orders":              "",
	} {
		got, ok := suggestService(in)
		if !ok {
			got = ""
		}
		if got != want {
			t.Errorf("suggestService(%q) = %q, want %q", in, got, want)
		}
	}
}
