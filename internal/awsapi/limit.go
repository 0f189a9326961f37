package awsapi

import (
	"context"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"
)

// DefaultRequestsPerSecond applies when Options.RequestsPerSecond is not set
// (the documented default of requests_per_second).
const DefaultRequestsPerSecond = 5

// lookupEventsPerSecond is AWS's own quota of CloudTrail LookupEvents per
// account and region: asking faster only earns ThrottlingException.
const lookupEventsPerSecond = 2

// limitedAPIs are the SDK service ids whose calls wait on the
// requests_per_second buckets: the query APIs with low quotas
// (config.md §5). SQS, S3 and STS are not among them: their quotas are in
// the thousands per second, and pacing them would cap an S3+SQS service at
// a few objects per second. The value caps the rate below
// requests_per_second (0: no cap of its own).
var limitedAPIs = map[string]float64{
	"CloudWatch Logs": 0,
	"CloudWatch":      0,
	"GuardDuty":       0,
	"CloudTrail":      lookupEventsPerSecond,
}

// limits holds one token bucket per (region, API) of a Session. A Session
// speaks for exactly one AWS account, so these are the per (account, region,
// API) buckets.
type limits struct {
	rps float64

	mu sync.Mutex
	m  map[limitKey]*rate.Limiter

	// waited counts the calls that took a token (tests read it).
	waited atomic.Int64
}

type limitKey struct {
	region string
	api    string // the SDK's service id: "CloudWatch Logs", "GuardDuty", …
}

func newLimits(rps float64) *limits {
	if rps <= 0 {
		rps = DefaultRequestsPerSecond
	}
	return &limits{rps: rps, m: map[limitKey]*rate.Limiter{}}
}

// limited reports whether calls of api wait on a bucket.
func limited(api string) bool {
	_, ok := limitedAPIs[api]
	return ok
}

// rateOf is the rate of api's buckets: requests_per_second, or the API's
// own quota when that is lower.
func (l *limits) rateOf(api string) float64 {
	r := l.rps
	if c := limitedAPIs[api]; c > 0 {
		r = min(r, c)
	}
	return r
}

// limiter is the bucket of (region, api). A burst of one second's worth lets
// a paginator start without waiting while the long-run rate stays at the
// limit.
func (l *limits) limiter(region, api string) *rate.Limiter {
	k := limitKey{region: region, api: api}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[k]
	if !ok {
		r := l.rateOf(api)
		lim = rate.NewLimiter(rate.Limit(r), max(1, int(math.Ceil(r))))
		l.m[k] = lim
	}
	return lim
}

// buckets is the number of buckets made so far: an API that is never
// limited never gets one.
func (l *limits) buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

const limitMiddlewareID = "DevoRateLimit"

// apiOption adds the wait to an operation's stack. It sits after the retry
// middleware so that every attempt, retries included, takes a token. Calls
// of APIs that are not limited pass straight through.
func (l *limits) apiOption(stack *middleware.Stack) error {
	mw := middleware.FinalizeMiddlewareFunc(limitMiddlewareID, func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		api := awsmiddleware.GetServiceID(ctx)
		if !limited(api) {
			return next.HandleFinalize(ctx, in)
		}
		lim := l.limiter(awsmiddleware.GetRegion(ctx), api)
		l.waited.Add(1)
		if err := lim.Wait(ctx); err != nil {
			return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("wait for rate limit: %w", err)
		}
		return next.HandleFinalize(ctx, in)
	})
	if _, ok := stack.Finalize.Get("Retry"); ok {
		return stack.Finalize.Insert(mw, "Retry", middleware.After)
	}
	return stack.Finalize.Add(mw, middleware.Before)
}

const callCounterID = "devo.CallCounter"

// callCounter reports every request sent, SDK retries included, with its
// own outcome: it sits in the Finalize step after the retry middleware, so
// the counts match the API pullers' (pullengine.APIOption) in the one
// counter they share, devo_collector_aws_api_calls_total.
func callCounter(report func(service, operation string, err error)) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		mw := middleware.FinalizeMiddlewareFunc(callCounterID, func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleFinalize(ctx, in)
			report(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), err)
			return out, md, err
		})
		if _, ok := stack.Finalize.Get("Retry"); ok {
			return stack.Finalize.Insert(mw, "Retry", middleware.After)
		}
		return stack.Finalize.Add(mw, middleware.Before)
	}
}
