package cwlogs

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// loadService loads the cwl_1 service with body (its YAML mapping,
// indented by 8 spaces).
func loadService(t *testing.T, body string) *config.Service {
	t.Helper()
	return svcconfig.Load(t, "cwl_1", body, "")
}

type payload struct {
	LogStreamName string `json:"logStreamName"`
	Timestamp     int64  `json:"timestamp"`
	Message       string `json:"message"`
	IngestionTime int64  `json:"ingestionTime"`
	EventID       string `json:"eventId"`
	LogGroupName  string `json:"logGroupName"`
	Pulling       string `json:"@devo_pulling_id"`
}

// ids counts deliveries per eventId, checking each payload and tag.
func ids(t *testing.T, rec *pipetest.Recorder) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ev := range rec.Delivered() {
		var p payload
		if err := json.Unmarshal([]byte(ev.Payload), &p); err != nil || p.Pulling == "" || p.LogGroupName == "" || p.EventID == "" {
			t.Fatalf("payload %q: %v", ev.Payload, err)
		}
		if !strings.HasPrefix(ev.Tag, "cloud.aws.cloudwatch.logs.") || !strings.HasSuffix(ev.Tag, ".us-east-1.1") {
			t.Fatalf("tag %q", ev.Tag)
		}
		out[p.EventID]++
	}
	return out
}

type harness struct {
	t       *testing.T
	account string
	period  time.Duration // the cycle; zero: 300 ms
	logs    *awstest.Logs
	store   state.Store
	leases  lease.Holder // nil: lease.Solo
	log     syncbuf.Buffer
}

func (h *harness) source(svc *config.Service, rps float64) *Source {
	h.t.Helper()
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			// The limiter is shared process-wide per account: each test
			// has its own account.
			AccountID: func(context.Context) (string, error) { return h.account, nil },
			Store:     h.store,
			Leases:    h.leases,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
			Registry:  stats.NewRegistry(),
		},
		NewClient: func(opt func(*cloudwatchlogs.Options)) Client {
			return cloudwatchlogs.New(cloudwatchlogs.Options{
				Region: "us-east-1", BaseEndpoint: aws.String(h.logs.URL),
				Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "s", ""),
			}, opt)
		},
		RequestsPerSecond: rps,
		Overlap:           4 * time.Second,
		Safety:            300 * time.Millisecond,
		GroupRefresh:      300 * time.Millisecond,
		Tune: func(c *pullengine.Config) {
			c.Period = 300 * time.Millisecond
			if h.period > 0 {
				c.Period = h.period
			}
			c.RetryBase, c.RetryMax = time.Millisecond, 10*time.Millisecond
		},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return src
}

// start runs src until the returned stop is called.
func (h *harness) start(src *Source) (*pipetest.Recorder, func()) {
	s := pipetest.NewRecorder()
	return s, pipetest.Start(h.t, s, src)
}

