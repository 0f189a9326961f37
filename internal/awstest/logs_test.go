package awstest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs/types"
)

func newLogsClient(l *Logs, akid string) *cloudwatchlogs.Client {
	return cloudwatchlogs.NewFromConfig(testConfig(akid), func(o *cloudwatchlogs.Options) {
		o.BaseEndpoint = aws.String(l.URL)
	})
}

func collectFilter(t *testing.T, c *cloudwatchlogs.Client, in *cloudwatchlogs.FilterLogEventsInput) ([]types.FilteredLogEvent, int) {
	t.Helper()
	ctx := testContext(t)
	p := cloudwatchlogs.NewFilterLogEventsPaginator(c, in)
	var all []types.FilteredLogEvent
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatalf("page %d: %v", pages+1, err)
		}
		pages++
		all = append(all, out.Events...)
	}
	return all, pages
}

// loadLogs writes n events per stream, one second apart from base, into
// streams a, b and c of group.
func loadLogs(l *Logs, group string, n int, base time.Time) {
	for i := range n {
		for _, s := range []string{"a", "b", "c"} {
			l.AddEvents(group, LogEvent{
				Stream:    s,
				Timestamp: base.Add(time.Duration(i) * time.Second),
				Message:   fmt.Sprintf("level=%s stream=%s seq=%d", map[bool]string{true: "error", false: "info"}[i%5 == 0], s, i),
			})
		}
	}
}

func TestLogsFilterPaginatesInTimeOrder(t *testing.T) {
	l := NewLogs(t)
	base := time.UnixMilli(1717160700123).UTC()
	loadLogs(l, "/aws/lambda/orders", 40, base)
	c := newLogsClient(l, testAccessKey)

	evs, pages := collectFilter(t, c, &cloudwatchlogs.FilterLogEventsInput{
		LogGroupName: aws.String("/aws/lambda/orders"),
		Limit:        aws.Int32(25),
	})
	if len(evs) != 120 || pages != 5 {
		t.Fatalf("got %d events in %d pages, want 120 in 5", len(evs), pages)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if i > 0 && aws.ToInt64(ev.Timestamp) < aws.ToInt64(evs[i-1].Timestamp) {
			t.Fatalf("event %d out of time order", i)
		}
		if seen[aws.ToString(ev.EventId)] {
			t.Fatalf("event id %s repeated", aws.ToString(ev.EventId))
		}
		seen[aws.ToString(ev.EventId)] = true
	}
	if aws.ToInt64(evs[0].Timestamp) != 1717160700123 || aws.ToInt64(evs[0].IngestionTime) != 1717160701123 {
		t.Fatalf("first event = %+v", evs[0])
	}
	in := l.Calls()[1].Input.(*FilterLogEventsRequest)
	if in.NextToken == "" || *in.Limit != 25 || in.LogGroupName != "/aws/lambda/orders" {
		t.Fatalf("second call input = %+v", in)
	}
}

func TestLogsFilterSelects(t *testing.T) {
	l := NewLogs(t)
	base := time.UnixMilli(1717160700000).UTC()
	loadLogs(l, "g", 40, base)
	c := newLogsClient(l, testAccessKey)
	ms := func(sec int) *int64 { return aws.Int64(base.Add(time.Duration(sec) * time.Second).UnixMilli()) }

	tests := []struct {
		name string
		in   cloudwatchlogs.FilterLogEventsInput
		want int
	}{
		{"window is inclusive at both ends", cloudwatchlogs.FilterLogEventsInput{StartTime: ms(10), EndTime: ms(19)}, 30},
		{"stream names", cloudwatchlogs.FilterLogEventsInput{LogStreamNames: []string{"a", "c"}}, 80},
		{"stream prefix", cloudwatchlogs.FilterLogEventsInput{LogStreamNamePrefix: aws.String("b")}, 40},
		{"term", cloudwatchlogs.FilterLogEventsInput{FilterPattern: aws.String("level=error")}, 24},
		{"terms and exclusion", cloudwatchlogs.FilterLogEventsInput{FilterPattern: aws.String(`"level=error" -stream=a`)}, 16},
		{"alternatives", cloudwatchlogs.FilterLogEventsInput{FilterPattern: aws.String("?seq=1 ?seq=2"), LogStreamNames: []string{"a"}}, 22},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.in
			in.LogGroupName = aws.String("g")
			evs, _ := collectFilter(t, c, &in)
			if len(evs) != tt.want {
				t.Fatalf("got %d events, want %d", len(evs), tt.want)
			}
		})
	}
}

