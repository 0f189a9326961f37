// Package sqsrec wraps an SQS client so that tests can see what the engine
// asked SQS for: the WaitTimeSeconds and VisibilityTimeout of every
// receive, the visibility of every change, and how long each receive took.
package sqsrec

import (
	"context"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
)

// Receive is one ReceiveMessage call as the client saw it.
type Receive struct {
	WaitTimeSeconds   int32
	VisibilityTimeout int32
	Messages          int       // messages returned
	Start, End        time.Time // when the call was made and when it returned
	Err               error
}

// API is the SQS API the engine uses (the same methods as
// sqsengine.Client, restated here so that the engine's own tests can use
// this package without an import cycle).
type API interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

// Client records the calls it passes on to the wrapped client. It
// satisfies sqsengine.Client and is safe for concurrent use.
type Client struct {
	API

	mu         sync.Mutex
	receives   []Receive
	visibility []int32 // VisibilityTimeout of every ChangeMessageVisibility(Batch) entry
}

// New wraps c.
func New(c API) *Client { return &Client{API: c} }

// ReceiveMessage records the call and passes it on.
func (c *Client) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	start := time.Now()
	out, err := c.API.ReceiveMessage(ctx, in, optFns...)
	r := Receive{WaitTimeSeconds: in.WaitTimeSeconds, VisibilityTimeout: in.VisibilityTimeout,
		Start: start, End: time.Now(), Err: err}
	if out != nil {
		r.Messages = len(out.Messages)
	}
	c.mu.Lock()
	c.receives = append(c.receives, r)
	c.mu.Unlock()
	return out, err
}

// ChangeMessageVisibility records the timeout asked for and passes it on.
func (c *Client) ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error) {
	c.mu.Lock()
	c.visibility = append(c.visibility, in.VisibilityTimeout)
	c.mu.Unlock()
	return c.API.ChangeMessageVisibility(ctx, in, optFns...)
}

// ChangeMessageVisibilityBatch records each entry's timeout and passes it on.
func (c *Client) ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	c.mu.Lock()
	for _, e := range in.Entries {
		c.visibility = append(c.visibility, e.VisibilityTimeout)
	}
	c.mu.Unlock()
	return c.API.ChangeMessageVisibilityBatch(ctx, in, optFns...)
}

// Receives returns the receives recorded so far, in call-return order.
func (c *Client) Receives() []Receive {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Receive(nil), c.receives...)
}

// Visibilities returns the VisibilityTimeout of every visibility change
// entry recorded so far.
func (c *Client) Visibilities() []int32 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]int32(nil), c.visibility...)
}
