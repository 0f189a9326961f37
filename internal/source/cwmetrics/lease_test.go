package cwmetrics

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease/leasetest"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pullengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/apisource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// The namespace set is pulled only while its lease is held; revoked, it
// stops; granted again three minutes later, it resumes from the checkpoint:
// every datapoint arrives once and no GetMetricData asks for time before
// the checkpoint.
func TestMetricsRunUnderTheirLease(t *testing.T) {
	T := time.Date(2024, 5, 31, 14, 49, 36, 0, time.UTC)
	h := newHarness(t, T)
	for i := range 20 {
		h.cw.AddMetrics(metric("AWS/EC2", i, T.Truncate(time.Minute).Add(-30*time.Minute), T.Add(10*time.Minute)))
	}
	svc := loadService(t, `        metric_namespaces: [AWS/EC2]
        metric_statistics: [Sum]
        start_time: "2024-05-31T14:40:00Z"
`)
	leases := leasetest.New()
	store := leasetest.NewStore(state.NewMemory(), leases)
	src, err := New(Options{
		Common: apisource.Common{
			Service: svc, Region: "us-east-1", InputName: "aws",
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Store:     store,
			Leases:    leases,
			Now:       h.now,
			Log:       slog.New(slog.NewTextHandler(&h.log, nil)),
		},
		Client: cloudwatch.New(cloudwatch.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(h.cw.URL),
			Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "s", ""),
		}),
		Tune: func(c *pullengine.Config) { c.Grace = 100 * time.Millisecond },
	})
	if err != nil {
		t.Fatal(err)
	}
	key := state.Key{Input: "aws", Service: "metrics-all", Region: "us-east-1", Sub: StreamName}
	sk := pipetest.NewRecorder()
	stop := pipetest.Start(t, sk, src)
	checkpoint := func() time.Time {
		cp, _, _ := pullengine.LoadCheckpoint(store, key)
		return cp.End
	}

	if !leases.Wait(5*time.Second, func() bool { return len(leases.Streams()) == 1 && leases.Streams()[0] == key }) {
		t.Fatalf("leases %v, want the checkpoint key %v", leases.Streams(), key)
	}
	time.Sleep(100 * time.Millisecond)
	if n := h.count("GetMetricData") + h.count("ListMetrics"); n != 0 {
		t.Fatalf("%d calls without the lease", n)
	}

	leases.Grant(key)
	first := time.Date(2024, 5, 31, 14, 47, 0, 0, time.UTC)
	if !leases.Wait(10*time.Second, func() bool { return checkpoint().Equal(first) }) {
		t.Fatalf("checkpoint %v under the lease, want %v\n%s", checkpoint(), first, h.log.String())
	}
	leases.Revoke(key)
	if !leases.Wait(5*time.Second, func() bool { return !leases.Running(key) }) {
		t.Fatal("the stream kept running after its lease was revoked")
	}
	time.Sleep(50 * time.Millisecond) // a request cancelled on the wire may reach the fake a moment later
	calls := len(h.cw.Calls())

	h.set(T.Add(3 * time.Minute))
	leases.Grant(key)
	second := time.Date(2024, 5, 31, 14, 50, 0, 0, time.UTC)
	if !leases.Wait(10*time.Second, func() bool { return checkpoint().Equal(second) }) {
		t.Fatalf("checkpoint %v after the regain, want %v\n%s", checkpoint(), second, h.log.String())
	}
	stop()
	for _, c := range h.cw.Calls()[calls:] {
		if in, ok := c.Input.(*awstest.GetMetricDataRequest); ok && in.StartTime.Before(first) {
			t.Fatalf("after the regain GetMetricData starts at %v, before the checkpoint %v", in.StartTime, first)
		}
	}
	seen := map[string]int{}
	for _, ev := range events(t, sk) {
		seen[ev.Dimensions[0].Value+"@"+ev.Timestamp]++
	}
	for k, n := range seen {
		if n != 1 {
			t.Errorf("%s delivered %d times", k, n)
		}
	}
	if want := 20 * 10; len(seen) != want { // [14:40, 14:50)
		t.Errorf("%d datapoints, want %d", len(seen), want)
	}
}
