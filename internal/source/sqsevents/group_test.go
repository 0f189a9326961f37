package sqsevents

import (
	"context"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/pipetest"
)

// batchFIFO is an SQS client that, unlike fauxqs, returns many messages of
// one group in a single receive, as SQS FIFO queues may. It serves its
// messages in order, ten per receive, each once.
type batchFIFO struct {
	sqsengine.Client

	mu      sync.Mutex
	pending []types.Message
	deleted int
}

func (c *batchFIFO) GetQueueUrl(_ context.Context, in *sqs.GetQueueUrlInput, _ ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return &sqs.GetQueueUrlOutput{QueueUrl: aws.String("https://sqs.us-east-1.amazonaws.com/000000000000/" + *in.QueueName)}, nil
}

func (c *batchFIFO) GetQueueAttributes(context.Context, *sqs.GetQueueAttributesInput, ...func(*sqs.Options)) (*sqs.GetQueueAttributesOutput, error) {
	return &sqs.GetQueueAttributesOutput{Attributes: map[string]string{"FifoQueue": "true", "VisibilityTimeout": "300"}}, nil
}

func (c *batchFIFO) ReceiveMessage(ctx context.Context, in *sqs.ReceiveMessageInput, _ ...func(*sqs.Options)) (*sqs.ReceiveMessageOutput, error) {
	c.mu.Lock()
	n := min(int(in.MaxNumberOfMessages), len(c.pending))
	out := c.pending[:n]
	c.pending = c.pending[n:]
	c.mu.Unlock()
	if n == 0 {
		// An empty long poll.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return &sqs.ReceiveMessageOutput{Messages: out}, nil
}

func (c *batchFIFO) DeleteMessageBatch(_ context.Context, in *sqs.DeleteMessageBatchInput, _ ...func(*sqs.Options)) (*sqs.DeleteMessageBatchOutput, error) {
	out := &sqs.DeleteMessageBatchOutput{}
	c.mu.Lock()
	c.deleted += len(in.Entries)
	c.mu.Unlock()
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.DeleteMessageBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (c *batchFIFO) ChangeMessageVisibilityBatch(_ context.Context, in *sqs.ChangeMessageVisibilityBatchInput, _ ...func(*sqs.Options)) (*sqs.ChangeMessageVisibilityBatchOutput, error) {
	out := &sqs.ChangeMessageVisibilityBatchOutput{}
	for _, e := range in.Entries {
		out.Successful = append(out.Successful, types.ChangeMessageVisibilityBatchResultEntry{Id: e.Id})
	}
	return out, nil
}

func (c *batchFIFO) deletedCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.deleted
}

// jitterSource delays every Emit of the wrapped source by a random few
// milliseconds: if two workers ever handled messages of one group at the
// same time, their events would come out of order.
type jitterSource struct{ src pipeline.Source }

func (j jitterSource) Run(ctx context.Context, out pipeline.Emitter) error {
	return j.src.Run(ctx, jitterEmitter{out})
}

type jitterEmitter struct{ out pipeline.Emitter }

func (j jitterEmitter) Emit(ctx context.Context, ev *pipeline.Event) error {
	select {
	case <-time.After(time.Duration(rand.IntN(3000)) * time.Microsecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	return j.out.Emit(ctx, ev)
}

// TestGroupHandledSequentially checks the engine's FIFO contract this
// source relies on: when one receive returns many messages of a group,
// they are handled one after the other, in order, even with many workers
// and random delays while emitting.
func TestGroupHandledSequentially(t *testing.T) {
	const n = 200
	client := &batchFIFO{}
	groups := []string{"devo-collector", "other"}
	for i := range n {
		client.pending = append(client.pending, types.Message{
			MessageId:     aws.String("m" + strconv.Itoa(i)),
			ReceiptHandle: aws.String("r" + strconv.Itoa(i)),
			Body:          aws.String(envelope(sources[i%len(sources)], i)),
			Attributes: map[string]string{
				"MessageGroupId":          groups[i%3/2], // two of three in devo-collector
				"ApproximateReceiveCount": "1",
			},
		})
	}
	svc := loadService(t, "service-events-all", "        sqs_queue_name: batch.fifo\n        auto_event_type: true\n")
	src, err := newSource(Options{
		Service: svc, Region: "us-east-1", InputName: "aws", SQS: client,
		AccountID: func(context.Context) (string, error) { return "000000000000", nil },
		Log:       quiet, Workers: 8, Tune: fastEngine,
	})
	if err != nil {
		t.Fatal(err)
	}
	rec := pipetest.NewRecorder()
	run := pipetest.Run(t, rec, pipeline.Unit{Name: "test", Source: jitterSource{src}})
	pipetest.WaitFor(t, time.Minute, "every message deleted", func() bool { return client.deletedCount() >= n })
	run.Shutdown(t)

	perGroup := map[string][]int{}
	for _, ev := range rec.Delivered() {
		seq := decode(t, ev.Payload).Detail.Seq
		g := groups[seq%3/2]
		perGroup[g] = append(perGroup[g], seq)
	}
	total := 0
	for g, seqs := range perGroup {
		total += len(seqs)
		if !slices.IsSorted(seqs) {
			t.Errorf("group %s delivered out of order: %v", g, seqs)
		}
	}
	if total != n {
		t.Errorf("%d events, want %d", total, n)
	}
}
