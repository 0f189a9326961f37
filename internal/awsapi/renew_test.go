package awsapi

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

// scriptedProvider answers Retrieve from a list of results and counts calls.
type scriptedProvider struct {
	mu      sync.Mutex
	calls   int
	results []func() (aws.Credentials, error)
}

func (p *scriptedProvider) Retrieve(context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.results[min(p.calls, len(p.results)-1)]
	p.calls++
	return r()
}

// TestRoleProviderBackoff drives one role hop with a fake clock: a failure
// is logged and degrades health, the still-valid credentials keep serving
// until the next attempt, attempts inside the backoff do not reach STS, and
// success restores health.
func TestRoleProviderBackoff(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	good := aws.Credentials{AccessKeyID: "ASIAGOOD", SecretAccessKey: "s", SessionToken: "t", CanExpire: true, Expires: now.Add(20 * time.Minute)}
	denied := errors.New("api error AccessDenied: not authorized")
	next := &scriptedProvider{results: []func() (aws.Credentials, error){
		func() (aws.Credentials, error) { return good, nil },
		func() (aws.Credentials, error) { return aws.Credentials{}, denied },
		func() (aws.Credentials, error) { return aws.Credentials{}, denied },
		func() (aws.Credentials, error) { return good, nil },
	}}
	rec := &logRecorder{}
	board := &healthBoard{}
	p := &roleProvider{
		role: sameRole, next: next, log: slog.New(rec), health: board,
		backoff: backoff{base: 10 * time.Second, max: time.Minute}, now: func() time.Time { return now },
	}
	ctx := context.Background()

	if _, err := p.Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	// The renewal fails: ERROR with the role, degraded, stale credentials
	// kept until the next attempt (8–12 s with jitter).
	_, err := p.Retrieve(ctx)
	if !errors.Is(err, denied) {
		t.Fatalf("err = %v, want the STS error", err)
	}
	if h, herr := board.state(); h != Degraded || !strings.Contains(herr.Error(), sameRole) {
		t.Errorf("health = %v %v, want degraded naming the role", h, herr)
	}
	if attrs, ok := rec.find(slog.LevelError, "assume role failed"); !ok || attrs["role_arn"] != sameRole || attrs["attempt"] != "1" {
		t.Errorf("ERROR attrs = %v", attrs)
	}
	stale, err := p.HandleFailToRefresh(ctx, aws.Credentials{}, err)
	if err != nil || stale.AccessKeyID != "ASIAGOOD" {
		t.Fatalf("stale = %+v, %v; want the previous credentials", stale, err)
	}
	if wait := stale.Expires.Sub(now); wait < 8*time.Second || wait > 12*time.Second {
		t.Errorf("stale credentials kept for %v, want the backoff (8s–12s)", wait)
	}
	if adj, _ := p.AdjustExpiresBy(stale, -5*time.Minute); !adj.Expires.Equal(stale.Expires) {
		t.Errorf("the cache window shortened stale credentials to %v", adj.Expires)
	}
	if adj, _ := p.AdjustExpiresBy(good, -5*time.Minute); !adj.Expires.Equal(good.Expires.Add(-5 * time.Minute)) {
		t.Errorf("fresh credentials not adjusted by the window: %v", adj.Expires)
	}

	// Inside the backoff: no STS call.
	_, err = p.Retrieve(ctx)
	var re *RenewalError
	if !errors.As(err, &re) || re.RoleARN != sameRole || !errors.Is(err, denied) {
		t.Fatalf("err = %v, want a RenewalError wrapping the STS error", err)
	}
	if next.calls != 2 {
		t.Errorf("STS reached %d times, want 2 (no call inside the backoff)", next.calls)
	}

	// Second attempt fails: the wait doubles.
	now = now.Add(13 * time.Second)
	if _, err := p.Retrieve(ctx); !errors.Is(err, denied) {
		t.Fatalf("err = %v", err)
	}
	if wait := p.retryAt.Sub(now); wait < 16*time.Second || wait > 24*time.Second {
		t.Errorf("second backoff = %v, want 16s–24s", wait)
	}

	// Past the real expiry (minus the margin), stale credentials are refused.
	now = good.Expires.Add(-staleMargin)
	if _, err := p.HandleFailToRefresh(ctx, aws.Credentials{}, denied); !errors.Is(err, denied) {
		t.Errorf("credentials at their expiry still served: %v", err)
	}

	// Recovery.
	if _, err := p.Retrieve(ctx); err != nil {
		t.Fatal(err)
	}
	if h, herr := board.state(); h != Healthy || herr != nil {
		t.Errorf("health = %v %v after recovery", h, herr)
	}
	if attrs, ok := rec.find(slog.LevelInfo, "assume role recovered"); !ok || attrs["failed_attempts"] != "2" {
		t.Errorf("recovery line = %v, %v", attrs, ok)
	}
}

func TestBackoffDelay(t *testing.T) {
	b := backoff{base: time.Second, max: time.Minute}
	for _, tt := range []struct {
		attempt int
		want    time.Duration
	}{{1, time.Second}, {2, 2 * time.Second}, {3, 4 * time.Second}, {7, time.Minute}, {50, time.Minute}} {
		for range 20 {
			got := b.delay(tt.attempt)
			if got < tt.want*8/10 || got > tt.want*12/10 {
				t.Fatalf("delay(%d) = %v, want %v ±20%%", tt.attempt, got, tt.want)
			}
		}
	}
}

