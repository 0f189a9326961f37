package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// cwNamespaces are the e2e's 1,200 metrics: 600 + 400 + 200, so that one
// namespace takes two ListMetrics pages. Custom/App's samples are
// published 90 s after their period ends, as AWS services often do.
var cwNamespaces = []struct {
	name    string
	metrics int
	late    time.Duration
}{{"AWS/EC2", 600, 0}, {"AWS/Lambda", 400, 0}, {"Custom/App", 200, 90 * time.Second}}

// cwValue is sample value of metric n at t: quarters, exact in binary.
func cwValue(n int, t time.Time) float64 { return float64(n) + float64(t.Unix()%3600)/4 }

// cwPoint is what a (metric, minute) must carry: three samples at :00,
// :20 and :40.
func cwPoint(n int, ts time.Time) map[string]float64 {
	a, b, c := cwValue(n, ts), cwValue(n, ts.Add(20*time.Second)), cwValue(n, ts.Add(40*time.Second))
	sum := a + b + c
	return map[string]float64{"Sum": sum, "SampleCount": 3, "Average": sum / 3, "Minimum": min(a, b, c), "Maximum": max(a, b, c)}
}

// metricValue reads the value of the /metrics sample whose line starts
// with prefix (name and labels).
func metricValue(body, prefix string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, prefix+" "); ok {
			var v float64
			if _, err := fmt.Sscan(rest, &v); err == nil {
				return v, true
			}
		}
	}
	return 0, false
}

const cwLabels = `{input="aws",region="us-east-1",service="metrics-all",stream="metrics"}`

// waitCommitted waits until the collector listening on addr has committed
// its windows up to at least end, with none pending, and returns the
// checkpoint.
func waitCommitted(t *testing.T, addr string, end time.Time, d time.Duration) time.Time {
	t.Helper()
	var cp float64
	eventually(t, d, fmt.Sprintf("the checkpoint at %v", end.Format(time.TimeOnly)), func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return false // not listening yet
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return false
		}
		body := string(b)
		var ok1, ok2 bool
		var pending float64
		cp, ok1 = metricValue(body, "devo_collector_pull_checkpoint_seconds"+cwLabels)
		pending, ok2 = metricValue(body, "devo_collector_pull_windows_pending"+cwLabels)
		return ok1 && ok2 && pending == 0 && int64(cp) >= end.Unix()
	})
	return time.Unix(int64(cp), 0).UTC()
}

