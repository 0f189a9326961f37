package stats

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

func startServer(t *testing.T, reg *Registry) (*Server, string) {
	t.Helper()
	s := NewServer(reg, nil)
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return s, "http://" + s.Addr().String()
}

func get(t *testing.T, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestMetricsScrape(t *testing.T) {
	reg := NewRegistry()
	u := reg.Unit("aws", "audit-events-all", "us-east-2")
	u.Received.Add(124)
	u.Generated.Add(113)
	u.Dropped.Add(8)
	u.Duplicated.Add(1)
	u.Delivered.Add(110)
	u.Failed.Add(3)
	if reg.Unit("aws", "audit-events-all", "us-east-2") != u {
		t.Fatal("Unit with the same labels returned a new counter set")
	}
	reg.Unit("aws", "audit-events-all", "eu-west-1").Received.Add(7)
	o := reg.Output("devo-eu", func() (int64, int64) { return 42, 4096 })
	o.Delivered.Add(500)
	o.Failed.Add(2)
	reg.Output("console", nil)
	reg.Health().Set("output/devo-eu", Degraded, "reconnecting")

	_, base := startServer(t, reg)
	code, body, hdr := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics = %d\n%s", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type = %q", ct)
	}
	for _, want := range []string{
		`devo_collector_events_received_total{input="aws",region="us-east-2",service="audit-events-all"} 124`,
		`devo_collector_events_generated_total{input="aws",region="us-east-2",service="audit-events-all"} 113`,
		`devo_collector_events_dropped_total{input="aws",region="us-east-2",service="audit-events-all"} 8`,
		`devo_collector_events_duplicated_total{input="aws",region="us-east-2",service="audit-events-all"} 1`,
		`devo_collector_events_delivered_total{input="aws",region="us-east-2",service="audit-events-all"} 110`,
		`devo_collector_events_failed_total{input="aws",region="us-east-2",service="audit-events-all"} 3`,
		`devo_collector_events_received_total{input="aws",region="eu-west-1",service="audit-events-all"} 7`,
		`# TYPE devo_collector_events_received_total counter`,
		`devo_collector_output_events_delivered_total{output="devo-eu"} 500`,
		`devo_collector_output_events_failed_total{output="devo-eu"} 2`,
		`devo_collector_output_queue_messages{output="devo-eu"} 42`,
		`devo_collector_output_queue_bytes{output="devo-eu"} 4096`,
		`# TYPE devo_collector_output_queue_messages gauge`,
		`devo_collector_output_queue_messages{output="console"} 0`,
		`devo_collector_health_state{component="output/devo-eu",state="degraded"} 1`,
		`devo_collector_health_state{component="output/devo-eu",state="running"} 0`,
		`devo_collector_health_overall{state="degraded"} 1`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !hasLine(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}

	// Counters are read at scrape time.
	u.Received.Add(1)
	_, body, _ = get(t, base+"/metrics")
	if !strings.Contains(body, `devo_collector_events_received_total{input="aws",region="us-east-2",service="audit-events-all"} 125`+"\n") {
		t.Error("second scrape does not show the new count")
	}
}

// hasLine reports whether body has the line want, or, when want ends in a
// space, a line starting with it (a metric whose value varies).
func hasLine(body, want string) bool {
	for _, line := range strings.Split(body, "\n") {
		if line == want || (strings.HasSuffix(want, " ") && strings.HasPrefix(line, want)) {
			return true
		}
	}
	return false
}

func TestOutputDepthReplaced(t *testing.T) {
	reg := NewRegistry()
	o := reg.Output("devo", func() (int64, int64) { return 1, 10 })
	if reg.Output("devo", nil) != o {
		t.Fatal("Output with the same name returned a new counter set")
	}
	if m, b := o.Depth(); m != 1 || b != 10 {
		t.Fatalf("a nil depth replaced the existing one: %d %d", m, b)
	}
	reg.Output("devo", func() (int64, int64) { return 2, 20 })
	if m, b := o.Depth(); m != 2 || b != 20 {
		t.Fatalf("depth = %d %d, want 2 20", m, b)
	}
}

