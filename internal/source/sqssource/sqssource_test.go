package sqssource_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/smithy-go"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqssource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/syncbuf"
)

// TestEngineConfig: the service's SQS keys as the engine gets them, with
// "no long poll" spelled out rather than left to a zero.
func TestEngineConfig(t *testing.T) {
	def := sqssource.EngineConfig(svcconfig.Load(t, "cisco-umbrella", "        sqs_queue_name: q\n", ""), "eu-west-1")
	if def.Queue != "q" || def.Region != "eu-west-1" || def.Service != "cisco-umbrella" || def.MaxMessages != 10 ||
		def.WaitTime != 20*time.Second || def.NoLongPoll || def.VisibilityTimeout != 0 || def.MaxReceiveCount != 5 {
		t.Errorf("defaults: %+v; want queue q, 10 messages, 20 s long poll, the queue's visibility (0), 5 receives", def)
	}
	set := sqssource.EngineConfig(svcconfig.Load(t, "service-events-all",
		"        sqs_queue_name: q.fifo\n        sqs_wait_time_seconds: 0\n        sqs_visibility_timeout: 45\n        sqs_max_messages: 3\n        max_receive_count: 9\n", ""), "us-east-1")
	if !set.NoLongPoll || set.VisibilityTimeout != 45*time.Second || set.MaxMessages != 3 || set.MaxReceiveCount != 9 {
		t.Errorf("set: %+v; want no long poll, 45 s visibility, 3 messages, 9 receives", set)
	}
	seven := sqssource.EngineConfig(svcconfig.Load(t, "audit-events-all",
		"        types: [audits_s3]\n        sqs_queue_name: q\n        sqs_wait_time_seconds: 7\n", ""), "us-east-1")
	if seven.NoLongPoll || seven.WaitTime != 7*time.Second {
		t.Errorf("sqs_wait_time_seconds 7: %+v", seven)
	}
}

// missingQueue answers every GetQueueUrl with "no such queue".
type missingQueue struct{ sqsengine.Client }

func (missingQueue) GetQueueUrl(context.Context, *sqs.GetQueueUrlInput, ...func(*sqs.Options)) (*sqs.GetQueueUrlOutput, error) {
	return nil, &smithy.GenericAPIError{Code: "AWS.SimpleQueueService.NonExistentQueue", Message: "The specified queue does not exist."}
}

// TestCycleLinesWhenTheQueueIsMissing: a run that cannot resolve its queue
// still logs its cycle's pair of lines, whichever the wording, then returns
// the B27 error.
func TestCycleLinesWhenTheQueueIsMissing(t *testing.T) {
	for _, tt := range []struct {
		lines      sqssource.Lines
		want, not  string
		service    string
		extraTypes string
	}{
		{sqssource.EventLines, `Received 0 response(s), received 0 message(s)`, "", "service-events-all", ""},
		{sqssource.S3Lines, `Received 0 response(s), messages (fromSQS/generated): 0/0`, "", "cisco-umbrella", ""},
	} {
		var logs syncbuf.Buffer
		svc := svcconfig.Load(t, tt.service, "        sqs_queue_name: gone\n"+tt.extraTypes, "")
		u, err := sqssource.New(sqssource.Options{Service: svc, Region: "us-east-1", SQS: missingQueue{},
			AccountID: func(context.Context) (string, error) { return "123456789012", nil },
			Log:       slog.New(slog.NewTextHandler(&logs, nil))},
			tt.lines, sqsengine.HandlerFunc(func(context.Context, sqsengine.Message, *pipeline.Batch, pipeline.Emitter) error { return nil }))
		if err != nil {
			t.Fatal(err)
		}
		err = u.Run(context.Background(), nil)
		var qe *sqsengine.QueueError
		if !errors.As(err, &qe) {
			t.Fatalf("Run: %v, want a *sqsengine.QueueError", err)
		}
		out := logs.String()
		if !strings.Contains(out, tt.want) {
			t.Errorf("%s: log lacks %q:\n%s", tt.service, tt.want, out)
		}
		if !strings.Contains(out, `Starting a new pulling from \"gone\" queue`) {
			t.Errorf("%s: no starting line:\n%s", tt.service, out)
		}
		if tt.not != "" && strings.Contains(out, tt.not) {
			t.Errorf("%s: log has %q:\n%s", tt.service, tt.not, out)
		}
	}
}
