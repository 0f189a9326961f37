package cwmetrics

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// loadService loads the metrics-all service with body (its YAML lines
// after the types line, indented by 8 spaces).
func loadService(t *testing.T, body string) *config.Service {
	t.Helper()
	return svcconfig.Load(t, "metrics-all", "        types: [metrics]\n"+body, "")
}

// event is an emitted event, decoded.
type event struct {
	Namespace  string              `json:"namespace"`
	MetricName string              `json:"metricName"`
	Dimensions []awstest.Dimension `json:"dimensions"`
	Period     int                 `json:"period"`
	Timestamp  string              `json:"timestamp"`
	Statistics map[string]float64  `json:"statistics"`
	AccountID  string              `json:"accountId"`
	Region     string              `json:"region"`
	Pulling    string              `json:"@devo_pulling_id"`
}

// events decodes the delivered events in delivery order, checking each
// tag.
func events(t *testing.T, rec *pipetest.Recorder) []event {
	t.Helper()
	got := rec.Delivered()
	out := make([]event, 0, len(got))
	for _, d := range got {
		var ev event
		if err := json.Unmarshal([]byte(d.Payload), &ev); err != nil {
			t.Fatalf("payload %q: %v", d.Payload, err)
		}
		if d.Tag != "cloud.aws.cloudwatch.metrics.123456789012.us-east-1.1" {
			t.Fatalf("tag %q", d.Tag)
		}
		out = append(out, ev)
	}
	return out
}

type harness struct {
	t     *testing.T
	clock struct {
		sync.Mutex
		now time.Time
	}
	cw *awstest.CloudWatch
	// sdkAttempts, when set, is the SDK client's RetryMaxAttempts.
	sdkAttempts int
	store       state.Store
	log         syncbuf.Buffer
	reg         *stats.Registry
}

func newHarness(t *testing.T, now time.Time) *harness {
	h := &harness{t: t, cw: awstest.NewCloudWatch(t), store: state.NewMemory(), reg: stats.NewRegistry()}
	h.clock.now = now
	h.cw.SetClock(h.now)
	return h
}

func (h *harness) now() time.Time {
	h.clock.Lock()
	defer h.clock.Unlock()
	return h.clock.now
}

func (h *harness) set(t time.Time) {
	h.clock.Lock()
	h.clock.now = t
	h.clock.Unlock()
}

func (h *harness) source(svc *config.Service) *Source {
	h.t.Helper()
	client := cloudwatch.New(cloudwatch.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(h.cw.URL),
		Credentials:      credentials.NewStaticCredentialsProvider("AKIDTEST", "s", ""),
		RetryMaxAttempts: h.sdkAttempts,
	})
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Store:     h.store,
			Now:       h.now,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
			Registry:  h.reg,
		},
		Client: client,
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
	key := state.Key{Input: "aws", Service: src.svc.Name, Region: "us-east-1", Sub: StreamName}
	if end := pipetest.WaitCheckpoint(h.t, h.store, key, until, 30*time.Second, h.log.String); end.After(until) {
		h.t.Fatalf("checkpoint %v went past %v", end, until)
	}
	stop()
	return rec
}

// metric has a sample every 20 s over [from, to), valued by the metric
// number and the sample's time, so each period's statistics are known.
func metric(ns string, n int, from, to time.Time) awstest.Metric {
	m := awstest.Metric{Namespace: ns, MetricName: "M", Dimensions: []awstest.Dimension{{Name: "Id", Value: fmt.Sprint(n)}}}
	for t := from; t.Before(to); t = t.Add(20 * time.Second) {
		m.Samples = append(m.Samples, awstest.Sample{Time: t, Value: sampleValue(n, t)})
	}
	return m
}

func sampleValue(n int, t time.Time) float64 { return float64(n) + float64(t.Unix()%3600)/4 }

// wantSum is the Sum of the minute starting at ts for metric n (three
// samples at :00, :20, :40).
func wantSum(n int, ts time.Time) float64 {
	return sampleValue(n, ts) + sampleValue(n, ts.Add(20*time.Second)) + sampleValue(n, ts.Add(40*time.Second))
}

func (h *harness) count(op string) int { return h.cw.Count(op) }