func TestHealthz(t *testing.T) {
	reg := NewRegistry()
	_, base := startServer(t, reg)

	check := func(wantCode int, wantStatus State) Report {
		t.Helper()
		code, body, hdr := get(t, base+"/healthz")
		if code != wantCode {
			t.Fatalf("GET /healthz = %d, want %d\n%s", code, wantCode, body)
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q", ct)
		}
		var rep Report
		if err := json.Unmarshal([]byte(body), &rep); err != nil {
			t.Fatalf("body %q: %v", body, err)
		}
		if rep.Status != wantStatus {
			t.Fatalf("status = %v, want %v (%s)", rep.Status, wantStatus, body)
		}
		return rep
	}

	check(http.StatusOK, Starting)
	h := reg.Health()
	h.Set("aws/audit-events-all/us-east-2", Running, "")
	h.Set("output/devo", Starting, "connecting")
	check(http.StatusOK, Starting)
	h.Set("output/devo", Running, "")
	check(http.StatusOK, Running)
	h.Set("credentials/aws", Degraded, "ExpiredToken")
	rep := check(http.StatusOK, Degraded)
	if c := rep.Components["credentials/aws"]; c.State != Degraded || c.Reason != "ExpiredToken" || c.Since.IsZero() {
		t.Errorf("component = %+v", c)
	}
	h.Set("output/devo", Failed, "client certificate rejected")
	rep = check(http.StatusServiceUnavailable, Failed)
	if len(rep.Components) != 3 || rep.Components["output/devo"].Reason != "client certificate rejected" {
		t.Errorf("components = %+v", rep.Components)
	}
	h.Remove("output/devo")
	check(http.StatusOK, Degraded)
}

func TestHealthSetKeepsSince(t *testing.T) {
	h := NewHealth()
	clock := time.Date(2024, 5, 31, 13, 12, 8, 0, time.UTC)
	h.now = func() time.Time { return clock }
	h.Set("x", Degraded, "first")
	clock = clock.Add(time.Minute)
	h.Set("x", Degraded, "second")
	c := h.Report().Components["x"]
	if !c.Since.Equal(time.Date(2024, 5, 31, 13, 12, 8, 0, time.UTC)) || c.Reason != "second" {
		t.Fatalf("same state again: %+v", c)
	}
	h.Set("x", Running, "")
	if c := h.Report().Components["x"]; !c.Since.Equal(clock) {
		t.Fatalf("new state kept the old since: %+v", c)
	}
}

func TestStateText(t *testing.T) {
	for _, s := range []State{Starting, Running, Degraded, Failed} {
		b, _ := s.MarshalText()
		var back State
		if err := back.UnmarshalText(b); err != nil || back != s {
			t.Errorf("round trip of %v: %v, %v", s, back, err)
		}
	}
	var s State
	if err := s.UnmarshalText([]byte("sleepy")); err == nil {
		t.Error("unknown state name: want an error")
	}
}

