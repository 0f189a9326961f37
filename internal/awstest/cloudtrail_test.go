package awstest

import (
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail/types"
)

func newCloudTrailClient(ct *CloudTrail, akid string) *cloudtrail.Client {
	return cloudtrail.NewFromConfig(testConfig(akid), func(o *cloudtrail.Options) {
		o.BaseEndpoint = aws.String(ct.URL)
	})
}

// loadTrail adds n events one minute apart, ending at end, alternating
// between two sources.
func loadTrail(ct *CloudTrail, n int, end time.Time) {
	for i := range n {
		src, name := "ec2.amazonaws.com", "StopInstances"
		if i%2 == 1 {
			src, name = "s3.amazonaws.com", "CreateBucket"
		}
		ct.AddEvents(LookupEvent{
			EventID:     fmt.Sprintf("ev-%03d", i),
			EventName:   name,
			EventSource: src,
			EventTime:   end.Add(-time.Duration(n-1-i) * time.Minute),
			Username:    "ana",
			Resources:   []LookupResource{{ResourceType: "AWS::EC2::Instance", ResourceName: fmt.Sprintf("i-%03d", i)}},
		})
	}
}

func collectLookup(t *testing.T, c *cloudtrail.Client, in *cloudtrail.LookupEventsInput) ([]types.Event, int) {
	t.Helper()
	ctx := testContext(t)
	p := cloudtrail.NewLookupEventsPaginator(c, in)
	var all []types.Event
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

func TestCloudTrailPaginatesNewestFirst(t *testing.T) {
	ct := NewCloudTrail(t)
	end := time.Now().UTC().Truncate(time.Minute)
	loadTrail(ct, 120, end)
	c := newCloudTrailClient(ct, testAccessKey)

	evs, pages := collectLookup(t, c, &cloudtrail.LookupEventsInput{})
	if pages != 3 || len(evs) != 120 {
		t.Fatalf("got %d events in %d pages, want 120 in 3", len(evs), pages)
	}
	for i, ev := range evs {
		if want := fmt.Sprintf("ev-%03d", 119-i); aws.ToString(ev.EventId) != want {
			t.Fatalf("event %d = %s, want %s (newest first)", i, aws.ToString(ev.EventId), want)
		}
	}
	first := evs[0]
	if !first.EventTime.Equal(end) || aws.ToString(first.ReadOnly) != "false" || len(first.Resources) != 1 {
		t.Fatalf("first event = %+v", first)
	}
	var rec map[string]any
	if err := json.Unmarshal([]byte(aws.ToString(first.CloudTrailEvent)), &rec); err != nil {
		t.Fatalf("CloudTrailEvent is not JSON: %v", err)
	}
	if rec["eventID"] != "ev-119" || rec["awsRegion"] != "us-east-1" {
		t.Fatalf("record = %v", rec)
	}

	calls := ct.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	for i, call := range calls {
		in := call.Input.(*LookupEventsRequest)
		if call.Op != "LookupEvents" || call.AccessKeyID != testAccessKey || (i > 0) != (in.NextToken != "") {
			t.Fatalf("call %d = %+v, input %+v", i, call, in)
		}
	}
}

func TestCloudTrailFilters(t *testing.T) {
	ct := NewCloudTrail(t)
	end := time.Now().UTC().Truncate(time.Minute)
	loadTrail(ct, 60, end)
	ct.AddEvents(LookupEvent{EventID: "insight-1", EventName: "StopInstances", EventSource: "ec2.amazonaws.com", EventTime: end, Insight: true})
	ct.AddEvents(LookupEvent{EventID: "ancient", EventName: "StopInstances", EventSource: "ec2.amazonaws.com", EventTime: end.Add(-91 * 24 * time.Hour)})
	c := newCloudTrailClient(ct, testAccessKey)

	// Both ends of the window are inclusive: minutes 10..19 before end.
	start, stop := end.Add(-19*time.Minute), end.Add(-10*time.Minute)
	evs, _ := collectLookup(t, c, &cloudtrail.LookupEventsInput{
		StartTime:        &start,
		EndTime:          &stop,
		LookupAttributes: []types.LookupAttribute{{AttributeKey: types.LookupAttributeKeyEventSource, AttributeValue: aws.String("s3.amazonaws.com")}},
		MaxResults:       aws.Int32(2),
	})
	if len(evs) != 5 {
		t.Fatalf("got %d events, want 5", len(evs))
	}
	for _, ev := range evs {
		if aws.ToString(ev.EventSource) != "s3.amazonaws.com" || ev.EventTime.Before(start) || ev.EventTime.After(stop) {
			t.Fatalf("event outside the filter: %+v", ev)
		}
	}

	byName, _ := collectLookup(t, c, &cloudtrail.LookupEventsInput{
		LookupAttributes: []types.LookupAttribute{{AttributeKey: types.LookupAttributeKeyEventName, AttributeValue: aws.String("StopInstances")}},
	})
	if len(byName) != 30 {
		t.Fatalf("EventName filter: %d events, want 30 (no insight, nothing past 90 days)", len(byName))
	}

	insights, _ := collectLookup(t, c, &cloudtrail.LookupEventsInput{EventCategory: types.EventCategoryInsight})
	if len(insights) != 1 || aws.ToString(insights[0].EventId) != "insight-1" {
		t.Fatalf("insight events = %+v", insights)
	}
}

func TestCloudTrailRejectsInvalidRequests(t *testing.T) {
	ct := NewCloudTrail(t)
	loadTrail(ct, 60, time.Now())
	c := newCloudTrailClient(ct, testAccessKey)
	ctx := testContext(t)

	_, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{LookupAttributes: []types.LookupAttribute{
		{AttributeKey: types.LookupAttributeKeyEventSource, AttributeValue: aws.String("s3.amazonaws.com")},
		{AttributeKey: types.LookupAttributeKeyEventName, AttributeValue: aws.String("CreateBucket")},
	}})
	var badAttrs *types.InvalidLookupAttributesException
	if !errors.As(err, &badAttrs) {
		t.Fatalf("two attributes: err = %v, want InvalidLookupAttributesException", err)
	}

	_, err = c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{NextToken: aws.String("not-a-token")})
	var badToken *types.InvalidNextTokenException
	if !errors.As(err, &badToken) {
		t.Fatalf("forged token: err = %v, want InvalidNextTokenException", err)
	}

	first, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(10)})
	if err != nil || first.NextToken == nil {
		t.Fatalf("first page: %v, token %v", err, first)
	}
	_, err = c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(20), NextToken: first.NextToken})
	if !errors.As(err, &badToken) {
		t.Fatalf("token with other parameters: err = %v, want InvalidNextTokenException", err)
	}

	_, err = c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{MaxResults: aws.Int32(51)})
	var badMax *types.InvalidMaxResultsException
	if !errors.As(err, &badMax) {
		t.Fatalf("MaxResults 51: err = %v, want InvalidMaxResultsException", err)
	}

	now := time.Now()
	_, err = c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{StartTime: aws.Time(now), EndTime: aws.Time(now.Add(-time.Hour))})
	var badRange *types.InvalidTimeRangeException
	if !errors.As(err, &badRange) {
		t.Fatalf("reversed window: err = %v, want InvalidTimeRangeException", err)
	}
}

