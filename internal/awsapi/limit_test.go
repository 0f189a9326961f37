package awsapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/cloudtrail"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatch"
	"github.com/aws/aws-sdk-go-v2/service/cloudwatchlogs"
	"github.com/aws/aws-sdk-go-v2/service/guardduty"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// recorder is an endpoint that notes every request and answers an error.
type recorder struct {
	name string
	srv  *httptest.Server

	mu   sync.Mutex
	hits []string // "<method> <path> <X-Amz-Target>"
}

func newRecorder(t *testing.T, name string, status int) *recorder {
	t.Helper()
	r := &recorder{name: name}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.hits = append(r.hits, req.Method+" "+req.URL.Path+" "+req.Header.Get("X-Amz-Target"))
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := r.hits
	r.hits = nil
	return h
}

// TestClientsEndpointsAndLimits: every typed client goes to its endpoint
// override (the per-API entry winning over endpoint_url); the low-quota
// query APIs wait on their own (region, API) token bucket before each
// request, while SQS, S3 and STS never wait.
func TestClientsEndpointsAndLimits(t *testing.T) {
	isolateEnv(t)
	global := newRecorder(t, "global", http.StatusNotFound)
	specific := newRecorder(t, "specific", http.StatusNotFound)
	const region = "eu-west-1"
	s, err := NewSession(context.Background(), Options{
		Mode: Keys, AccessKey: userKey, AccessSecret: userSecret, Region: "us-east-1",
		EndpointURL: global.srv.URL,
		Endpoints:   map[string]string{APIS3: specific.srv.URL, APILogs: specific.srv.URL},
		// One token, then one more every 1000 s: the second call of any
		// client must wait.
		RequestsPerSecond: 0.001, RetryMaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		serviceID string
		want      *recorder
		path      string
		call      func(ctx context.Context) error
	}{
		{"SQS", global, "/", func(ctx context.Context) error {
			_, err := s.SQS(region).ListQueues(ctx, &sqs.ListQueuesInput{})
			return err
		}},
		{"S3", specific, "/bkt", func(ctx context.Context) error { // path style: the bucket is in the path
			_, err := s.S3(region).ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("bkt")})
			return err
		}},
		{"STS", global, "/", func(ctx context.Context) error {
			_, err := s.STS(region).GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
			return err
		}},
		{"CloudTrail", global, "/", func(ctx context.Context) error {
			_, err := s.CloudTrail(region).LookupEvents(ctx, &cloudtrail.LookupEventsInput{})
			return err
		}},
		{"CloudWatch", global, "/service/GraniteServiceVersion20100801/operation/ListMetrics", func(ctx context.Context) error {
			_, err := s.CloudWatch(region).ListMetrics(ctx, &cloudwatch.ListMetricsInput{})
			return err
		}},
		{"CloudWatch Logs", specific, "/", func(ctx context.Context) error {
			_, err := s.Logs(region).DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
			return err
		}},
		{"GuardDuty", global, "/detector", func(ctx context.Context) error {
			_, err := s.GuardDuty(region).ListDetectors(ctx, &guardduty.ListDetectorsInput{})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.serviceID, func(t *testing.T) {
			// First call: the bucket's one token; the request reaches the override.
			if err := tt.call(context.Background()); err == nil {
				t.Fatal("the recorder answers an error; the call cannot succeed")
			}
			other := global
			if tt.want == global {
				other = specific
			}
			hits := tt.want.take()
			if len(hits) != 1 || !strings.HasPrefix(strings.SplitN(hits[0], " ", 3)[1], tt.path) {
				t.Fatalf("%s endpoint got %q, want one request to %s", tt.want.name, hits, tt.path)
			}
			if h := other.take(); len(h) != 0 {
				t.Fatalf("%s endpoint got %q, want nothing", other.name, h)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if !limited(tt.serviceID) {
				// Not paced: the second call reaches the endpoint at once.
				if err := tt.call(ctx); err == nil || strings.Contains(err.Error(), "wait for rate limit") {
					t.Fatalf("err = %v, want the endpoint's error, not a rate limit wait", err)
				}
				if h := tt.want.take(); len(h) != 1 {
					t.Fatalf("second call: %s endpoint got %q, want one request", tt.want.name, h)
				}
				return
			}
			// Second call: no token until the context would have ended,
			// so it fails without a request.
			err := tt.call(ctx)
			if err == nil || !strings.Contains(err.Error(), "wait for rate limit") {
				t.Fatalf("err = %v, want the rate limit wait to fail", err)
			}
			if h := append(global.take(), specific.take()...); len(h) != 0 {
				t.Fatalf("a rate-limited call reached %q", h)
			}
			if tok := s.limits.limiter(region, tt.serviceID).Tokens(); tok >= 1 {
				t.Errorf("bucket (%s, %s) has %.2f tokens, want the call to have taken it", region, tt.serviceID, tok)
			}
		})
	}
	for _, api := range []string{"SQS", "S3", "STS"} {
		if limited(api) {
			t.Errorf("%s is rate limited, want it never to wait", api)
		}
	}
	for _, api := range []string{"CloudWatch Logs", "CloudWatch", "GuardDuty", "CloudTrail"} {
		if !limited(api) {
			t.Errorf("%s is not rate limited", api)
		}
	}
	// Buckets are per region: the same API elsewhere still has its token.
	if tok := s.limits.limiter("ap-south-1", "GuardDuty").Tokens(); tok < 1 {
		t.Errorf("another region's bucket has %.2f tokens, want a full burst", tok)
	}
}

// TestLimitCoversRetries: each attempt takes a token, so a retry waits too.
func TestLimitCoversRetries(t *testing.T) {
	isolateEnv(t)
	busy := newRecorder(t, "busy", http.StatusServiceUnavailable)
	s, err := NewSession(context.Background(), Options{
		Mode: Keys, AccessKey: userKey, AccessSecret: userSecret, Region: "us-east-1",
		EndpointURL: busy.srv.URL, RequestsPerSecond: 0.001, RetryMaxAttempts: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := s.Logs("us-east-1").DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{}); err == nil {
		t.Fatal("call succeeded against a 503 endpoint")
	}
	if hits := busy.take(); len(hits) != 1 {
		t.Errorf("%d attempts reached the endpoint, want 1 (the retry waits for a token)", len(hits))
	}
}

// TestLimitBoundsCallRate hammers one limited API (CloudWatch Logs) from
// several goroutines. A token bucket can never let through more than
// burst + rate × elapsed, whatever the machine's speed.
func TestLimitBoundsCallRate(t *testing.T) {
	isolateEnv(t)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("Content-Type", "application/x-amz-json-1.1")
		_, _ = w.Write([]byte("{}"))
	}))
	t.Cleanup(srv.Close)
	const rps = 20
	s, err := NewSession(context.Background(), Options{
		Mode: Keys, AccessKey: userKey, AccessSecret: userSecret, Region: "us-east-1",
		EndpointURL: srv.URL, RequestsPerSecond: rps, RetryMaxAttempts: 1, Logger: slog.New(&logRecorder{}),
	})
	if err != nil {
		t.Fatal(err)
	}
	client := s.Logs("")
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				_, _ = client.DescribeLogGroups(ctx, &cloudwatchlogs.DescribeLogGroupsInput{})
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	limit := s.limits.limiter("us-east-1", "CloudWatch Logs")
	if limit.Burst() != rps {
		t.Errorf("burst = %d, want %d", limit.Burst(), rps)
	}
	n := int(served.Load())
	bound := rps + int(rps*elapsed.Seconds()) + 1
	if n > bound {
		t.Errorf("%d calls in %v, more than the bucket allows (%d)", n, elapsed, bound)
	}
	if n < rps {
		t.Errorf("%d calls, want at least the burst of %d", n, rps)
	}
}