// The contract on a fake clock: a backfill from start_time in one
// window of whole periods, three statistics over 250 metrics in two calls
// (a metric's statistics straddle them), every datapoint once with its
// values; then a later cycle with a datapoint published late; then one
// past the ListMetrics refresh interval, which lists again.
func TestBackfillLateDataAndListingCache(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	for i := range 250 {
		ns := "AWS/EC2"
		if i >= 150 {
			ns = "Custom/App"
		}
		h.cw.AddMetrics(metric(ns, i, T.Truncate(time.Minute).Add(-30*time.Minute), T.Add(40*time.Minute)))
	}
	// Published at 14:50:20, 80 s after its period (14:48) ended: inside the
	// two-minute delay.
	late := time.Date(2024, 5, 31, 14, 48, 50, 0, time.UTC)
	h.cw.AddMetrics(awstest.Metric{Namespace: "AWS/EC2", MetricName: "M", Dimensions: []awstest.Dimension{{Name: "Id", Value: "7"}},
		Samples: []awstest.Sample{{Time: late, Value: 1000, Published: late.Add(90 * time.Second)}}})
	svc := loadService(t, `        metric_namespaces: [AWS/EC2, Custom/App]
        metric_statistics: [Sum, SampleCount, Maximum]
        start_time: "2024-05-31T14:39:00Z"
`)
	src := h.source(svc)

	check := func(evs []event, from, to time.Time) {
		t.Helper()
		seen := map[string]int{}
		for _, ev := range evs {
			n := 0
			fmt.Sscan(ev.Dimensions[0].Value, &n)
			ts, err := time.Parse(time.RFC3339, ev.Timestamp)
			if err != nil {
				t.Fatal(err)
			}
			key := ev.Dimensions[0].Value + "@" + ev.Timestamp
			seen[key]++
			want := wantSum(n, ts)
			count := 3.0
			if n == 7 && ts.Equal(late.Truncate(time.Minute)) {
				want += 1000
				count = 4
			}
			if ev.Statistics["Sum"] != want || ev.Statistics["SampleCount"] != count || len(ev.Statistics) != 3 || ev.Period != 60 ||
				ev.AccountID != "123456789012" || ev.Region != "us-east-1" || ev.Pulling == "" || ev.MetricName != "M" {
				t.Fatalf("event %+v: want Sum %v, SampleCount %v", ev, want, count)
			}
		}
		periods := int(to.Sub(from) / time.Minute)
		if len(seen) != 250*periods || len(evs) != 250*periods {
			t.Fatalf("%d events, %d distinct, want %d (%d periods × 250 metrics)", len(evs), len(seen), 250*periods, periods)
		}
	}

	// 1. The backfill: [14:39, 14:47), the last period that ended two
	// minutes ago being 14:46.
	s := h.run(src, T.Truncate(time.Minute).Add(-2*time.Minute))
	check(events(t, s), time.Date(2024, 5, 31, 14, 39, 0, 0, time.UTC), time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC))
	if n := h.count("GetMetricData"); n != 2 {
		t.Errorf("%d GetMetricData calls for 750 queries, want 2", n)
	}
	if n := h.count("ListMetrics"); n != 2 {
		t.Errorf("%d ListMetrics calls, want one per namespace", n)
	}
	for _, want := range []string{
		`Starting a new pulling from \"['AWS/EC2', 'Custom/App']\" namespaces at \"2024-05-31T14:49:36.000000+00:00\"`,
		`Time range: \"2024-05-31T14:39:00Z\" > \"2024-05-31T14:47:00Z\"`,
		`Received 4 response(s), generated 2000 message(s), tag used: \"cloud.aws.cloudwatch.metrics.123456789012.us-east-1.1\"`,
		`Applied an offset to wait, retrieval_offset: -35.500000 seconds`,
	} {
		if !strings.Contains(h.log.String(), want) {
			t.Errorf("log lacks %s\n%s", want, h.log.String())
		}
	}
	for i, c := range h.cw.Calls() {
		if in, ok := c.Input.(*awstest.GetMetricDataRequest); ok {
			if n := len(in.MetricDataQueries); (i == 2 && n != 500) || n > 500 {
				t.Errorf("call %d carries %d queries", i, n)
			}
			if in.StartTime.Second() != 0 || in.EndTime.Second() != 0 || in.MetricDataQueries[0].MetricStat.Period != 60 {
				t.Errorf("call %d is not aligned: %v – %v", i, in.StartTime, in.EndTime)
			}
		}
		if in, ok := c.Input.(*awstest.ListMetricsRequest); ok && in.RecentlyActive != "PT3H" {
			t.Errorf("ListMetrics without RecentlyActive=PT3H: %+v", in)
		}
	}

	// 2. At the next cycles' grid point for 14:48 (14:51:00.5): [14:47,
	// 14:49) with the sample published 80 s after its period ended (a
	// puller reading each period as soon as it ends would miss it), from
	// the cached listing.
	h.set(time.Date(2024, 5, 31, 14, 51, 0, 500_000_000, time.UTC))
	s = h.run(src, time.Date(2024, 5, 31, 14, 49, 0, 0, time.UTC))
	check(events(t, s), time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC), time.Date(2024, 5, 31, 14, 49, 0, 0, time.UTC))
	if n := h.count("ListMetrics"); n != 2 {
		t.Errorf("%d ListMetrics calls after a second cycle 3 minutes later, want still 2 (cached)", n)
	}
	if n := h.count("GetMetricData"); n != 4 {
		t.Errorf("%d GetMetricData calls, want 4", n)
	}

	// 3. Past the refresh interval the namespaces are listed again.
	h.set(T.Add(20 * time.Minute))
	s = h.run(src, time.Date(2024, 5, 31, 15, 7, 0, 0, time.UTC))
	check(events(t, s), time.Date(2024, 5, 31, 14, 49, 0, 0, time.UTC), time.Date(2024, 5, 31, 15, 7, 0, 0, time.UTC))
	if n := h.count("ListMetrics"); n != 4 {
		t.Errorf("%d ListMetrics calls 20 minutes in, want 4 (listed again once)", n)
	}

	metrics := h.reg.API("aws", "metrics-all", "us-east-1", "CloudWatch", "GetMetricData")
	if metrics.Calls.Load() != 6 || metrics.Queries.Load() != 6*375 {
		t.Errorf("GetMetricData counters: %d calls, %d queries; want 6 and %d", metrics.Calls.Load(), metrics.Queries.Load(), 6*375)
	}
}