// '/' over three groups (one empty, one created while running), with the
// optimized first retrieval: streams idle since before start_time are not
// asked for, a stream without lastEventTimestamp is; events written live,
// one in ten ingested 2 s late, all arrive exactly once; nothing before
// start_time arrives; no second holds more than requests_per_second
// requests; a restart resumes from each group's checkpoint.
func TestLateEventsOnceOptimizedFirstRunAndRestart(t *testing.T) {
	now := time.Now().UTC()
	start := now.Add(-3 * time.Hour).Truncate(time.Second)
	h := &harness{t: t, account: "123456789012", logs: awstest.NewLogs(t), store: state.NewMemory()}
	h.logs.LimitRate(20, time.Second)
	h.logs.SetEmptyPages(1)
	svc := loadService(t, fmt.Sprintf("        log_group: /\n        start_time: %q\n        use_first_optimized_retrieval: true\n", start.Format(time.RFC3339)))

	want := map[string]bool{}
	var wmu sync.Mutex
	add := func(group, stream string, at, ingested time.Time, keep bool) {
		id := fmt.Sprintf("%s|%s|%d", group, stream, at.UnixNano())
		h.logs.AddEvents(group, awstest.LogEvent{Stream: stream, Timestamp: at, IngestionTime: ingested, EventID: id, Message: "m <&> " + id})
		if keep {
			wmu.Lock()
			want[id] = true
			wmu.Unlock()
		}
	}
	h.logs.AddGroup("/empty")
	// /app: an idle stream (only before start_time), a stream whose
	// lastEventTimestamp is not known yet, two busy ones.
	for i := range 20 {
		add("/app", "idle", start.Add(-time.Duration(i+1)*time.Minute), time.Time{}, false)
	}
	h.logs.AddStream("/app", awstest.LogStream{Name: "hidden", HideLastEventTimestamp: true})
	for i := range 200 {
		at := start.Add(time.Duration(i) * 50 * time.Second)
		add("/app", "hidden", at, time.Time{}, true)
		add("/app", "busy-1", at.Add(time.Millisecond), time.Time{}, true)
		add("/app", "busy-2", start.Add(-time.Duration(i+1)*time.Second), time.Time{}, false) // before start_time
		add("/app", "busy-2", at.Add(2*time.Millisecond), time.Time{}, true)
	}

	src := h.source(svc, 20)
	s, stop := h.start(src)
	// Live writing for 3 s, every tenth event ingested 2 s late.
	for i := range 60 {
		at := time.Now().Truncate(time.Millisecond)
		ing := time.Time{}
		if i%10 == 0 {
			ing = at.Add(2 * time.Second)
		}
		add("/app", "busy-1", at, ing, true)
		if i == 20 {
			add("/new", "first", at, time.Time{}, true) // a group created while running
		}
		time.Sleep(50 * time.Millisecond)
	}
	pipetest.WaitFor(t, 30*time.Second, "every event", func() bool {
		got := ids(t, s)
		for id := range want {
			if got[id] == 0 {
				return false
			}
		}
		return true
	})
	// Two more overlaps' worth of cycles, so a repeat would show.
	time.Sleep(5 * time.Second)
	stop()
	got := ids(t, s)
	for id, n := range got {
		if !want[id] {
			t.Errorf("%s delivered (before start_time, or unknown)", id)
		} else if n != 1 {
			t.Errorf("%s delivered %d times", id, n)
		}
	}

	// The optimized first retrieval: the stream listing, then batches that
	// name the active streams only.
	sawList, sawBatch := false, false
	for _, c := range h.logs.Calls() {
		switch in := c.Input.(type) {
		case *awstest.DescribeLogStreamsRequest:
			if in.OrderBy == "LastEventTime" && in.Descending && in.LogGroupName == "/app" {
				sawList = true
			}
		case *awstest.FilterLogEventsRequest:
			if len(in.LogStreamNames) > 0 && in.LogGroupName == "/app" {
				sawBatch = true
				if slices.Contains(in.LogStreamNames, "idle") || !slices.Contains(in.LogStreamNames, "hidden") {
					t.Errorf("first retrieval streams %v: want hidden, not idle", in.LogStreamNames)
				}
			}
		}
	}
	if !sawList || !sawBatch {
		t.Errorf("optimized first retrieval not used: listed %v, batch %v", sawList, sawBatch)
	}
	for _, line := range []string{optimizedLine, `Starting a new pulling from \"/app\" at \"`, `Starting a new pulling from \"/new\" at`} {
		if !strings.Contains(h.log.String(), line) {
			t.Errorf("log lacks %q", line)
		}
	}
	checkRate(t, h.logs, 20)

	// A restart (a new Source on the same store) resumes each group from
	// its checkpoint: its first FilterLogEvents of /app starts within the
	// overlap of the checkpoint, not at start_time.
	cp, ok, err := pullengine.LoadCheckpoint(h.store, state.Key{Input: "aws", Service: "cwl_1", Region: "us-east-1", Sub: "/app"})
	if err != nil || !ok {
		t.Fatalf("no /app checkpoint: %v", err)
	}
	before := len(h.logs.Calls())
	add("/app", "busy-1", time.Now().Truncate(time.Millisecond), time.Time{}, true)
	h2 := &harness{t: t, account: h.account, logs: h.logs, store: h.store}
	s2, stop2 := h2.start(h2.source(svc, 20))
	pipetest.WaitFor(t, 10*time.Second, "the event written before the restart", func() bool { return len(ids(t, s2)) >= 1 })
	stop2()
	for _, c := range h.logs.Calls()[before:] {
		if in, ok := c.Input.(*awstest.FilterLogEventsRequest); ok && in.LogGroupName == "/app" {
			if from := time.UnixMilli(*in.StartTime); from.Before(cp.End.Add(-5 * time.Second)) {
				t.Errorf("after the restart /app is read from %v, checkpoint %v", from, cp.End)
			}
			if len(in.LogStreamNames) > 0 {
				t.Errorf("a later run asked for streams by name")
			}
			break
		}
	}
	for id, n := range ids(t, s2) {
		if got[id] > 0 || n > 1 {
			t.Errorf("%s delivered again after the restart", id)
		}
	}
}

// checkRate asserts from the fake's arrival times that no second held more
// than n requests, and that the fake throttled none.
func checkRate(t *testing.T, l *awstest.Logs, n int) {
	t.Helper()
	calls := l.Calls()
	worst := 0
	for i := range calls {
		k := 0
		for j := i; j >= 0 && calls[i].At.Sub(calls[j].At) < time.Second; j-- {
			k++
		}
		worst = max(worst, k)
	}
	if worst > n {
		t.Errorf("%d requests within one second, want at most %d", worst, n)
	}
	if l.Throttled() != 0 {
		t.Errorf("%d requests throttled", l.Throttled())
	}
	t.Logf("%d requests, at most %d in any second", len(calls), worst)
}

