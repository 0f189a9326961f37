package cloudtrailapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// loadService loads the audit-events-all service with body (its YAML
// lines after the types line, indented by 8 spaces).
func loadService(t *testing.T, body string) *config.Service {
	t.Helper()
	return svcconfig.Load(t, "audit-events-all", "        types: [audits_api]\n"+body, "")
}

// ids counts the delivered events per eventID; it fails t on a payload
// without a pulling id.
func ids(t *testing.T, rec *pipetest.Recorder) map[string]int {
	out := map[string]int{}
	for _, p := range rec.Payloads() {
		var ev struct {
			EventID string `json:"eventID"`
			Pulling string `json:"@devo_pulling_id"`
		}
		if err := json.Unmarshal([]byte(p), &ev); err != nil || ev.Pulling == "" {
			t.Fatalf("payload %q: %v (pulling id %q)", p, err, ev.Pulling)
		}
		out[ev.EventID]++
	}
	return out
}

type harness struct {
	t *testing.T
	// sdkAttempts, when set, is the SDK client's RetryMaxAttempts.
	sdkAttempts int
	now         func() time.Time // nil: time.Now
	ct          *awstest.CloudTrail
	store       state.Store
	log         syncbuf.Buffer
	reg         *stats.Registry
}

func (h *harness) source(svc *config.Service) *Source {
	h.t.Helper()
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Store:     h.store,
			Now:       h.now,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
			Registry:  h.reg,
		},
		NewClient: func(opt func(*cloudtrail.Options)) Client {
			return cloudtrail.New(cloudtrail.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(h.ct.URL),
				Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "s", ""),
				RetryMaxAttempts: h.sdkAttempts,
			}, opt)
		},
		QuotaPeriod: time.Millisecond,
		Tune: func(c *pullengine.Config) {
			c.RetryBase, c.RetryMax = time.Millisecond, 10*time.Millisecond
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return src
}

// run runs src until the checkpoint reaches until, then stops it.
func (h *harness) run(src *Source, until time.Time) *pipetest.Recorder {
	h.t.Helper()
	rec := pipetest.NewRecorder()
	stop := pipetest.Start(h.t, rec, src)
	key := state.Key{Input: "aws", Service: "audit-events-all", Region: "us-east-1", Sub: StreamName}
	pipetest.WaitCheckpoint(h.t, h.store, key, until, 30*time.Second, h.log.String)
	stop()
	return rec
}