// TestS3AndSQSAreNotThrottled: with requests_per_second at one call per
// 1000 s, 50 GetObject and 50 ReceiveMessage calls through the Session's
// clients all reach the server and none takes a token, while a second
// CloudWatch Logs call still waits for one. An S3+SQS service therefore
// fetches objects as fast as its workers allow, whatever the setting.
func TestS3AndSQSAreNotThrottled(t *testing.T) {
	isolateEnv(t)
	var gets, receives atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("X-Amz-Target") == "AmazonSQS.ReceiveMessage":
			receives.Add(1)
			w.Header().Set("Content-Type", "application/x-amz-json-1.0")
			_, _ = w.Write([]byte(`{"Messages":[]}`))
		case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/bkt/"):
			gets.Add(1)
			_, _ = w.Write([]byte("object body"))
		default:
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			_, _ = w.Write([]byte("{}"))
		}
	}))
	t.Cleanup(srv.Close)
	s, err := NewSession(context.Background(), Options{
		Mode: Keys, AccessKey: userKey, AccessSecret: userSecret, Region: "us-east-1",
		EndpointURL: srv.URL, RequestsPerSecond: 0.001, RetryMaxAttempts: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Were these calls paced at 0.001/s, all but the first would fail
	// with "wait for rate limit" once this context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s3c, sqsc := s.S3("eu-west-1"), s.SQS("eu-west-1")
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 50 {
		wg.Go(func() {
			out, err := s3c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String("bkt"), Key: aws.String(fmt.Sprintf("k%d", i))})
			if err == nil {
				out.Body.Close()
			}
			errs <- err
		})
		wg.Go(func() {
			_, err := sqsc.ReceiveMessage(ctx, &sqs.ReceiveMessageInput{QueueUrl: aws.String(srv.URL + "/000000000000/q")})
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("an S3 or SQS call failed: %v", err)
		}
	}
	if gets.Load() != 50 || receives.Load() != 50 {
		t.Fatalf("server saw %d GetObject and %d ReceiveMessage, want 50 each", gets.Load(), receives.Load())
	}
	if w := s.limits.waited.Load(); w != 0 {
		t.Errorf("%d S3/SQS calls took a rate-limit token, want 0", w)
	}
	if b := s.limits.buckets(); b != 0 {
		t.Errorf("%d rate-limit buckets made for S3/SQS calls, want none", b)
	}

	// CloudWatch Logs still waits: the first call takes the one token, the
	// second cannot get one before its context ends.
	logs := s.Logs("eu-west-1")
	if _, err := logs.DescribeLogGroups(context.Background(), &cloudwatchlogs.DescribeLogGroupsInput{}); err != nil {
		t.Fatalf("first logs call: %v", err)
	}
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := logs.DescribeLogGroups(short, &cloudwatchlogs.DescribeLogGroupsInput{}); err == nil || !strings.Contains(err.Error(), "wait for rate limit") {
		t.Fatalf("second logs call: err = %v, want a rate limit wait", err)
	}
	if w := s.limits.waited.Load(); w != 2 {
		t.Errorf("%d calls took a token, want the 2 CloudWatch Logs calls", w)
	}
}

