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
	"golang.org/x/time/rate"

	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// AWS quotas are per account and region, so every unit that calls the same
// API in the same account and region must share one limiter, whichever
// input or service it belongs to. They are process-wide for that reason.
var shared struct {
	mu sync.Mutex
	m  map[limiterKey]*rate.Limiter
}

type limiterKey struct{ account, region, api string }

// SharedLimiter returns the process's limiter for api in (account, region),
// creating it with one request per every (burst 1) on first use. Later
// calls return the same limiter whatever their every.
func SharedLimiter(account, region, api string, every time.Duration) *rate.Limiter {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.m == nil {
		shared.m = map[limiterKey]*rate.Limiter{}
	}
	k := limiterKey{account, region, api}
	l, ok := shared.m[k]
	if !ok {
		l = rate.NewLimiter(rate.Every(every), 1)
		shared.m[k] = l
	}
	return l
}

const limitMiddlewareID = "DevoPullLimit"

// APIOption returns an SDK API option (for a client's APIOptions) that
// waits on lim before every attempt, SDK retries included, and counts each
// attempt and its outcome in c. lim or c may be nil.
func APIOption(lim *rate.Limiter, c *stats.API) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc(limitMiddlewareID, func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			if lim != nil {
				if err := lim.Wait(ctx); err != nil {
					return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("wait for the %s rate limit: %w", awsmiddleware.GetOperationName(ctx), err)
				}
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