// Without start_time the first window is the last complete period before
// the delay; a window longer than the response limit allows is cut.
func TestWindows(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	src := h.source(loadService(t, "        metric_namespaces: [AWS/EC2]\n"))
	if err := src.build(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := src.stream
	ws := st.Windows(time.Date(2024, 5, 31, 10, 0, 30, 0, time.UTC), T)
	if len(ws) != 2 || !ws[0].Start.Equal(time.Date(2024, 5, 31, 10, 0, 0, 0, time.UTC)) ||
		ws[0].End.Sub(ws[0].Start) != 201*time.Minute || !ws[1].End.Equal(time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC)) {
		t.Errorf("windows = %+v", ws)
	}
	if ws := st.Windows(time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC), T); len(ws) != 0 {
		t.Errorf("caught up, yet windows %+v", ws)
	}

	// 300-second periods keep 63 days; start_time's default is one period
	// before the horizon.
	src5 := h.source(loadService(t, "        metric_namespaces: [AWS/EC2]\n        request_period_in_seconds: 300\n"))
	if err := src5.build(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := Retention(300 * time.Second); got != 63*24*time.Hour {
		t.Errorf("retention of 300 s: %v", got)
	}
	if got := src5.stream.CycleOffset(T); got != time.Date(2024, 5, 31, 14, 47, 0, 500_000_000, time.UTC).Sub(T) {
		t.Errorf("offset with 300 s periods at %v: %v", T, got)
	}
	for p, want := range map[time.Duration]time.Duration{10 * time.Second: 3 * time.Hour, time.Minute: 15 * 24 * time.Hour, 3600 * time.Second: 455 * 24 * time.Hour, 120 * time.Second: 15 * 24 * time.Hour} {
		if got := Retention(p); got != want {
			t.Errorf("retention of %v: %v, want %v", p, got, want)
		}
	}
}

func TestAppendNumber(t *testing.T) {
	for _, v := range []float64{0, 1, 12.5, -3.25, 1e-7, 123456789012345678901234.0, 0.1 + 0.2, math.MaxFloat64} {
		want, _ := json.Marshal(v)
		if got := string(appendNumber(nil, v)); got != string(want) {
			t.Errorf("appendNumber(%v) = %s, want %s", v, got, want)
		}
	}
	if got := string(appendNumber(nil, math.Inf(1))); got != "null" {
		t.Errorf("Inf = %s", got)
	}
}