func TestNewLimitsDefaults(t *testing.T) {
	for _, tt := range []struct {
		rps       float64
		api       string
		wantRate  float64
		wantBurst int
	}{
		{0, "GuardDuty", DefaultRequestsPerSecond, DefaultRequestsPerSecond},
		{-1, "CloudWatch Logs", DefaultRequestsPerSecond, DefaultRequestsPerSecond},
		{0.5, "CloudWatch", 0.5, 1},
		{2.5, "GuardDuty", 2.5, 3},
		{10, "CloudWatch Logs", 10, 10},
		// LookupEvents: AWS allows 2 per second per account and region.
		{0, "CloudTrail", 2, 2},
		{10, "CloudTrail", 2, 2},
		{0.5, "CloudTrail", 0.5, 1},
	} {
		lim := newLimits(tt.rps).limiter("us-east-1", tt.api)
		if float64(lim.Limit()) != tt.wantRate || lim.Burst() != tt.wantBurst {
			t.Errorf("newLimits(%v) for %s = rate %v burst %d, want %v %d", tt.rps, tt.api, lim.Limit(), lim.Burst(), tt.wantRate, tt.wantBurst)
		}
	}
}

func TestS3PathStyle(t *testing.T) {
	isolateEnv(t)
	for _, tt := range []struct {
		name string
		opts Options
		want bool
	}{
		{"aws default", Options{}, false},
		{"forced", Options{S3ForcePathStyle: true}, true},
		{"endpoint_url", Options{EndpointURL: "http://127.0.0.1:1"}, true},
		{"endpoints.s3", Options{Endpoints: map[string]string{APIS3: "http://127.0.0.1:1"}}, true},
		{"endpoints for another api", Options{Endpoints: map[string]string{APISQS: "http://127.0.0.1:1"}}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			o.Mode, o.AccessKey, o.AccessSecret, o.Region = Keys, userKey, userSecret, "us-east-1"
			s, err := NewSession(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.S3("eu-west-1").Options().UsePathStyle; got != tt.want {
				t.Errorf("UsePathStyle = %v, want %v", got, tt.want)
			}
			if got := s.S3("eu-west-1").Options().Region; got != "eu-west-1" {
				t.Errorf("region = %q", got)
			}
		})
	}
}