// The metrics contract through the binary and the Devo output
// into rsyslog, on the CloudWatch fake (Smithy RPC v2 CBOR, the SDK's
// default), with a 60 s period and the default two-minute publication
// delay: 1,200 metrics in three namespaces, a 10-minute backfill, one
// aligned cycle, kill -9, a 90 s pause and a restart that catches up.
// Every datapoint of every window arrives exactly once with its five
// statistics; each window costs ⌈6000 / 500⌉ = 12 GetMetricData calls;
// each process walks ListMetrics once (4 pages) over several cycles; the
// windows are whole minutes, contiguous from start_time, never repeated.
// About 2–2.5 minutes, most of it the pause and the wait for a period.
func TestCloudWatchMetricsBackfillKillPauseRestart(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	cw := awstest.NewCloudWatch(t)

	// Cycles start at each minute + 0.5 s (period boundary + the 2 min
	// delay). Starting the first process just before one would run its
	// first two cycles back to back; start clear of it.
	if now := time.Now(); now.Second() >= 45 {
		time.Sleep(now.Truncate(time.Minute).Add(time.Minute + time.Second).Sub(now))
	}
	now := time.Now().UTC()
	base := now.Truncate(time.Minute).Add(-20 * time.Minute)
	for _, ns := range cwNamespaces {
		ms := make([]awstest.Metric, 0, ns.metrics)
		for n := range ns.metrics {
			m := awstest.Metric{Namespace: ns.name, MetricName: "Load", Dimensions: []awstest.Dimension{{Name: "Id", Value: fmt.Sprint(n)}}}
			for at := base; at.Before(now.Add(8 * time.Minute)); at = at.Add(20 * time.Second) {
				s := awstest.Sample{Time: at, Value: cwValue(n, at)}
				if ns.late > 0 {
					s.Published = at.Truncate(time.Minute).Add(time.Minute + ns.late)
				}
				m.Samples = append(m.Samples, s)
			}
			ms = append(ms, m)
		}
		cw.AddMetrics(ms...)
	}
	// Ten whole periods before the first horizon (now − 2 min).
	start := now.Add(-2 * time.Minute).Truncate(time.Minute).Add(-10 * time.Minute)
	config := func(metricsAddr string) string {
		return e.writeConfig("  metrics_listen: "+metricsAddr, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      ack_settle: 200ms\n"), fmt.Sprintf(`
      metrics-all:
        types: [metrics]
        metric_namespaces: [AWS/EC2, AWS/Lambda, Custom/App]
        start_time: %q
        endpoints: {cloudwatch: %q}
`, start.Format("2006-01-02T15:04:05Z"), cw.URL))
	}

	// 1. The backfill and one aligned cycle, then kill -9 with nothing
	// pending.
	addr1 := freeAddr(t)
	p1 := e.start(config(addr1))
	first := waitCommitted(t, addr1, now.Add(-2*time.Minute).Truncate(time.Minute), 60*time.Second)
	cp1 := waitCommitted(t, addr1, first.Add(time.Minute), 90*time.Second)
	if err := p1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.wait(10 * time.Second)
	log1 := p1.log()
	listAfterP1 := cw.Count("ListMetrics")
	callsP1 := len(cw.Calls())

	// 2. The pause, then the restart, which catches up what the pause
	// missed in one window.
	time.Sleep(90 * time.Second)
	addr2 := freeAddr(t)
	restart := time.Now()
	p2 := e.start(config(addr2))
	waitCommitted(t, addr2, restart.UTC().Add(-2*time.Minute).Truncate(time.Minute), 60*time.Second)
	metrics2 := httpGet(t, "http://"+addr2+"/metrics", 200)
	terminate(t, p2)
	log2 := p2.log()
	final := metricsCheckpoint(t, e)

	// Every datapoint of [start, final) exactly once, with its values.
	periods := int(final.Sub(start) / time.Minute)
	got := map[string]int{}
	bad := 0
	for _, m := range dataMessages(rs.Messages()) {
		var ev struct {
			Namespace  string              `json:"namespace"`
			Dimensions []awstest.Dimension `json:"dimensions"`
			Period     int                 `json:"period"`
			Timestamp  time.Time           `json:"timestamp"`
			Statistics map[string]float64  `json:"statistics"`
			Account    string              `json:"accountId"`
			Pulling    string              `json:"@devo_pulling_id"`
		}
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			t.Fatalf("payload %.200q: %v", m.Payload(), err)
		}
		got[ev.Namespace+"/"+ev.Dimensions[0].Value+"@"+ev.Timestamp.Format(time.TimeOnly)]++
		var n int
		fmt.Sscan(ev.Dimensions[0].Value, &n)
		want := cwPoint(n, ev.Timestamp)
		ok := m.Tag == "cloud.aws.cloudwatch.metrics."+trailAccount+".us-east-1.1" && ev.Period == 60 && ev.Pulling != "" &&
			ev.Account == trailAccount && len(ev.Statistics) == 5 && !ev.Timestamp.Before(start) && ev.Timestamp.Before(final)
		for k, v := range want {
			if math.Abs(ev.Statistics[k]-v) > 1e-9 {
				ok = false
			}
		}
		if !ok && bad < 5 {
			bad++
			t.Errorf("event at %s: %.400s; want statistics %v", m.Tag, m.Payload(), want)
		}
	}
	dups, missing := 0, 0
	for _, ns := range cwNamespaces {
		for n := range ns.metrics {
			for ts := start; ts.Before(final); ts = ts.Add(time.Minute) {
				switch c := got[ns.name+"/"+fmt.Sprint(n)+"@"+ts.Format(time.TimeOnly)]; {
				case c == 0:
					missing++
				case c > 1:
					dups += c - 1
				}
			}
		}
	}
	t.Logf("%d periods from %v to %v (checkpoint at the kill %v): %d events at rsyslog, %d missing, %d duplicated",
		periods, start.Format(time.TimeOnly), final.Format(time.TimeOnly), cp1.Format(time.TimeOnly), len(got), missing, dups)
	if missing > 0 || dups > 0 || len(got) != 1200*periods {
		t.Errorf("%d missing and %d duplicated datapoints, %d distinct of %d", missing, dups, len(got), 1200*periods)
	}

	// Windows: whole minutes, contiguous from start_time to the final
	// checkpoint, none asked twice, 12 calls of ≤ 500 queries each.
	type window struct{ start, end time.Time }
	var order []window
	perWindow := map[window]int{}
	for _, c := range cw.Calls() {
		in, ok := c.Input.(*awstest.GetMetricDataRequest)
		if !ok {
			continue
		}
		w := window{in.StartTime.UTC(), in.EndTime.UTC()}
		if perWindow[w] == 0 {
			order = append(order, w)
		}
		perWindow[w]++
		if len(in.MetricDataQueries) > 500 || in.NextToken != "" {
			t.Errorf("GetMetricData with %d queries, token %q", len(in.MetricDataQueries), in.NextToken)
		}
	}
	at := start
	for _, w := range order {
		if !w.start.Equal(at) || w.start.Second() != 0 || w.end.Second() != 0 || !w.end.After(w.start) {
			t.Errorf("window %v – %v does not follow %v on whole minutes (all: %v)", w.start, w.end, at, order)
		}
		if perWindow[w] != 12 {
			t.Errorf("window %v – %v: %d GetMetricData calls, want ⌈6000/500⌉ = 12", w.start, w.end, perWindow[w])
		}
		at = w.end
	}
	if !at.Equal(final) || len(order) < 3 {
		t.Errorf("windows end at %v, want %v, in at least 3 cycles: %v", at, final, order)
	}
	spans := make([]string, len(order))
	for i, w := range order {
		spans[i] = w.start.Format("15:04") + "–" + w.end.Format("15:04")
	}
	t.Logf("windows: %s, %d GetMetricData calls each", strings.Join(spans, ", "), perWindow[order[0]])

	// ListMetrics: walked once per process (600 + 400 + 200 metrics = 4
	// pages), though the first process ran two cycles.
	if listAfterP1 != 4 || cw.Count("ListMetrics") != 8 {
		t.Errorf("ListMetrics calls: %d by the first process, %d in all; want 4 and 8", listAfterP1, cw.Count("ListMetrics"))
	}
	if n := strings.Count(log1, "Data collection completed."); n < 2 {
		t.Errorf("the first process completed %d cycles, want 2 or more", n)
	}

	// The product's lines, aligned windows in them, the offset.
	for _, want := range []string{
		fmt.Sprintf(`Time range: \"%s\" > \"%s\"`, start.Format("2006-01-02T15:04:05Z"), first.Format("2006-01-02T15:04:05Z")),
		fmt.Sprintf(`Time range: \"%s\" > \"%s\"`, first.Format("2006-01-02T15:04:05Z"), first.Add(time.Minute).Format("2006-01-02T15:04:05Z")),
		`Starting a new pulling from \"['AWS/EC2', 'AWS/Lambda', 'Custom/App']\" namespaces at`,
		fmt.Sprintf(`generated %d message(s), tag used: \"cloud.aws.cloudwatch.metrics.%s.us-east-1.1\"`, 1200*int(first.Sub(start)/time.Minute), trailAccount),
		"Applied an offset to wait, retrieval_offset: -",
	} {
		if !strings.Contains(log1, want) {
			t.Errorf("first process log lacks %s", want)
		}
	}
	// Its first cycle starts at the checkpoint saved at the kill.
	if want := fmt.Sprintf(`Time range: \"%s\" > \"`, cp1.Format("2006-01-02T15:04:05Z")); !strings.Contains(log2, want) {
		t.Errorf("restarted process log lacks %s", want)
	}

	// /metrics of the second process: what its cycle cost.
	windows2 := 0
	for _, c := range cw.Calls()[callsP1:] {
		if _, ok := c.Input.(*awstest.GetMetricDataRequest); ok {
			windows2++
		}
	}
	calls, _ := metricValue(metrics2, `devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="GetMetricData",outcome="ok",region="us-east-1",service="metrics-all"}`)
	queries, _ := metricValue(metrics2, `devo_collector_api_metric_queries_total{api="cloudwatch",input="aws",operation="GetMetricData",region="us-east-1",service="metrics-all"}`)
	lists, _ := metricValue(metrics2, `devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="ListMetrics",outcome="ok",region="us-east-1",service="metrics-all"}`)
	t.Logf("second process: %v GetMetricData calls carrying %v queries, %v ListMetrics calls", calls, queries, lists)
	if int(calls) != windows2 || queries != 500*calls || lists != 4 {
		t.Errorf("/metrics: %v GetMetricData calls (fake saw %d), %v queries, %v ListMetrics calls", calls, windows2, queries, lists)
	}
	if strings.Contains(log1+log2, "panic:") {
		t.Errorf("panic in the log")
	}
}

// metricsCheckpoint reads the metrics-all checkpoint of a collector that
// is not running.
func metricsCheckpoint(t *testing.T, e *env) time.Time {
	t.Helper()
	st, err := state.Open(filepath.Join(e.dir, "state"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cp, ok, err := pullengine.LoadCheckpoint(st, state.Key{Input: "aws", Service: "metrics-all", Region: "us-east-1", Sub: "metrics"})
	if err != nil || !ok {
		t.Fatalf("no checkpoint saved: %v", err)
	}
	return cp.End.UTC()
}