func TestLogsFilterPageLimits(t *testing.T) {
	l := NewLogs(t)
	base := time.UnixMilli(1717160700000).UTC()
	big := strings.Repeat("x", 200_000)
	for i := range 12 {
		l.AddEvents("big", LogEvent{Stream: "s", Timestamp: base.Add(time.Duration(i) * time.Millisecond), Message: big})
	}
	for i := range 10_050 {
		l.AddEvents("many", LogEvent{Stream: "s", Timestamp: base.Add(time.Duration(i) * time.Millisecond), Message: "m"})
	}
	c := newLogsClient(l, testAccessKey)
	ctx := testContext(t)

	// 1 MB per page: five 200 KB messages fit, six do not.
	out, err := c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("big")})
	if err != nil || len(out.Events) != 5 || out.NextToken == nil {
		t.Fatalf("1 MB page: %v, %d events", err, len(out.Events))
	}
	// 10,000 events per page at most.
	out, err = c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("many")})
	if err != nil || len(out.Events) != 10_000 || out.NextToken == nil {
		t.Fatalf("default page: %v, %d events", err, len(out.Events))
	}
	_, err = c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("many"), Limit: aws.Int32(10_001)})
	var badParam *types.InvalidParameterException
	if !errors.As(err, &badParam) {
		t.Fatalf("limit 10001: %v, want InvalidParameterException", err)
	}
}

func TestLogsFilterEmptyPagesCarryTokens(t *testing.T) {
	l := NewLogs(t)
	loadLogs(l, "g", 3, time.UnixMilli(1717160700000))
	l.SetEmptyPages(2)
	evs, pages := collectFilter(t, newLogsClient(l, testAccessKey), &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g")})
	if len(evs) != 9 || pages != 3 {
		t.Fatalf("got %d events in %d pages, want 9 in 3 (two empty)", len(evs), pages)
	}
}

func TestLogsFilterErrors(t *testing.T) {
	l := NewLogs(t)
	loadLogs(l, "g", 3, time.UnixMilli(1717160700000))
	c := newLogsClient(l, testAccessKey)
	ctx := testContext(t)

	_, err := c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("missing")})
	var notFound *types.ResourceNotFoundException
	if !errors.As(err, &notFound) {
		t.Fatalf("unknown group: %v", err)
	}
	var badParam *types.InvalidParameterException
	_, err = c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g"), NextToken: aws.String("forged")})
	if !errors.As(err, &badParam) {
		t.Fatalf("forged token: %v", err)
	}
	_, err = c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{
		LogGroupName: aws.String("g"), LogStreamNames: []string{"a"}, LogStreamNamePrefix: aws.String("a"),
	})
	if !errors.As(err, &badParam) {
		t.Fatalf("names and prefix: %v", err)
	}
	names := make([]string, 101)
	for i := range names {
		names[i] = fmt.Sprint(i)
	}
	_, err = c.FilterLogEvents(ctx, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g"), LogStreamNames: names})
	if !errors.As(err, &badParam) {
		t.Fatalf("101 stream names: %v", err)
	}
}

