package sqssource_test

import (
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/source/sqssource"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/svcconfig"
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