func TestQuota(t *testing.T) {
	for _, c := range []struct {
		rps float64
		n   int
		per time.Duration
	}{{5, 5, time.Second}, {2.5, 2, time.Second}, {0.5, 1, 2 * time.Second}, {0, 1, time.Second}} {
		if n, per := Quota(c.rps); n != c.n || per != c.per {
			t.Errorf("Quota(%g) = %d per %v, want %d per %v", c.rps, n, per, c.n, c.per)
		}
	}
}

// Two services of one account and region, over 12 groups (DescribeLogGroups
// in pages of 5) between them, share one limiter: together they
// never send more than requests_per_second requests in a second.
func TestServicesShareTheLimiter(t *testing.T) {
	l := awstest.NewLogs(t)
	l.LimitRate(5, time.Second)
	for i := range 12 {
		g := fmt.Sprintf("/a/%02d", i)
		if i%2 == 1 {
			g = fmt.Sprintf("/b/%02d", i)
		}
		l.AddEvents(g, awstest.LogEvent{Stream: "s", Timestamp: time.Now().Add(-time.Minute), Message: g})
	}
	start := time.Now().UTC().Add(-time.Hour).Format(time.RFC3339)
	var sinks []*pipetest.Recorder
	var stops []func()
	for _, lg := range []string{"/", "/b/*"} {
		// One cycle each in the test's time.
		h := &harness{t: t, account: "210987654321", logs: l, store: state.NewMemory(), period: time.Minute}
		svc := loadService(t, fmt.Sprintf("        log_group: %q\n        start_time: %q\n", lg, start))
		src := h.source(svc, 5)
		src.describePage = 5
		s, stop := h.start(src)
		sinks, stops = append(sinks, s), append(stops, stop)
	}
	pipetest.WaitFor(t, 60*time.Second, "every group read by both services", func() bool {
		return len(ids(t, sinks[0])) == 12 && len(ids(t, sinks[1])) == 6
	})
	for _, stop := range stops {
		stop()
	}
	pages := 0
	for _, c := range l.Calls() {
		if in, ok := c.Input.(*awstest.DescribeLogGroupsRequest); ok && in.NextToken != "" {
			pages++
		}
	}
	if pages == 0 {
		t.Errorf("DescribeLogGroups never asked for a second page")
	}
	checkRate(t, l, 5)
}

// A start_time in the future: nothing is asked for before it, and the
// group does not fail (AWS refuses a startTime after the endTime).
func TestFutureStartTime(t *testing.T) {
	h := &harness{t: t, account: "333333333333", logs: awstest.NewLogs(t), store: state.NewMemory()}
	h.logs.AddEvents("/g", awstest.LogEvent{Stream: "s", Timestamp: time.Now().Add(-time.Minute), Message: "old"})
	svc := loadService(t, fmt.Sprintf("        log_group: /g\n        start_time: %q\n", time.Now().UTC().Add(time.Hour).Format(time.RFC3339)))
	s, stop := h.start(h.source(svc, 20))
	time.Sleep(1500 * time.Millisecond)
	stop()
	if n := len(ids(t, s)); n != 0 {
		t.Errorf("%d events before start_time delivered", n)
	}
	for _, c := range h.logs.Calls() {
		if c.ErrCode != "" {
			t.Errorf("%s answered %s", c.Op, c.ErrCode)
		}
	}
	if strings.Contains(h.log.String(), "log group pull stopped") {
		t.Errorf("the group failed:\n%s", h.log.String())
	}
}

// A group deleted while it is followed stops with an ERROR naming it; the
// other groups go on, and the next listing no longer has it.
func TestDeletedGroupDoesNotStopTheOthers(t *testing.T) {
	h := &harness{t: t, account: "444444444444", logs: awstest.NewLogs(t), store: state.NewMemory()}
	h.logs.AddGroup("/keep", "/gone")
	svc := loadService(t, fmt.Sprintf("        log_group: /\n        start_time: %q\n", time.Now().UTC().Add(-time.Minute).Format(time.RFC3339)))
	s, stop := h.start(h.source(svc, 20))
	// Delete the group only once it is followed: deleted before its first
	// read, it is simply not listed again, and nothing has to stop.
	pipetest.WaitFor(t, 10*time.Second, "a first read of /gone", func() bool {
		for _, c := range h.logs.Calls() {
			if in, ok := c.Input.(*awstest.FilterLogEventsRequest); ok && in.LogGroupName == "/gone" {
				return true
			}
		}
		return false
	})
	h.logs.DeleteGroup("/gone")
	pipetest.WaitFor(t, 10*time.Second, "the deleted group reported", func() bool {
		return strings.Contains(h.log.String(), "log group pull stopped")
	})
	h.logs.AddEvents("/keep", awstest.LogEvent{Stream: "s", Timestamp: time.Now(), EventID: "after", Message: "after"})
	pipetest.WaitFor(t, 10*time.Second, "the other group's event", func() bool { return ids(t, s)["after"] == 1 })
	stop()
	if !strings.Contains(h.log.String(), "log_group=/gone") || !strings.Contains(h.log.String(), "ResourceNotFoundException") {
		t.Errorf("the ERROR does not name the group and the error:\n%s", h.log.String())
	}
}