// TestFailingRenewalDegradesSession runs a real renewal failure through the
// SDK cache and the fake STS: calls keep succeeding on the still-valid
// credentials, the session is degraded with an ERROR naming the role, and
// it is healthy again once STS answers.
func TestFailingRenewalDegradesSession(t *testing.T) {
	f := newFakeSTS(t)
	f.SetLifetime(40 * time.Second)
	rec := &logRecorder{}
	ctx := context.Background()
	s, err := NewSession(ctx, Options{
		InputID: "renew", Mode: KeysRole, AccessKey: userKey, AccessSecret: userSecret, BaseAssumeRole: sameRole,
		Region: "us-east-1", EndpointURL: f.URL, RetryMaxAttempts: 1, Logger: slog.New(rec),
		RequestsPerSecond: 1000,
		// Renew as soon as less than 39 s remain: about a second from now.
		ExpiryWindow:   39 * time.Second,
		RenewalBackoff: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.FailAssumeRole(sameRole, "AccessDenied")
	client := s.STS("")
	call := func() {
		t.Helper()
		if _, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{}); err != nil {
			t.Fatalf("call failed while the previous credentials were valid: %v", err)
		}
	}

	deadline := time.Now().Add(15 * time.Second)
	for s.Health() != Degraded {
		if time.Now().After(deadline) {
			t.Fatal("session never degraded")
		}
		call()
		time.Sleep(20 * time.Millisecond)
	}
	if err := s.HealthError(); err == nil || !strings.Contains(err.Error(), sameRole) {
		t.Errorf("HealthError = %v, want it to name %s", err, sameRole)
	}
	attrs, ok := rec.find(slog.LevelError, "assume role failed")
	if !ok || attrs["role_arn"] != sameRole || !strings.Contains(attrs["error"], "AccessDenied") {
		t.Errorf("ERROR line = %v, %v", attrs, ok)
	}

	// Keep calling for a while: attempts are spaced by the backoff
	// (0.2 s, 0.4 s, 0.8 s …), not made on every call.
	failingSince := time.Now()
	for time.Since(failingSince) < 1500*time.Millisecond {
		call()
		time.Sleep(10 * time.Millisecond)
	}
	failed := 0
	for _, c := range f.CallsOf("AssumeRole") {
		if c.ErrorCode == "AccessDenied" {
			failed++
		}
	}
	callers := len(f.CallsOf("GetCallerIdentity"))
	if failed < 2 || failed > 6 {
		t.Errorf("%d failed AssumeRole attempts for %d calls, want 2–6 (backoff)", failed, callers)
	}

	f.FailAssumeRole(sameRole, "")
	deadline = time.Now().Add(15 * time.Second)
	for s.Health() != Healthy {
		if time.Now().After(deadline) {
			t.Fatal("session never recovered")
		}
		call()
		time.Sleep(20 * time.Millisecond)
	}
	if _, ok := rec.find(slog.LevelInfo, "assume role recovered"); !ok {
		t.Error("no recovery line")
	}
	if strings.Contains(rec.text(), userSecret) {
		t.Error("the secret was logged")
	}
}

// TestCredentialsRenewWithoutFailedCalls keeps calling through a
// cross-account session whose credentials live 20 s, for about 50 s: both
// role hops renew several times and no call fails. (This is the one long
// test of the package.)
func TestCredentialsRenewWithoutFailedCalls(t *testing.T) {
	f := newFakeSTS(t)
	f.SetLifetime(20 * time.Second)
	t.Setenv("AWS_ACCESS_KEY_ID", envKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", envSecret)
	s, err := NewSession(context.Background(), Options{
		InputID: "soak", Mode: CrossAccount, BaseAssumeRole: baseRole, TargetAssumeRole: targetRole, ExternalID: targetExtID,
		Region: "us-east-1", EndpointURL: f.URL, RetryMaxAttempts: 1, RequestsPerSecond: 100,
		ExpiryWindow: 5 * time.Second, Logger: slog.New(&logRecorder{}),
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	defer cancel()
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	done := make(chan struct{})
	go func() {
		defer close(done)
		client := s.STS("")
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			callCtx, cancelCall := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := client.GetCallerIdentity(callCtx, &sts.GetCallerIdentityInput{})
			cancelCall()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
				continue
			}
			ok.Add(1)
		}
	}()
	<-done

	if n := failed.Load(); n != 0 {
		t.Fatalf("%d calls failed (first: %v), %d succeeded", n, firstErr.Load(), ok.Load())
	}
	if ok.Load() < 100 {
		t.Fatalf("only %d calls made", ok.Load())
	}
	perRole := map[string]int{}
	for _, c := range f.CallsOf("AssumeRole") {
		if c.ErrorCode != "" {
			t.Errorf("AssumeRole failed: %+v", c)
		}
		perRole[c.RoleARN]++
	}
	// Issued at 0 s, renewed at ~15, ~30, ~45 s.
	if perRole[baseRole] < 3 || perRole[targetRole] < 3 {
		t.Errorf("AssumeRole per role = %v, want at least 3 each", perRole)
	}
	signers := map[string]bool{}
	for _, c := range f.CallsOf("GetCallerIdentity") {
		signers[c.AccessKey] = true
	}
	if len(signers) < 3 {
		t.Errorf("calls signed by %d distinct credentials, want at least 3", len(signers))
	}
	if s.Health() != Healthy {
		t.Errorf("health = %v: %v", s.Health(), s.HealthError())
	}
}