func TestCloudTrailThrottling(t *testing.T) {
	ct := NewCloudTrail(t)
	loadTrail(ct, 120, time.Now())
	c := newCloudTrailClient(ct, testAccessKey)
	ctx := testContext(t)

	// One throttled call is retried by the SDK and the caller sees success.
	ct.ThrottleNext(1)
	out, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{})
	if err != nil || len(out.Events) != 50 {
		t.Fatalf("after one throttle: %v", err)
	}
	if ct.Count("LookupEvents") != 2 || ct.Throttled() != 1 {
		t.Fatalf("calls %d throttled %d, want 2 and 1", ct.Count("LookupEvents"), ct.Throttled())
	}

	// Every other call throttled: a paginated walk still completes.
	ct.ThrottleEvery(2)
	evs, pages := collectLookup(t, c, &cloudtrail.LookupEventsInput{})
	if len(evs) != 120 || pages != 3 {
		t.Fatalf("with ThrottleEvery(2): %d events in %d pages", len(evs), pages)
	}
	ct.ThrottleEvery(0)

	// A throttle outlasting the retries surfaces as ThrottlingException.
	ct.ThrottleNext(2 * testMaxAttempts)
	before := ct.Count("LookupEvents")
	_, err = c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{})
	wantAPIError(t, err, "ThrottlingException")
	if got := ct.Count("LookupEvents") - before; got != testMaxAttempts {
		t.Fatalf("%d attempts, want %d", got, testMaxAttempts)
	}
}

func TestCloudTrailExpiredCredentials(t *testing.T) {
	ct := NewCloudTrail(t)
	ct.ExpireAccessKey("AKIDEXPIRED")
	_, err := newCloudTrailClient(ct, "AKIDEXPIRED").LookupEvents(testContext(t), &cloudtrail.LookupEventsInput{})
	wantAPIError(t, err, "ExpiredTokenException")
	if _, err := newCloudTrailClient(ct, testAccessKey).LookupEvents(testContext(t), &cloudtrail.LookupEventsInput{}); err != nil {
		t.Fatalf("other key: %v", err)
	}
}

// LimitRate(2, 1s) is LookupEvents' quota: a third call within a second of
// two accepted ones is throttled, and the call log carries arrival times.
func TestCloudTrailRateQuota(t *testing.T) {
	ct := NewCloudTrail(t)
	loadTrail(ct, 10, time.Now())
	c := cloudtrail.NewFromConfig(testConfig(testAccessKey), func(o *cloudtrail.Options) {
		o.BaseEndpoint = aws.String(ct.URL)
		o.RetryMaxAttempts = 1
	})
	ctx := testContext(t)
	ct.LimitRate(2, time.Second)
	for i := range 2 {
		if _, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{}); err != nil {
			t.Fatalf("call %d: %v", i+1, err)
		}
	}
	_, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{})
	wantAPIError(t, err, "ThrottlingException")
	calls := ct.Calls()
	if len(calls) != 3 || calls[2].ErrCode != "ThrottlingException" || calls[0].At.IsZero() || calls[2].At.Before(calls[0].At) {
		t.Fatalf("call log %+v", calls)
	}
	time.Sleep(time.Until(calls[0].At.Add(time.Second + 50*time.Millisecond)))
	if _, err := c.LookupEvents(ctx, &cloudtrail.LookupEventsInput{}); err != nil {
		t.Fatalf("a second later: %v", err)
	}
}
