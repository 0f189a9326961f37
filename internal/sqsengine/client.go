// Package sqsengine is the one SQS consumer every SQS-based service shares.
//
// A service describes what to do with one message (a Handler); the engine
// receives, bounds the messages in flight, keeps their visibility extended,
// and gives each message exactly one fate once everything derived from it has
// settled at the outputs: deleted, returned to the queue with a backoff, or
// deleted as poison. docs/sqs.md explains the decisions.
package sqsengine

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// Client is the part of the SQS API the engine uses, with the SDK's own
// signatures: *sqs.Client satisfies it, unit tests fake it.
type Client interface {
	ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, optFns ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error)
	DeleteMessageBatch(ctx context.Context, in *sqs.DeleteMessageBatchInput, optFns ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error)
	ChangeMessageVisibility(ctx context.Context, in *sqs.ChangeMessageVisibilityInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityOutput, error)
	ChangeMessageVisibilityBatch(ctx context.Context, in *sqs.ChangeMessageVisibilityBatchInput, optFns ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error)
	GetQueueUrl(ctx context.Context, in *sqs.GetQueueUrlInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error)
	GetQueueAttributes(ctx context.Context, in *sqs.GetQueueAttributesInput, optFns ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error)
}

var _ Client = (*sqs.Client)(nil)

// Message is one received SQS message.
type Message struct {
	ID            string
	Body          string
	ReceiptHandle string
	// ReceiveCount is SQS's ApproximateReceiveCount: 1 on the first receive.
	ReceiveCount int
	// GroupID is the FIFO message group ("" on standard queues).
	GroupID string
	// SentTime is when SQS accepted the message (zero if SQS did not say).
	SentTime time.Time
	// Attributes are the system attributes SQS returned.
	Attributes map[string]string
	// MessageAttributes are the sender's message attributes.
	MessageAttributes map[string]types.MessageAttributeValue
}

func newMessage(m types.Message) Message {
	msg := Message{
		ID:                deref(m.MessageId),
		Body:              deref(m.Body),
		ReceiptHandle:     deref(m.ReceiptHandle),
		Attributes:        m.Attributes,
		MessageAttributes: m.MessageAttributes,
	}
	if v, err := strconv.Atoi(m.Attributes[string(types.MessageSystemAttributeNameApproximateReceiveCount)]); err == nil {
		msg.ReceiveCount = v
	}
	msg.GroupID = m.Attributes[string(types.MessageSystemAttributeNameMessageGroupId)]
	if v, err := strconv.ParseInt(m.Attributes[string(types.MessageSystemAttributeNameSentTimestamp)], 10, 64); err == nil {
		msg.SentTime = time.UnixMilli(v)
	}
	return msg
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// Handler turns one message into events.
//
// Handle emits the message's events into b through out (pipeline.NewEvent
// with b, then out.Emit) and returns. Returning means the message has been
// read, not that it is settled: the engine closes b and decides the fate
// when every event's fate is known. A nil return with no events emitted
// means "done, delete it" (an s3:TestEvent, a skipped file). An error
// returns the message to the queue with a backoff, whatever was emitted;
// wrap it with Poison when reading again cannot help, so it is logged once
// per message id. ctx ends when the shutdown grace period is over.
type Handler interface {
	Handle(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, m Message, b *pipeline.Batch, out pipeline.Emitter) error {
	return f(ctx, m, b, out)
}

// PoisonError marks a handler error as permanent: the message cannot be
// read however often it is received (a body that is not JSON, an unknown
// shape). It still follows the receive-count path, so a queue's dead-letter
// queue can take it, but it is logged once per message id.
type PoisonError struct{ Err error }

func (e *PoisonError) Error() string { return "permanent: " + e.Err.Error() }

// Unwrap returns the wrapped error.
func (e *PoisonError) Unwrap() error { return e.Err }

// Poison marks err as permanent (see PoisonError). Poison(nil) is nil.
func Poison(err error) error {
	if err == nil {
		return nil
	}
	return &PoisonError{Err: err}
}

// IsPoison reports whether err was marked with Poison.
func IsPoison(err error) bool {
	var p *PoisonError
	return errors.As(err, &p)
}