// Three days in slots of 24 hours: events on the slot edges arrive once,
// drop_event_names, other regions and unlisted sources are not emitted,
// tags follow the eventSource, payloads are the CloudTrailEvent plus the
// pulling id; a restart resumes at the checkpoint and pulls no slot again.
func TestSlotsEdgesFiltersAndRestart(t *testing.T) {
	now := time.Now().UTC()
	start := now.Add(-3 * 24 * time.Hour).Truncate(time.Hour)
	h := &harness{t: t, ct: awstest.NewCloudTrail(t), store: state.NewMemory(), reg: stats.NewRegistry()}
	svc := loadService(t, fmt.Sprintf(`        start_time: %q
        time_slot_in_hours: 24
        gap_until_now_in_minutes: 15
        auto_event_type: true
        sources: [s3.amazonaws.com, ec2.amazonaws.com]
        drop_event_names: [DescribeInstances]
`, start.Format(time.RFC3339)))

	want := map[string]bool{}
	add := func(id, src, name string, at time.Time, region string) {
		ev := awstest.LookupEvent{EventID: id, EventSource: src, EventName: name, EventTime: at}
		if region != "" {
			ev.CloudTrailEvent = fmt.Sprintf(`{"eventVersion":"1.09","eventTime":%q,"eventSource":%q,"eventName":%q,"awsRegion":%q,"eventID":%q}`,
				at.Format(time.RFC3339), src, name, region, id)
		}
		h.ct.AddEvents(ev)
	}
	for d := 0; d <= 3; d++ {
		edge := start.Add(time.Duration(d) * 24 * time.Hour)
		add(fmt.Sprint("edge-", d), "s3.amazonaws.com", "PutObject", edge, "") // exactly on a slot edge
		want[fmt.Sprint("edge-", d)] = true
		for i := range 120 {
			at := edge.Add(time.Duration(i+1) * 10 * time.Minute)
			if at.After(now.Add(-15 * time.Minute)) {
				break
			}
			id := fmt.Sprintf("d%d-%d", d, i)
			switch i % 6 {
			case 0:
				add(id, "ec2.amazonaws.com", "DescribeInstances", at, "") // dropped
			case 1:
				add(id, "iam.amazonaws.com", "CreateRole", at, "") // source not listed
			case 2:
				add(id, "s3.amazonaws.com", "GetObject", at, "eu-west-1") // other region
			default:
				src := "s3.amazonaws.com"
				if i%2 == 0 {
					src = "ec2.amazonaws.com"
				}
				add(id, src, "Call", at, "")
				want[id] = true
			}
		}
	}
	// Only within the collection horizon.
	horizon := now.Add(-15 * time.Minute)
	if !start.Add(3 * 24 * time.Hour).Before(horizon) {
		delete(want, "edge-3")
	}

	sk := h.run(h.source(svc), horizon.Add(-time.Minute))
	got := ids(t, sk)
	for id := range want {
		if got[id] != 1 {
			t.Errorf("%s arrived %d times, want 1", id, got[id])
		}
	}
	for id, n := range got {
		if !want[id] {
			t.Errorf("%s arrived %d times, want none", id, n)
		}
	}
	for _, ev := range sk.Delivered() {
		var rec struct{ EventSource string }
		_ = json.Unmarshal([]byte(ev.Payload), &rec)
		name := strings.TrimSuffix(rec.EventSource, ".amazonaws.com")
		if wantTag := "cloud.aws.cloudtrail." + name + ".123456789012.us-east-1.1"; ev.Tag != wantTag {
			t.Errorf("tag %q, want %q", ev.Tag, wantTag)
			break
		}
		if !strings.HasPrefix(ev.Payload, `{"awsRegion":"us-east-1",`) || !strings.Contains(ev.Payload, `,"recipientAccountId":"123456789012","@devo_pulling_id":"`) {
			t.Errorf("payload %q", ev.Payload)
			break
		}
	}
	log := h.log.String()
	slots := 3
	if start.Add(72 * time.Hour).Before(horizon.Truncate(time.Second)) {
		slots = 4
	}
	for _, line := range []string{
		fmt.Sprint("Total number of time slots to be processed: ", slots),
		`Using 15 minutes as \"gap until now\", start_date: \"` + start.Format("2006-01-02T15:04:05.000000-07:00"),
		`time_slot_in_hours: \"24\"`,
		"Received ",
		"messages (total/dropped/other_region/duplicated/generated): ",
		`tag template used: \"cloud.aws.cloudtrail.{event_type}.123456789012.us-east-1.1\"`,
		"Starting data collection every 60 seconds",
		`Starting a new pulling from \"['s3.amazonaws.com', 'ec2.amazonaws.com']\" source at \"`,
	} {
		if !strings.Contains(log, line) {
			t.Errorf("log lacks %s", line)
		}
	}
	// Every LookupEvents call asked for 50, filtered by exactly one listed source.
	for _, c := range h.ct.Calls() {
		in := c.Input.(*awstest.LookupEventsRequest)
		if in.MaxResults == nil || *in.MaxResults != PageSize || len(in.LookupAttributes) != 1 || in.LookupAttributes[0].AttributeKey != "EventSource" {
			t.Fatalf("request %+v", in)
		}
	}
	// The calls are counted per operation.
	if n := h.reg.API("aws", "audit-events-all", "us-east-1", "CloudTrail", "LookupEvents").Calls.Load(); n != int64(len(h.ct.Calls())) {
		t.Errorf("api calls counted %d, fake saw %d", n, len(h.ct.Calls()))
	}

	// Restart: a new Source on the same store starts at the checkpoint.
	before := len(h.ct.Calls())
	cp, _, _ := pullengine.LoadCheckpoint(h.store, state.Key{Input: "aws", Service: "audit-events-all", Region: "us-east-1", Sub: StreamName})
	h.ct.AddEvents(awstest.LookupEvent{EventID: "late", EventSource: "s3.amazonaws.com", EventName: "Call", EventTime: cp.End.Add(time.Second)})
	h.now = func() time.Time { return time.Now().Add(2 * time.Minute) }
	sk2 := h.run(h.source(svc), cp.End.Add(time.Minute))
	// edge-3 lies on the last slot edge, at the full hour. When the test
	// runs between :13 and :15 past the hour, the first run's horizon (15
	// minutes back) stops short of it and the restart's, two minutes
	// later, reaches it (seen once in a full suite run at 19:13). It may
	// arrive after the restart only if it did not before; nothing else but
	// the late event may.
	got2 := ids(t, sk2)
	for id, n := range got2 {
		switch {
		case got[id] > 0:
			t.Errorf("after the restart %s arrived again (%d + %d times)", id, got[id], n)
		case id != "late" && id != "edge-3":
			t.Errorf("after the restart %s arrived %d times, want only the late event", id, n)
		}
	}
	if got2["late"] != 1 {
		t.Errorf("after the restart: %v, want the late event once", got2)
	}
	for _, c := range h.ct.Calls()[before:] {
		in := c.Input.(*awstest.LookupEventsRequest)
		if in.StartTime.Before(cp.End.Truncate(time.Second)) {
			t.Fatalf("after the restart a request starts at %v, before the checkpoint %v", in.StartTime, cp.End)
		}
	}
}

