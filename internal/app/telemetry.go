package app

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"

	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// apiCallReporter counts every AWS operation into reg, by API (the SDK's
// service id, lower case: "sqs", "s3", "cloudwatch_logs"), operation and
// outcome.
func apiCallReporter(reg *stats.Registry) func(service, operation string, err error) {
	return func(service, operation string, err error) {
		api := strings.ReplaceAll(strings.ToLower(service), " ", "_")
		reg.APICall(api, operation, callOutcome(err))
	}
}

// callOutcome classifies an operation's error for the outcome label.
func callOutcome(err error) string {
	if err == nil {
		return stats.CallOK
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch code := ae.ErrorCode(); {
		case strings.Contains(code, "Throttl"), code == "TooManyRequestsException", code == "RequestLimitExceeded",
			code == "SlowDown", code == "RequestThrottled", strings.HasSuffix(code, "OverLimit"):
			return stats.CallThrottled
		}
	}
	return stats.CallError
}

// queuePoll is how often watchQueue measures an SQS unit's backlog.
const queuePoll = 30 * time.Second

// queueAttrs is the part of the SQS client watchQueue uses.
type queueAttrs interface {
	sqsengine.Client
}

// watchQueue measures the backlog of an SQS unit's queue every period
// until ctx ends, into the unit's sqs_messages_visible and
// sqs_messages_in_flight gauges: the lag an operator alerts on (a backlog
// that keeps growing means the collector does not keep up, or is not
// reading). A failure is logged at DEBUG and retried at the next period:
// the consumer itself reports a queue it cannot read.
func watchQueue(ctx context.Context, c queueAttrs, service, region, queue string, u *stats.Unit, log *slog.Logger, period time.Duration) {
	url := ""
	measure := func() {
		if url == "" {
			q, err := sqsengine.Resolve(ctx, c, service, region, queue)
			if err != nil {
				log.Debug("queue backlog: resolve failed", "err", err)
				return
			}
			url = q.URL
		}
		out, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
			QueueUrl: aws.String(url),
			AttributeNames: []sqstypes.QueueAttributeName{
				sqstypes.QueueAttributeNameApproximateNumberOfMessages,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible,
				sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed,
			},
		})
		if err != nil {
			if ctx.Err() == nil {
				log.Debug("queue backlog: GetQueueAttributes failed", "err", err)
			}
			return
		}
		n := func(a sqstypes.QueueAttributeName) int64 {
			v, _ := strconv.ParseInt(out.Attributes[string(a)], 10, 64)
			return v
		}
		visible := n(sqstypes.QueueAttributeNameApproximateNumberOfMessages) + n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesDelayed)
		u.SetQueue(visible, n(sqstypes.QueueAttributeNameApproximateNumberOfMessagesNotVisible))
	}
	ctxtime.NowAndEvery(ctx, period, measure)
}
