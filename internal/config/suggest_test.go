package config

import (
	"strings"
	"testing"
)

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

// An unknown service near a predefined one is read as that service for its
// keys: a misspelt key inside it is named in the same run, not after the
// service name is fixed.
func TestUnknownServiceNamesItsMisspeltKeys(t *testing.T) {
	_, errs := load(t, "config.yaml", withServices("{service-event-all: {sqs_queue_nmae: q, regions: [eu-west-1], other_key: 1}}"))
	const svc = "inputs.aws.services.service-event-all"
	var rows []string
	for _, e := range errs {
		rows = append(rows, e.Row+" "+e.Path+" "+e.Hint)
	}
	want := []string{
		"P22 " + svc,
		"P21 " + svc + ".sqs_queue_nmae " + didYouMean("sqs_queue_name"),
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(rows), len(want), strings.Join(rows, "\n"))
	}
	if !strings.HasPrefix(rows[0], want[0]+" ") || rows[1] != want[1] {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
	}
}