func TestServerLifecycle(t *testing.T) {
	reg := NewRegistry()
	s := NewServer(reg, nil)
	if err := s.Start(""); err != nil || s.Addr() != nil {
		t.Fatalf("Start(\"\") = %v, addr %v; want disabled", err, s.Addr())
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown of a server never started: %v", err)
	}

	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	if err := s.Start("127.0.0.1:0"); err == nil {
		t.Error("second Start: want an error")
	}
	// The port is taken: another server cannot bind it.
	other := NewServer(reg, nil)
	if err := other.Start(addr); err == nil || !strings.Contains(err.Error(), addr) {
		other.Shutdown(context.Background())
		t.Errorf("Start on a busy port = %v, want an error naming %s", err, addr)
	}
	if code, _, _ := get(t, "http://"+addr+"/healthz"); code != http.StatusOK {
		t.Fatalf("healthz = %d", code)
	}
	if code, _, _ := get(t, "http://"+addr+"/nothing"); code != http.StatusNotFound {
		t.Errorf("unknown path = %d, want 404", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("listener still accepts after Shutdown")
	}
	// Stopped servers can start again (a restarted collector in tests).
	if err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// API counters: calls per operation, and metric queries once a request
// carried some.
func TestMetricsScrapeAPICounters(t *testing.T) {
	reg := NewRegistry()
	gmd := reg.API("aws", "metrics-all", "us-east-1", "CloudWatch", "GetMetricData")
	gmd.Calls.Add(12)
	gmd.Queries.Add(6000)
	gmd.Throttled.Add(2)
	gmd.Errors.Add(1)
	reg.API("aws", "metrics-all", "us-east-1", "CloudWatch", "ListMetrics").Calls.Add(3)
	// The SDK-wide counter sees the same requests: not counted twice.
	reg.APICall("cloudwatch", "GetMetricData", CallOK)
	reg.APICall("sqs", "ReceiveMessage", CallOK)
	_, base := startServer(t, reg)
	_, body, _ := get(t, base+"/metrics")
	for _, want := range []string{
		`devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="GetMetricData",outcome="ok",region="us-east-1",service="metrics-all"} 9`,
		`devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="GetMetricData",outcome="throttled",region="us-east-1",service="metrics-all"} 2`,
		`devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="GetMetricData",outcome="error",region="us-east-1",service="metrics-all"} 1`,
		`devo_collector_api_metric_queries_total{api="cloudwatch",input="aws",operation="GetMetricData",region="us-east-1",service="metrics-all"} 6000`,
		`devo_collector_aws_api_calls_total{api="cloudwatch",input="aws",operation="ListMetrics",outcome="ok",region="us-east-1",service="metrics-all"} 3`,
		`devo_collector_aws_api_calls_total{api="sqs",input="",operation="ReceiveMessage",outcome="ok",region="",service=""} 1`,
	} {
		if !hasLine(body, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if strings.Count(body, `devo_collector_aws_api_calls_total{api="cloudwatch"`) != 6 || strings.Contains(body, "devo_collector_api_calls_total") {
		t.Errorf("the puller's calls are not exactly its six unit series:\n%s", body)
	}
	if strings.Contains(body, `devo_collector_api_metric_queries_total{api="cloudwatch",input="aws",operation="ListMetrics"`) {
		t.Errorf("ListMetrics carries no metric queries, yet has the counter")
	}
}

// The metrics added for the dashboard: unit restarts from the first
// scrape, SQS backlog gauges once measured, spool and capacity gauges of a
// network output, AWS API calls by outcome.
func TestDashboardMetrics(t *testing.T) {
	reg := NewRegistry()
	u := reg.Unit("aws", "cisco-umbrella", "eu-west-1")
	reg.Unit("aws", "ec2", "eu-west-1")
	u.Restarts.Add(2)
	u.SetQueue(7, 3)
	o := reg.Output("devo", nil)
	o.CapacityMessages.Store(10000)
	o.SetSpool(func() (int64, int64) { return 4, 400 })
	reg.APICall("sqs", "ReceiveMessage", CallOK)
	reg.APICall("sqs", "ReceiveMessage", CallOK)
	reg.APICall("s3", "GetObject", CallThrottled)
	fams, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			key := f.GetName()
			for _, l := range m.Label {
				key += " " + l.GetName() + "=" + l.GetValue()
			}
			got[key] = m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	for key, want := range map[string]float64{
		"devo_collector_unit_restarts_total input=aws region=eu-west-1 service=cisco-umbrella":                    2,
		"devo_collector_unit_restarts_total input=aws region=eu-west-1 service=ec2":                               0,
		"devo_collector_sqs_messages_visible input=aws region=eu-west-1 service=cisco-umbrella":                   7,
		"devo_collector_sqs_messages_in_flight input=aws region=eu-west-1 service=cisco-umbrella":                 3,
		"devo_collector_output_queue_capacity_messages output=devo":                                               10000,
		"devo_collector_output_spool_events output=devo":                                                          4,
		"devo_collector_output_spool_bytes output=devo":                                                           400,
		"devo_collector_aws_api_calls_total api=sqs input= operation=ReceiveMessage outcome=ok region= service=":  2,
		"devo_collector_aws_api_calls_total api=s3 input= operation=GetObject outcome=throttled region= service=": 1,
	} {
		if v, ok := got[key]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", key, v, ok, want)
		}
	}
	if _, ok := got["devo_collector_sqs_messages_visible input=aws region=eu-west-1 service=ec2"]; ok {
		t.Error("a unit without a measured queue has a backlog gauge")
	}
	if _, ok := got["devo_collector_output_queue_capacity_bytes output=devo"]; ok {
		t.Error("a zero capacity is exported")
	}
}