func TestLogsDescribe(t *testing.T) {
	l := NewLogs(t)
	for i := range 60 {
		l.AddGroup(fmt.Sprintf("/aws/lambda/fn-%02d", i))
	}
	l.AddGroup("/other")
	base := time.UnixMilli(1717160700000).UTC()
	l.AddStream("/other", LogStream{Name: "silent"})
	l.AddStream("/other", LogStream{Name: "lazy", HideLastEventTimestamp: true})
	l.AddEvents("/other",
		LogEvent{Stream: "old", Timestamp: base},
		LogEvent{Stream: "new", Timestamp: base.Add(time.Hour)},
		LogEvent{Stream: "lazy", Timestamp: base.Add(2 * time.Hour)},
	)
	c := newLogsClient(l, testAccessKey)
	ctx := testContext(t)

	var groups []types.LogGroup
	p := cloudwatchlogs.NewDescribeLogGroupsPaginator(c, &cloudwatchlogs.DescribeLogGroupsInput{LogGroupNamePrefix: aws.String("/aws/lambda/")})
	for p.HasMorePages() {
		out, err := p.NextPage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		groups = append(groups, out.LogGroups...)
	}
	if len(groups) != 60 || l.Count("DescribeLogGroups") != 2 {
		t.Fatalf("%d groups in %d calls, want 60 in 2", len(groups), l.Count("DescribeLogGroups"))
	}
	if g := groups[0]; aws.ToString(g.LogGroupName) != "/aws/lambda/fn-00" || !strings.HasSuffix(aws.ToString(g.Arn), ":log-group:/aws/lambda/fn-00:*") {
		t.Fatalf("first group = %+v", g)
	}

	out, err := c.DescribeLogStreams(ctx, &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName: aws.String("/other"), OrderBy: types.OrderByLastEventTime, Descending: aws.Bool(true),
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range out.LogStreams {
		got = append(got, aws.ToString(s.LogStreamName))
	}
	if strings.Join(got, ",") != "lazy,new,old,silent" {
		t.Fatalf("streams by last event, descending = %v", got)
	}
	if out.LogStreams[0].LastEventTimestamp != nil || out.LogStreams[0].FirstEventTimestamp == nil {
		t.Fatalf("lazy stream = %+v, want lastEventTimestamp absent", out.LogStreams[0])
	}
	if aws.ToInt64(out.LogStreams[1].LastEventTimestamp) != base.Add(time.Hour).UnixMilli() {
		t.Fatalf("new stream = %+v", out.LogStreams[1])
	}

	_, err = c.DescribeLogStreams(ctx, &cloudwatchlogs.DescribeLogStreamsInput{
		LogGroupName: aws.String("/other"), OrderBy: types.OrderByLastEventTime, LogStreamNamePrefix: aws.String("n"),
	})
	var badParam *types.InvalidParameterException
	if !errors.As(err, &badParam) {
		t.Fatalf("prefix with LastEventTime: %v", err)
	}
}

func TestLogsThrottling(t *testing.T) {
	l := NewLogs(t)
	loadLogs(l, "g", 20, time.UnixMilli(1717160700000))
	c := newLogsClient(l, testAccessKey)

	l.ThrottleEvery(3)
	evs, _ := collectFilter(t, c, &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g"), Limit: aws.Int32(10)})
	if len(evs) != 60 || l.Throttled() == 0 {
		t.Fatalf("%d events, %d throttled", len(evs), l.Throttled())
	}
	l.ThrottleEvery(0)

	l.ThrottleNext(2 * testMaxAttempts)
	_, err := c.FilterLogEvents(testContext(t), &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g")})
	wantAPIError(t, err, "ThrottlingException")
}

// An event ingested late is invisible to FilterLogEvents until its
// ingestion time, by the fake's clock.
func TestLogsLateIngestion(t *testing.T) {
	l := NewLogs(t)
	now := time.UnixMilli(1717160700000).UTC()
	l.SetClock(func() time.Time { return now })
	l.AddEvents("g",
		LogEvent{Stream: "s", Timestamp: now.Add(-10 * time.Second), Message: "on time"},
		LogEvent{Stream: "s", Timestamp: now.Add(-5 * time.Second), Message: "late", IngestionTime: now.Add(55 * time.Second)},
	)
	c := newLogsClient(l, testAccessKey)
	in := &cloudwatchlogs.FilterLogEventsInput{LogGroupName: aws.String("g")}
	if evs, _ := collectFilter(t, c, in); len(evs) != 1 || aws.ToString(evs[0].Message) != "on time" {
		t.Fatalf("before ingestion: %d events, want only the one on time", len(evs))
	}
	now = now.Add(time.Minute)
	evs, _ := collectFilter(t, c, in)
	if len(evs) != 2 || aws.ToString(evs[1].Message) != "late" || aws.ToInt64(evs[1].IngestionTime) != now.Add(-5*time.Second).UnixMilli() {
		t.Fatalf("after ingestion: %+v", evs)
	}
}
