package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// twelve event sources: eleven AWS services and one custom source.
var eventSources = []string{"aws.ec2", "aws.ssm", "aws.s3", "aws.sts", "aws.backup", "aws.kms", "aws.tag",
	"aws.config", "aws.logs", "aws.cloudtrail", "aws.ec2-instance-connect", "com.acme.orders"}

func eventBody(i int, group string) string {
	return fmt.Sprintf(`{"version":"0","id":"ev-%d","detail-type":"Demo","source":%q,"account":"123456789012","time":"2024-05-31T13:20:11Z","region":"us-east-1","resources":[],"detail":{"seq":%d,"group":%q}}`,
		i, eventSources[i%len(eventSources)], i, group)
}

// 500 EventBridge events from 12 sources go through service-events-all on
// a FIFO queue (auto_event_type on) and then a standard queue (off), and a
// Security Hub event with 3 findings through sqs-cloudwatch-consumer, all
// through the Devo output into rsyslog: the right tag for each event, order
// kept within each message group, every message deleted.
func TestEventsThroughDevoIntoRsyslog(t *testing.T) {
	const n = 500
	const acct = "000000000000"
	for _, tc := range []struct {
		name, queue string
		fifo, auto  bool
	}{
		{"fifo-auto", "e2e-events.fifo", true, true},
		{"standard-plain", "e2e-events", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
			attrs := map[string]string(nil)
			if tc.fifo {
				attrs = map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}
			}
			q := e.queue(tc.queue, attrs)
			sh := e.queue("e2e-securityhub.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
			for i := 0; i < n; i++ {
				group := ""
				if tc.fifo {
					group = fmt.Sprint("g", i%25) // fauxqs hands out one message per group per receive
				}
				e.send(q, eventBody(i, group), group)
			}
			e.send(sh, samples.SecurityHub(3), "devo-collector")

			// Should a receive's answer be lost on the wire (the known cause,
			// "use of closed network connection", is fixed by sdkhttp), SQS
			// would return the same messages to the engine's retry with the
			// same ReceiveRequestAttemptId, but fauxqs ignores it, so a short
			// visibility timeout bounds the stall.
			cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), fmt.Sprintf(`
      service-events-all: {sqs_queue_name: %s, auto_event_type: %v, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
      sqs-cloudwatch-consumer: {sqs_queue_name: e2e-securityhub.fifo, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
`, tc.queue, tc.auto))
			p := e.start(cfg)
			eventually(t, 3*time.Minute, "all events at rsyslog", func() bool { return len(dataMessages(rs.Messages())) >= n+3 })
			eventually(t, time.Minute, "every message deleted", func() bool { return e.pending(q)+e.pending(sh) == 0 })
			terminate(t, p)

			lastSeq := map[string]int{}
			findings := 0
			seen := map[int]bool{}
			for _, m := range dataMessages(rs.Messages()) {
				if strings.HasPrefix(m.Tag, "cloud.aws.securityhub.findings."+acct+".us-east-1.1") {
					findings++
					continue
				}
				var ev struct {
					Source string
					Detail struct {
						Seq   int
						Group string
					}
					PullingID string `json:"@devo_pulling_id"`
				}
				if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
					t.Fatalf("payload %q: %v", m.Payload(), err)
				}
				if ev.PullingID == "" {
					t.Errorf("event %d has no @devo_pulling_id", ev.Detail.Seq)
				}
				want := "events"
				if tc.auto && strings.HasPrefix(ev.Source, "aws.") {
					want = strings.TrimPrefix(ev.Source, "aws.")
				}
				if wantTag := "cloud.aws.cloudwatch." + want + "." + acct + ".us-east-1.1"; m.Tag != wantTag {
					t.Errorf("event %d from %s: tag %s, want %s", ev.Detail.Seq, ev.Source, m.Tag, wantTag)
				}
				seen[ev.Detail.Seq] = true
				if tc.fifo {
					if last, ok := lastSeq[ev.Detail.Group]; ok && ev.Detail.Seq < last {
						t.Errorf("group %s: event %d arrived after %d", ev.Detail.Group, ev.Detail.Seq, last)
					}
					lastSeq[ev.Detail.Group] = ev.Detail.Seq
				}
			}
			if len(seen) != n {
				t.Errorf("%d distinct events arrived, want %d", len(seen), n)
			}
			if findings != 3 {
				t.Errorf("%d findings events, want 3 (one per finding)", findings)
			}
		})
	}
}

// One FIFO message group of 60 messages through service-events-all with
// write_ahead on and ack_settle at 10 minutes. Without write-ahead each
// message would wait 10 minutes for its delete before SQS hands out the
// next (fauxqs hands out one message per group per receive); with it every
// message is deleted once journaled, and the events arrive in order.
func TestWriteAheadFIFOGroupDoesNotWaitForSettle(t *testing.T) {
	const n = 60
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	q := e.queue("e2e-wal.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
	for i := range n {
		e.send(q, eventBody(i, "devo-collector"), "devo-collector")
	}
	cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, "      write_ahead: true\n      ack_settle: 10m\n"), `
      service-events-all: {sqs_queue_name: e2e-wal.fifo, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
`)
	p := e.start(cfg)
	eventually(t, 2*time.Minute, "every message deleted", func() bool { return e.pending(q) == 0 })
	eventually(t, time.Minute, "all events at rsyslog", func() bool { return len(dataMessages(rs.Messages())) >= n })
	terminate(t, p)
	last := -1
	seen := map[int]bool{}
	for _, m := range dataMessages(rs.Messages()) {
		var ev struct{ Detail struct{ Seq int } }
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			t.Fatalf("payload %q: %v", m.Payload(), err)
		}
		if seen[ev.Detail.Seq] {
			continue
		}
		seen[ev.Detail.Seq] = true
		if ev.Detail.Seq < last {
			t.Errorf("event %d arrived after %d", ev.Detail.Seq, last)
		}
		last = ev.Detail.Seq
	}
	if len(seen) != n {
		t.Errorf("%d distinct events arrived, want %d", len(seen), n)
	}
}
