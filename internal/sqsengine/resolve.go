package sqsengine

import (
	"context"
	"encoding/json"
	"errors"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/aws/smithy-go"
)

// Queue is a resolved queue.
type Queue struct {
	// Name is the queue name (the last path element of the URL).
	Name string
	URL  string
	// FIFO is true for a FIFO queue.
	FIFO bool
	// DeadLetter is true when the queue has a RedrivePolicy: SQS moves a
	// message to the dead-letter queue after DeadLetterMaxReceives receives,
	// so the engine never deletes a failing message itself.
	DeadLetter            bool
	DeadLetterMaxReceives int
	// VisibilityTimeout is the queue's default visibility timeout;
	// HasVisibilityTimeout says whether SQS reported it.
	VisibilityTimeout    time.Duration
	HasVisibilityTimeout bool
}

// QueueError is catalogue entry B27: the queue cannot be resolved or read
// in a region. Its text is the product's, exactly.
type QueueError struct {
	Queue   string // sqs_queue_name as configured
	Service string
	Region  string
	// Code and Message are AWS's error code and message; Code is empty when
	// the failure was not an AWS answer (a network error), and Message then
	// holds the error text.
	Code    string
	Message string
	Err     error
}

func (e *QueueError) Error() string {
	reason := e.Message
	if e.Code != "" {
		reason = e.Code + ": " + e.Message
	}
	return `Queue "` + e.Queue + `" used by service "` + e.Service + `" in "` + e.Region +
		`" region is not available: reason: ` + reason
}

// Unwrap returns the SDK error.
func (e *QueueError) Unwrap() error { return e.Err }

// Kind is the catalogue kind of the error.
func (e *QueueError) Kind() string { return "AwsQueueException" }

// ID is the catalogue id of the error.
func (e *QueueError) ID() int { return 0 }

func queueError(queue, service, region string, err error) *QueueError {
	qe := &QueueError{Queue: queue, Service: service, Region: region, Err: err}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		qe.Code, qe.Message = ae.ErrorCode(), ae.ErrorMessage()
	} else {
		qe.Message = err.Error()
	}
	return qe
}

// queueGone reports whether err says the queue itself is not there (deleted
// while running), as opposed to a transient failure.
func queueGone(err error) bool {
	var nq *types.QueueDoesNotExist
	if errors.As(err, &nq) {
		return true
	}
	var ae smithy.APIError
	return errors.As(err, &ae) && (ae.ErrorCode() == "AWS.SimpleQueueService.NonExistentQueue" || ae.ErrorCode() == "QueueDoesNotExist")
}

// Resolve finds a queue in the client's region and reads the attributes the
// engine needs. queue is a name (resolved with GetQueueUrl) or, when it
// starts with https:// or http://, the queue URL itself. Any failure is a
// *QueueError naming the queue, service and region. validate --check calls
// it to prove a queue is readable.
func Resolve(ctx context.Context, c Client, service, region, queue string) (Queue, error) {
	q := Queue{Name: queue}
	if strings.HasPrefix(queue, "https://") || strings.HasPrefix(queue, "http://") {
		q.URL = queue
		if u, err := url.Parse(queue); err == nil {
			q.Name = path.Base(u.Path)
		}
	} else {
		out, err := c.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: &queue})
		if err != nil {
			return Queue{}, queueError(queue, service, region, err)
		}
		q.URL = deref(out.QueueUrl)
	}
	attrs, err := c.GetQueueAttributes(ctx, &sqs.GetQueueAttributesInput{
		QueueUrl: &q.URL,
		AttributeNames: []types.QueueAttributeName{
			types.QueueAttributeNameFifoQueue,
			types.QueueAttributeNameRedrivePolicy,
			types.QueueAttributeNameVisibilityTimeout,
		},
	})
	if err != nil {
		return Queue{}, queueError(queue, service, region, err)
	}
	a := attrs.Attributes
	q.FIFO = a[string(types.QueueAttributeNameFifoQueue)] == "true" || strings.HasSuffix(q.Name, ".fifo")
	if v, err := strconv.Atoi(a[string(types.QueueAttributeNameVisibilityTimeout)]); err == nil {
		q.VisibilityTimeout = time.Duration(v) * time.Second
		q.HasVisibilityTimeout = true
	}
	if rp := a[string(types.QueueAttributeNameRedrivePolicy)]; rp != "" {
		q.DeadLetter = true
		q.DeadLetterMaxReceives = redriveMaxReceives(rp)
	}
	return q, nil
}

// redriveMaxReceives reads maxReceiveCount from a RedrivePolicy document
// ({"deadLetterTargetArn":"…","maxReceiveCount":5}; SQS has returned the
// count both as a number and as a string). 0 when absent or unreadable.
func redriveMaxReceives(policy string) int {
	var doc struct {
		MaxReceiveCount json.RawMessage `json:"maxReceiveCount"`
	}
	if err := json.Unmarshal([]byte(policy), &doc); err != nil {
		return 0
	}
	n, _ := strconv.Atoi(strings.Trim(string(doc.MaxReceiveCount), `"`))
	return n
}