// A start_time beyond LookupEvents' 90 days is clamped with a WARN.
func TestStartTimeClampedTo90Days(t *testing.T) {
	now := time.Now().UTC()
	h := &harness{t: t, ct: awstest.NewCloudTrail(t), store: state.NewMemory(), reg: stats.NewRegistry()}
	svc := loadService(t, fmt.Sprintf("        start_time: %q\n        time_slot_in_hours: 720\n", now.Add(-100*24*time.Hour).Format(time.RFC3339)))
	h.run(h.source(svc), now.Add(-20*time.Minute))
	if !strings.Contains(h.log.String(), "level=WARN msg=\"start is older than the API's history") {
		t.Errorf("no WARN for the clamp:\n%s", h.log.String())
	}
	first := h.ct.Calls()[0].Input.(*awstest.LookupEventsRequest)
	if first.StartTime.Before(now.Add(-90 * 24 * time.Hour)) {
		t.Errorf("first request starts at %v, more than 90 days ago", first.StartTime)
	}
}

// Throttling that outlasts the SDK's own retries is retried by the engine
// with backoff: the slot still completes, nothing is lost or sent twice,
// and every attempt is counted, the throttled ones too.
func TestThrottlingIsRetriedWithBackoff(t *testing.T) {
	now := time.Now().UTC()
	h := &harness{t: t, ct: awstest.NewCloudTrail(t), store: state.NewMemory(), reg: stats.NewRegistry(), sdkAttempts: 1}
	start := now.Add(-2 * time.Hour).Truncate(time.Hour)
	for i := range 120 {
		h.ct.AddEvents(awstest.LookupEvent{EventID: fmt.Sprint("t-", i), EventSource: "s3.amazonaws.com", EventName: "Call", EventTime: start.Add(time.Duration(i) * 30 * time.Second)})
	}
	h.ct.ThrottleEvery(2) // every other request, paging included
	svc := loadService(t, fmt.Sprintf("        start_time: %q\n", start.Format(time.RFC3339)))
	sk := h.run(h.source(svc), now.Add(-16*time.Minute))
	got := ids(t, sk)
	for i := range 120 {
		if got[fmt.Sprint("t-", i)] != 1 {
			t.Fatalf("t-%d arrived %d times", i, got[fmt.Sprint("t-", i)])
		}
	}
	if h.ct.Throttled() == 0 || !strings.Contains(h.log.String(), `msg="request failed, retrying" request=LookupEvents attempt=1`) {
		t.Errorf("%d throttles, log:\n%s", h.ct.Throttled(), h.log.String())
	}
	api := h.reg.API("aws", "audit-events-all", "us-east-1", "CloudTrail", "LookupEvents")
	if api.Throttled.Load() != int64(h.ct.Throttled()) || api.Calls.Load() != int64(len(h.ct.Calls())) {
		t.Errorf("counted %d calls, %d throttled; the fake saw %d, %d throttled", api.Calls.Load(), api.Throttled.Load(), len(h.ct.Calls()), h.ct.Throttled())
	}
}
