package awsapi

import (
	"context"
	"fmt"
	"math"
	"sync"

	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/smithy-go/middleware"
	"golang.org/x/time/rate"
)

// DefaultRequestsPerSecond applies when Options.RequestsPerSecond is not set
// (the documented default of requests_per_second).
const DefaultRequestsPerSecond = 5

// limits holds one token bucket per (region, API) of a Session. A Session
// speaks for exactly one AWS account, so these are the per (account, region,
// API) buckets.
type limits struct {
	rps   rate.Limit
	burst int

	mu sync.Mutex
	m  map[limitKey]*rate.Limiter
}

type limitKey struct {
	region string
	api    string // the SDK's service id: "SQS", "S3", "CloudWatch Logs", …
}

func newLimits(rps float64) *limits {
	if rps <= 0 {
		rps = DefaultRequestsPerSecond
	}
	// A burst of one second's worth lets a paginator start without waiting
	// while the long-run rate stays at rps.
	return &limits{rps: rate.Limit(rps), burst: max(1, int(math.Ceil(rps))), m: map[limitKey]*rate.Limiter{}}
}

func (l *limits) limiter(region, api string) *rate.Limiter {
	k := limitKey{region: region, api: api}
	l.mu.Lock()
	defer l.mu.Unlock()
	lim, ok := l.m[k]
	if !ok {
		lim = rate.NewLimiter(l.rps, l.burst)
		l.m[k] = lim
	}
	return lim
}

const limitMiddlewareID = "DevoRateLimit"

// apiOption adds the wait to an operation's stack. It sits after the retry
// middleware so that every attempt, retries included, takes a token.
func (l *limits) apiOption(stack *middleware.Stack) error {
	mw := middleware.FinalizeMiddlewareFunc(limitMiddlewareID, func(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (middleware.FinalizeOutput, middleware.Metadata, error) {
		lim := l.limiter(awsmiddleware.GetRegion(ctx), awsmiddleware.GetServiceID(ctx))
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

// callCounter reports each operation once, with its final outcome: it sits
// first in the Initialize step, outside the retry loop.
func callCounter(report func(service, operation string, err error)) func(*middleware.Stack) error {
	return func(stack *middleware.Stack) error {
		return stack.Initialize.Add(middleware.InitializeMiddlewareFunc(callCounterID, func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleInitialize(ctx, in)
			report(awsmiddleware.GetServiceID(ctx), awsmiddleware.GetOperationName(ctx), err)
			return out, md, err
		}), middleware.Before)
	}
}
