package awsapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// Health is whether a Session can currently obtain credentials.
type Health int

const (
	// Healthy: the last credentials retrieval or renewal succeeded.
	Healthy Health = iota
	// Degraded: a renewal failed and is being retried with backoff. Calls
	// keep working with the previous credentials while they are still valid.
	Degraded
)

func (h Health) String() string {
	if h == Degraded {
		return "degraded"
	}
	return "healthy"
}

// healthBoard collects the state of every credential source of a Session
// (one per role hop, or the default chain). The Session is degraded while
// any of them is failing.
type healthBoard struct {
	mu      sync.Mutex
	failing map[string]error
}

func (h *healthBoard) set(source string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil {
		delete(h.failing, source)
		return
	}
	if h.failing == nil {
		h.failing = map[string]error{}
	}
	h.failing[source] = err
}

func (h *healthBoard) state() (Health, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failing) == 0 {
		return Healthy, nil
	}
	sources := make([]string, 0, len(h.failing))
	for s := range h.failing {
		sources = append(sources, s)
	}
	sort.Strings(sources)
	errs := make([]error, 0, len(sources))
	for _, s := range sources {
		errs = append(errs, fmt.Errorf("%s: %w", s, h.failing[s]))
	}
	return Degraded, errors.Join(errs...)
}

// backoff is a capped exponential delay with ±20 % jitter.
type backoff struct {
	base, max time.Duration
}

func (b backoff) delay(attempt int) time.Duration {
	d := b.base
	for i := 1; i < attempt && d < b.max; i++ {
		d *= 2
	}
	d = min(d, b.max)
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// staleMargin is how long before their real expiry previous credentials stop
// being served while renewal is failing, so that a call signed with them
// does not reach AWS after they expired.
const staleMargin = 10 * time.Second

// RenewalError is returned, without calling STS, while a failed renewal
// waits for its next attempt and there are no valid credentials left.
type RenewalError struct {
	RoleARN string
	RetryAt time.Time
	Err     error // the last failure
}

func (e *RenewalError) Error() string {
	return fmt.Sprintf("renew credentials of %s (next attempt at %s): %v", e.RoleARN, e.RetryAt.Format(time.RFC3339), e.Err)
}

func (e *RenewalError) Unwrap() error { return e.Err }

// roleProvider wraps one AssumeRole hop for an aws.CredentialsCache. It
// records health, logs every failed attempt at ERROR with the role ARN, and
// spaces attempts with backoff. Through the cache's optional strategies it
// keeps serving the previous credentials while they are still valid, so a
// failing renewal does not fail callers until it has to.
type roleProvider struct {
	role    string
	next    aws.CredentialsProvider
	log     *slog.Logger
	health  *healthBoard
	backoff backoff
	now     func() time.Time

	mu       sync.Mutex
	failures int
	retryAt  time.Time
	lastErr  error
	good     aws.Credentials // last credentials obtained, real expiry
	stale    bool            // HandleFailToRefresh handed out good; AdjustExpiresBy must not shorten it
}

// Retrieve implements aws.CredentialsProvider.
func (p *roleProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	p.mu.Lock()
	p.stale = false
	if p.lastErr != nil && p.now().Before(p.retryAt) {
		err := &RenewalError{RoleARN: p.role, RetryAt: p.retryAt, Err: p.lastErr}
		p.mu.Unlock()
		return aws.Credentials{}, err
	}
	p.mu.Unlock()

	creds, err := p.next.Retrieve(ctx)

	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.failures++
		wait := p.backoff.delay(p.failures)
		p.retryAt = p.now().Add(wait)
		p.lastErr = err
		p.health.set(p.role, err)
		p.log.Error("assume role failed", "role_arn", p.role, "attempt", p.failures, "retry_in", wait.Round(time.Millisecond), "error", err)
		return aws.Credentials{}, err
	}
	if p.failures > 0 {
		p.log.Info("assume role recovered", "role_arn", p.role, "failed_attempts", p.failures)
	} else {
		p.log.Debug("assumed role", "role_arn", p.role, "expires", creds.Expires)
	}
	p.failures, p.lastErr, p.good = 0, nil, creds
	p.health.set(p.role, nil)
	return creds, nil
}

// HandleFailToRefresh implements aws.HandleFailRefreshCredentialsCacheStrategy:
// while the previous credentials are valid they stay in the cache until the
// next attempt is due.
func (p *roleProvider) HandleFailToRefresh(_ context.Context, _ aws.Credentials, err error) (aws.Credentials, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	usableUntil := p.good.Expires.Add(-staleMargin)
	if !p.good.HasKeys() || !p.now().Before(usableUntil) {
		return aws.Credentials{}, err
	}
	c := p.good
	c.Expires = usableUntil
	if p.retryAt.Before(usableUntil) {
		c.Expires = p.retryAt
	}
	p.stale = true
	return c, nil
}

// AdjustExpiresBy implements aws.AdjustExpiresByCredentialsCacheStrategy: it
// applies the cache's expiry window to fresh credentials only; stale ones
// already carry the instant of the next attempt.
func (p *roleProvider) AdjustExpiresBy(c aws.Credentials, d time.Duration) (aws.Credentials, error) {
	p.mu.Lock()
	stale := p.stale
	p.stale = false
	p.mu.Unlock()
	if stale || !c.CanExpire {
		return c, nil
	}
	c.Expires = c.Expires.Add(d)
	return c, nil
}

// chainProvider watches the SDK's default chain (already cached, and renewed
// by the SDK's own providers) to report health. It logs when credentials
// become unavailable and when they come back, not on every failed call.
type chainProvider struct {
	next   aws.CredentialsProvider
	log    *slog.Logger
	health *healthBoard

	mu      sync.Mutex
	failing bool
}

const chainSource = "default credential chain"

func (p *chainProvider) Retrieve(ctx context.Context) (aws.Credentials, error) {
	creds, err := p.next.Retrieve(ctx)
	if err != nil && ctx.Err() != nil {
		return creds, err // the caller gave up; says nothing about the chain
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case err != nil && !p.failing:
		p.failing = true
		p.health.set(chainSource, err)
		p.log.Error("aws credentials unavailable", "source", chainSource, "error", err)
	case err == nil && p.failing:
		p.failing = false
		p.health.set(chainSource, nil)
		p.log.Info("aws credentials recovered", "source", chainSource)
	}
	return creds, err
}