// GetMetricData pages (NextToken) and throttling retried by the engine:
// every datapoint still arrives once with all its statistics.
func TestPagingAndThrottling(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	for i := range 120 {
		h.cw.AddMetrics(metric("AWS/EC2", i, T.Truncate(time.Minute).Add(-30*time.Minute), T))
	}
	h.cw.LimitPagePoints(700)
	h.cw.ThrottleEvery(4)
	src := h.source(loadService(t, `        metric_namespaces: [AWS/EC2]
        start_time: "2024-05-31T14:37:00Z"
`))
	s := h.run(src, time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC))
	seen := map[string]int{}
	for _, ev := range events(t, s) {
		n := 0
		fmt.Sscan(ev.Dimensions[0].Value, &n)
		ts, _ := time.Parse(time.RFC3339, ev.Timestamp)
		seen[ev.Dimensions[0].Value+"@"+ev.Timestamp]++
		if ev.Statistics["Sum"] != wantSum(n, ts) || ev.Statistics["SampleCount"] != 3 || len(ev.Statistics) != 5 {
			t.Fatalf("event %+v", ev)
		}
	}
	// 120 metrics × 5 statistics = 600 queries: two calls, each over 10
	// periods, in pages of 700 points.
	pages := 0
	for _, c := range h.cw.Calls() {
		if in, ok := c.Input.(*awstest.GetMetricDataRequest); ok && in.NextToken != "" && c.ErrCode == "" {
			pages++
		}
	}
	if len(seen) != 1200 || len(events(t, s)) != 1200 || pages == 0 || h.cw.Throttled() == 0 {
		t.Fatalf("%d events, %d distinct, want 1200; %d follow-up pages, %d throttled", len(events(t, s)), len(seen), pages, h.cw.Throttled())
	}
}

// A stop in the middle of a window (its events partly delivered, as at a
// kill) leaves the checkpoint before it; a new process reads that window
// again, whole, and nothing after it twice: no gap, and duplicates only
// from the window in flight.
func TestStopMidWindowRereadsOnlyThatWindow(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	for i := range 100 {
		h.cw.AddMetrics(metric("AWS/EC2", i, T.Truncate(time.Minute).Add(-30*time.Minute), T.Add(10*time.Minute)))
	}
	svc := loadService(t, `        metric_namespaces: [AWS/EC2]
        start_time: "2024-05-31T14:37:00Z"
`)
	// The first process delivers 300 of the window's 1,000 events, then
	// its output stalls and it is stopped.
	src := h.source(svc)
	held := 0
	stalled := &pipetest.Recorder{Hold: func(*pipeline.Event) bool { held++; return held > 300 }}
	stop := pipetest.Start(t, stalled, src)
	pipetest.WaitFor(t, 30*time.Second, "300 events delivered", func() bool { return stalled.Total() == 300 })
	stop()
	first := map[string]int{}
	for _, pl := range stalled.Payloads() {
		var e event
		_ = json.Unmarshal([]byte(pl), &e)
		first[e.Dimensions[0].Value+"@"+e.Timestamp]++
	}
	key := state.Key{Input: "aws", Service: "metrics-all", Region: "us-east-1", Sub: StreamName}
	if cp, ok, _ := pullengine.LoadCheckpoint(h.store, key); ok {
		t.Fatalf("checkpoint %v saved though the window was not delivered", cp.End)
	}

	// A new process, a minute later: the stalled window again, whole, and
	// the next one.
	h.set(T.Add(time.Minute))
	s := h.run(h.source(svc), time.Date(2024, 5, 31, 14, 48, 0, 0, time.UTC))
	second := map[string]int{}
	for _, ev := range events(t, s) {
		second[ev.Dimensions[0].Value+"@"+ev.Timestamp]++
	}
	dups := 0
	for k, n := range second {
		if n != 1 {
			t.Errorf("%s delivered %d times by the second process", k, n)
		}
		dups += first[k]
	}
	if len(second) != 1100 || dups != 300 {
		t.Errorf("second process: %d datapoints (want 1,100: [14:37, 14:48)), %d of them already delivered (want the 300 of the stalled window)", len(second), dups)
	}
}

// A ListMetrics refresh that keeps failing reuses the previous listing,
// with a WARN, rather than failing the window.
func TestFailedRefreshReusesListing(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	h.sdkAttempts = 1
	for i := range 50 {
		h.cw.AddMetrics(metric("AWS/EC2", i, T.Truncate(time.Minute).Add(-30*time.Minute), T.Add(30*time.Minute)))
	}
	src := h.source(loadService(t, `        metric_namespaces: [AWS/EC2]
        start_time: "2024-05-31T14:45:00Z"
`))
	h.run(src, time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC))
	// Past the refresh interval, every ListMetrics attempt of the window
	// (pullengine's six) is throttled.
	h.set(T.Add(20 * time.Minute))
	h.cw.ThrottleNext(pullengine.DefaultCallAttempts)
	s := h.run(src, time.Date(2024, 5, 31, 15, 7, 0, 0, time.UTC))
	if n := len(events(t, s)); n != 50*20 {
		t.Errorf("%d events after the failed refresh, want %d", n, 50*20)
	}
	if h.cw.Throttled() != pullengine.DefaultCallAttempts || !strings.Contains(h.log.String(), "metrics listing failed, reusing the previous one") {
		t.Errorf("%d throttled; log:\n%s", h.cw.Throttled(), h.log.String())
	}
}
