package stats

import (
	"log/slog"
	"testing"
	"time"
)

func TestPullingID(t *testing.T) {
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Unix(1655983326, 290848000), "1655983326.290848"},
		// Sub-microsecond digits are cut, never rounded up into the next
		// microsecond.
		{time.Unix(1655983326, 290848999), "1655983326.290848"},
		{time.Unix(1655983326, 0), "1655983326.000000"},
		{time.Unix(1655983326, 5000), "1655983326.000005"},
		// The zone does not change the instant.
		{time.Unix(1655983326, 290848000).In(time.FixedZone("X", 3*3600)), "1655983326.290848"},
	}
	for _, tt := range tests {
		if got := PullingID(tt.t); got != tt.want {
			t.Errorf("PullingID(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

// The golden strings are the product's documented log lines.
func TestCycleLinesGolden(t *testing.T) {
	ms := func(f float64) time.Duration { return time.Duration(f * float64(time.Millisecond)) }
	tests := []struct {
		name, got, want string
	}{
		{"starting collection", RenderStartingCollection(60 * time.Second),
			"Starting data collection every 60 seconds"},
		{"starting queue",
			RenderStarting("dc-aws-cloudwatch-test-1.fifo", "queue", time.Date(2022, 9, 23, 7, 44, 54, 589769000, time.UTC)),
			`Starting a new pulling from "dc-aws-cloudwatch-test-1.fifo" queue at "2022-09-23T07:44:54.589769+00:00"`},
		{"starting source, non-UTC input",
			RenderStarting("['all_sources']", "source", time.Date(2022, 9, 23, 10, 56, 22, 366820000, time.FixedZone("CEST", 2*3600))),
			`Starting a new pulling from "['all_sources']" source at "2022-09-23T08:56:22.366820+00:00"`},
		{"starting namespaces",
			RenderStarting("['AWS/EC2', 'AWS/EC2Spot']", "namespaces", time.Date(2022, 9, 23, 14, 49, 36, 266007000, time.UTC)),
			`Starting a new pulling from "['AWS/EC2', 'AWS/EC2Spot']" namespaces at "2022-09-23T14:49:36.266007+00:00"`},
		{"starting log group",
			RenderStarting("/aws/events/devo-cloudwatch-test-1", "", time.Date(2022, 9, 23, 15, 8, 18, 132865000, time.UTC)),
			`Starting a new pulling from "/aws/events/devo-cloudwatch-test-1" at "2022-09-23T15:08:18.132865+00:00"`},
		{"events received",
			RenderEventsReceived(CycleCounts{Responses: 198, Received: 1973, Generated: 1973,
				EventTypes: []string{"ssm", "s3", "sts", "backup", "kms", "tag", "config", "logs", "cloudtrail"}}, ms(198*335.170)),
			`Received 198 response(s), received 1973 message(s), generated 1973 message(s), detected_event_types: ["ssm", "s3", "sts", "backup", "kms", "tag", "config", "logs", "cloudtrail"], avg_time_per_source_message: 335.170 ms`},
		{"events received, nothing",
			RenderEventsReceived(CycleCounts{Responses: 1}, ms(437.862)),
			`Received 1 response(s), received 0 message(s), generated 0 message(s), detected_event_types: [], avg_time_per_source_message: 437.862 ms`},
		{"s3 received",
			RenderS3Received(CycleCounts{Responses: 2}, ms(339.422)),
			"Received 2 response(s), messages (fromSQS/generated): 0/0, discarded files: 0, avg_time_per_source_message: 169.711 ms"},
		{"s3 received, counts in order",
			RenderS3Received(CycleCounts{Responses: 4, Received: 7, Generated: 5300, DiscardedFiles: 2}, ms(400)),
			"Received 4 response(s), messages (fromSQS/generated): 7/5300, discarded files: 2, avg_time_per_source_message: 100.000 ms"},
		// SQS services average over the messages handled: an idle queue's
		// 20 s long polls are not a per-message time.
		{"sqs events idle, by message",
			RenderEventsReceived(CycleCounts{Responses: 3, ByMessage: true}, 60*time.Second),
			`Received 3 response(s), received 0 message(s), generated 0 message(s), detected_event_types: [], avg_time_per_source_message: 0.000 ms`},
		{"s3 by message",
			RenderS3Received(CycleCounts{Responses: 4, Received: 2, Generated: 30, ByMessage: true, Handled: 2, HandleTime: ms(50)}, 60*time.Second),
			"Received 4 response(s), messages (fromSQS/generated): 2/30, discarded files: 0, avg_time_per_source_message: 25.000 ms"},
		{"audit received",
			RenderAuditReceived(CycleCounts{Responses: 4, Received: 186, Dropped: 8, OtherRegion: 0, Duplicated: 1, Generated: 177},
				"cloud.aws.cloudtrail.{event_type}.123456789012.us-west-8.1.prod-1", ms(4*678.952)),
			`Received 4 response(s), messages (total/dropped/other_region/duplicated/generated): 186/8/0/1/177, tag template used: "cloud.aws.cloudtrail.{event_type}.123456789012.us-west-8.1.prod-1", avg_time_per_source_message: 678.952 ms`},
		{"audit received, every field distinct",
			RenderAuditReceived(CycleCounts{Responses: 1, Received: 10, Dropped: 2, OtherRegion: 3, Duplicated: 4, Generated: 1}, "t", ms(1)),
			`Received 1 response(s), messages (total/dropped/other_region/duplicated/generated): 10/2/3/4/1, tag template used: "t", avg_time_per_source_message: 1.000 ms`},
		{"metrics received",
			RenderMetricsReceived(CycleCounts{Responses: 3, Generated: 17}, "cloud.aws.cloudwatch.metrics.936082584952.us-east-2.1", ms(3*393.845)),
			`Received 3 response(s), generated 17 message(s), tag used: "cloud.aws.cloudwatch.metrics.936082584952.us-east-2.1", avg_time_per_source_message: 393.845 ms`},
		{"guardduty totals",
			RenderTotals(CycleCounts{Received: 584, Generated: 584}),
			"Total event received: 584, and sent: 584"},
		{"statistics",
			RenderStatistics("1655983326.290848", CycleCounts{Responses: 2, Received: 52, Generated: 52},
				time.Duration(52/92.99414315733*float64(time.Second))),
			"Statistics for this pull cycle (@devo_pulling_id=1655983326.290848): Number of requests performed: 2; Number of events received: 52; Number of duplicated events filtered out: 0; Number of events generated and sent: 52 (from 52 unflattened events); Average of events per second: 92.99414315733."},
		{"statistics, whole rate",
			RenderStatistics("1.000000", CycleCounts{Responses: 1, Received: 10, Duplicated: 3, Generated: 7}, time.Second),
			"Statistics for this pull cycle (@devo_pulling_id=1.000000): Number of requests performed: 1; Number of events received: 10; Number of duplicated events filtered out: 3; Number of events generated and sent: 7 (from 10 unflattened events); Average of events per second: 7.0."},
		{"offset", RenderOffset(-36266007 * time.Microsecond),
			"Applied an offset to wait, retrieval_offset: -36.266007 seconds"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, tt.got, tt.want)
		}
	}
}

func TestRenderCompleted(t *testing.T) {
	line, wait := RenderCompleted(438*time.Millisecond, time.Minute)
	if want := "Data collection completed. Elapsed time: 0.438 seconds. Waiting for 59.562 second(s) until the next one"; line != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	if wait != 59562*time.Millisecond {
		t.Errorf("wait = %v, want 59.562s", wait)
	}
	line, wait = RenderCompleted(931842*time.Millisecond, time.Minute)
	if want := "Elapsed time: 931.842 seconds. Last retrieval took too much time, no wait will be applied in this loop"; line != want {
		t.Errorf("got  %s\nwant %s", line, want)
	}
	if wait != 0 {
		t.Errorf("overrun wait = %v, want 0", wait)
	}
}

func TestCycleCountsAndLogs(t *testing.T) {
	var buf logBuffer
	reg := NewRegistry()
	u := reg.Unit("aws", "service-events-all", "us-east-2")
	start := time.Date(2022, 9, 23, 7, 55, 55, 546142000, time.UTC)
	c := NewCycle(u.Logger(buf.logger()), u, start)
	now := start
	c.now = func() time.Time { return now }

	if c.ID != "1663919755.546142" {
		t.Fatalf("ID = %q", c.ID)
	}
	c.LogStarting("dc-aws-cloudwatch-test-1.fifo", "queue")
	c.AddResponses(2)
	c.AddReceived(5)
	c.AddGenerated(4)
	c.AddDropped(1)
	c.AddDuplicated(2)
	c.AddOtherRegion(3)
	c.AddDiscardedFiles(1)
	for _, et := range []string{"s3", "ssm", "s3", "kms", "ssm"} {
		c.EventType(et)
	}
	now = start.Add(876 * time.Millisecond)
	c.LogEventsReceived()
	c.LogStatistics()
	wait := c.LogCompletedWithOffset(time.Minute, -36266007*time.Microsecond)

	if want := 60*time.Second - 36266007*time.Microsecond - 876*time.Millisecond; wait != want {
		t.Errorf("wait = %v, want %v", wait, want)
	}
	n := c.Counts()
	if n.Responses != 2 || n.Received != 5 || n.Generated != 4 || n.Dropped != 1 || n.Duplicated != 2 || n.OtherRegion != 3 || n.DiscardedFiles != 1 {
		t.Errorf("counts = %+v", n)
	}
	// Other-region records are not sent, so the unit counts them as dropped.
	if u.Received.Load() != 5 || u.Generated.Load() != 4 || u.Dropped.Load() != 1+3 || u.Duplicated.Load() != 2 {
		t.Errorf("unit counters: received %d generated %d dropped %d duplicated %d",
			u.Received.Load(), u.Generated.Load(), u.Dropped.Load(), u.Duplicated.Load())
	}

	want := []string{
		`Starting a new pulling from "dc-aws-cloudwatch-test-1.fifo" queue at "2022-09-23T07:55:55.546142+00:00"`,
		`Received 2 response(s), received 5 message(s), generated 4 message(s), detected_event_types: ["s3", "ssm", "kms"], avg_time_per_source_message: 438.000 ms`,
		`Statistics for this pull cycle (@devo_pulling_id=1663919755.546142): Number of requests performed: 2; Number of events received: 5; Number of duplicated events filtered out: 2; Number of events generated and sent: 4 (from 5 unflattened events); Average of events per second: 4.566210045662101.`,
		`Applied an offset to wait, retrieval_offset: -36.266007 seconds`,
		`Data collection completed. Elapsed time: 0.876 seconds. Waiting for 22.858 second(s) until the next one`,
	}
	recs := buf.records(t)
	if len(recs) != len(want) {
		t.Fatalf("logged %d lines, want %d: %v", len(recs), len(want), buf.messages(t))
	}
	for i, r := range recs {
		if r["msg"] != want[i] {
			t.Errorf("line %d:\n got %s\nwant %s", i, r["msg"], want[i])
		}
		if r["level"] != "INFO" || r["input"] != "aws" || r["service"] != "service-events-all" || r["region"] != "us-east-2" || r["pulling_id"] != "1663919755.546142" {
			t.Errorf("line %d attributes: %v", i, r)
		}
	}
}

func TestCycleWithoutUnit(t *testing.T) {
	c := NewCycle(slog.New(slog.DiscardHandler), nil, time.Now())
	c.AddReceived(3)
	c.AddGenerated(3)
	if n := c.Counts(); n.Received != 3 || n.Generated != 3 {
		t.Fatalf("counts = %+v", n)
	}
}

func TestCycleConcurrentAdds(t *testing.T) {
	reg := NewRegistry()
	u := reg.Unit("aws", "s", "r")
	c := NewCycle(slog.New(slog.DiscardHandler), u, time.Now())
	done := make(chan struct{})
	for range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for range 1000 {
				c.AddReceived(1)
				c.EventType("x")
			}
		}()
	}
	for range 4 {
		<-done
	}
	if n := c.Counts(); n.Received != 4000 || len(n.EventTypes) != 1 {
		t.Fatalf("counts = %+v", n)
	}
	if u.Received.Load() != 4000 {
		t.Fatalf("unit received = %d", u.Received.Load())
	}
}
