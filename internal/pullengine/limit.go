package pullengine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/smithy-go/middleware"

	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// AWS quotas are per account and region, so every unit that calls the same
// API in the same account and region must share one limiter, whichever
// input or service it belongs to. They are process-wide for that reason.
var shared struct {
	mu sync.Mutex
	m  map[limiterKey]*Limiter
}

type limiterKey struct{ account, region, api string }

// SharedLimiter returns the process's limiter for api in (account, region),
// creating it with n requests per per on first use, its quota spent (the
// first request waits per). Later calls return the
// same limiter whatever their n and per.
//
// It stands for AWS's own quota of the API, which every service of the
// process reading that account and region shares. It is not the user's
// requests_per_second: that is the session's bucket in internal/awsapi,
// and a call waits for both.
func SharedLimiter(account, region, api string, n int, per time.Duration) *Limiter {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.m == nil {
		shared.m = map[limiterKey]*Limiter{}
	}
	k := limiterKey{account, region, api}
	l, ok := shared.m[k]
	if !ok {
		l = NewLimiter(n, per)
		// The quota starts spent: a collector restarted right after a
		// crash (or by its service manager) cannot know what the process
		// before it sent in the last period, and the server counts both.
		// So the first request waits one period. (Before sources started
		// beside the outputs' start-up probe, its 2 s hid this.)
		now := l.now()
		for i := range l.slots {
			l.slots[i].done = now
		}
		shared.m[k] = l
	}
	return l
}

// Limiter keeps a quota of n requests per sliding period the way the
// server counts it, whatever the network's jitter: a request is sent only
// once the request n places before it has completed (its answer is back)
// at least per ago. A request reaches the server after it is sent and
// before its answer leaves, so any n+1 consecutive requests reach the
// server at least per apart from first to last. A token bucket paced at
// n/per gives no such guarantee: two requests sent per/n apart can arrive
// closer. Failed and throttled requests count like any other.
type Limiter struct {
	per time.Duration
	now func() time.Time

	mu    sync.Mutex
	slots []limitSlot
	freed chan struct{} // signalled when a slot is released
}

type limitSlot struct {
	busy bool      // a request holding it is in flight
	done time.Time // when its last request completed (zero: never used)
}

// NewLimiter returns a limiter of n requests per per (n ≥ 1).
func NewLimiter(n int, per time.Duration) *Limiter {
	return &Limiter{per: per, now: time.Now, slots: make([]limitSlot, max(n, 1)), freed: make(chan struct{}, 1)}
}

// Acquire waits until a request may be sent, or ctx ends. Call release
// once the request's answer (or error) is back.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	for {
		l.mu.Lock()
		now := l.now()
		best, wait := -1, time.Duration(-1)
		for i, s := range l.slots {
			if s.busy {
				continue
			}
			if d := s.done.Add(l.per).Sub(now); d <= 0 {
				best = i
				break
			} else if wait < 0 || d < wait {
				wait = d
			}
		}
		if best >= 0 {
			l.slots[best].busy = true
			l.mu.Unlock()
			return func() { l.release(best) }, nil
		}
		l.mu.Unlock()
		if wait < 0 {
			wait = time.Second // every slot in flight: woken by freed
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		case <-l.freed:
			t.Stop()
		}
	}
}

func (l *Limiter) release(i int) {
	l.mu.Lock()
	l.slots[i] = limitSlot{done: l.now()}
	l.mu.Unlock()
	select {
	case l.freed <- struct{}{}:
	default:
	}
}

const limitMiddlewareID = "DevoPullLimit"

// APIOption returns an SDK API option (for a client's APIOptions) that
// holds a place in lim during every attempt, SDK retries included, and
// counts each attempt and its outcome in c. lim or c may be nil.
func APIOption(lim *Limiter, c *stats.API) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc(limitMiddlewareID, func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if lim != nil {
				release, err := lim.Acquire(ctx)
				if err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("wait for the %s rate limit: %w", awsmiddleware.GetOperationName(ctx), err)
				}
				defer release()
			}
			out, md, err := next.HandleFinalize(ctx, in)
			if c != nil {
				c.Calls.Add(1)
				switch {
				case err == nil:
				case IsThrottle(err):
					c.Throttled.Add(1)
				default:
					c.Errors.Add(1)
				}
			}
			return out, md, err
		})
		// After the retry middleware, so that every attempt waits.
		if _, ok := stack.Finalize.Get("Retry"); ok {
			return stack.Finalize.Insert(mw, "Retry", middleware.After)
		}
		return stack.Finalize.Add(mw, middleware.Before)
	}
}

// IsThrottle reports whether err is AWS refusing a request for its rate
// (ThrottlingException, TooManyRequestsException, RequestLimitExceeded …).
func IsThrottle(err error) bool {
	if err == nil {
		return false
	}
	return retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err).Bool()
}

// retryable reports whether a failed call is worth repeating: throttling,
// or what the SDK itself treats as transient (timeouts, 5xx, connection
// resets). Context ends are not.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if IsThrottle(err) {
		return true
	}
	return retry.IsErrorRetryables(retry.DefaultRetryables).IsErrorRetryable(err).Bool()
}
