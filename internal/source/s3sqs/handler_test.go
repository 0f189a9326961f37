package s3sqs

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
)

const (
	vpcKey = "AWSLogs/123456789012/vpcflowlogs/eu-west-1/2024/05/31/123456789012_vpcflowlogs_eu-west-1_fl-0a1b_20240531T1315Z_3f2a.log.gz"
	ctKey  = "AWSLogs/123456789012/CloudTrail/eu-west-1/2024/05/31/123456789012_CloudTrail_eu-west-1_20240531T1315Z_a1B2.json.gz"
)

func vpcText(n int) []byte {
	var b bytes.Buffer
	b.WriteString("version account-id interface-id srcaddr dstaddr srcport dstport protocol packets bytes start end action log-status\n")
	for i := range n {
		fmt.Fprintf(&b, "2 123456789012 eni-07e1d2c3b4a596870 10.12.%d.%d 172.31.8.19 443 %d 6 18 9432 1717161240 1717161300 ACCEPT OK\n", i/250%250, i%250, 1024+i%60000)
	}
	return b.Bytes()
}

func ctText(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"eventVersion":"1.09","eventTime":"2024-05-31T13:15:%02dZ","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"eu-west-1","eventID":"id-%06d"}`, i%60, i)
	}
	b.WriteString(`]}`)
	return b.Bytes()
}

func mustPoison(t *testing.T, out outcome) {
	t.Helper()
	if !sqsengine.IsPoison(out.err) {
		t.Fatalf("error %v: want a poison error", out.err)
	}
	if out.fired && out.res.OK() {
		t.Fatalf("batch reported OK %+v for a failed message", out.res)
	}
}

func mustDone(t *testing.T, out outcome, events int) {
	t.Helper()
	if out.err != nil {
		t.Fatalf("error %v: want the message done", out.err)
	}
	if !out.fired || !out.res.OK() || len(out.events) != events {
		t.Fatalf("fired=%v result=%+v events=%d, want %d delivered", out.fired, out.res, len(out.events), events)
	}
}

func TestNotificationShapes(t *testing.T) {
	logs := loadService(t, "non-cloudwatch-logs", logsYAML, "")
	umb := loadService(t, "cisco-umbrella", umbrellaYA, "")

	t.Run("test event deleted without events", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		mustDone(t, h.handle(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-31T12:00:00.000Z","Bucket":"b","RequestId":"X","HostId":"Y"}`), 0)
		if h.src.counters.TestEvents.Load() != 1 || len(h.s3.callLog()) != 0 {
			t.Errorf("test events %d, S3 calls %v", h.src.counters.TestEvents.Load(), h.s3.callLog())
		}
	})
	t.Run("SNS-wrapped", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		h.s3.put("b", vpcKey, gz(t, vpcText(7)))
		inner := s3Body("eu-west-1", "b", vpcKey)
		body := fmt.Sprintf(`{"Type":"Notification","MessageId":"4c1e","TopicArn":"arn:aws:sns:eu-west-1:123456789012:t","Message":%q,"Timestamp":"2024-05-31T13:16:40.102Z"}`, inner)
		mustDone(t, h.handle(body), 7)
	})
	t.Run("EventBridge key retried unescaped", func(t *testing.T) {
		h := newHarness(t, umb, nil)
		key := "umbrella/dnslogs/2024-05-31/daily summary:1.csv.gz"
		h.s3.put("b", key, gz(t, []byte(`"2024-05-31 13:05:41","a","b"`+"\n")))
		body := `{"version":"0","detail-type":"Object Created","source":"aws.s3","region":"us-west-1","detail":{"bucket":{"name":"b"},"object":{"key":"umbrella/dnslogs/2024-05-31/daily+summary%3A1.csv.gz","size":20}}}`
		out := h.handle(body)
		mustDone(t, out, 1)
		calls := h.s3.callLog()
		if len(calls) != 2 || !strings.HasPrefix(calls[0], "us-west-1 ") || !strings.HasSuffix(calls[1], key) {
			t.Errorf("S3 calls %q: want the raw key, then the unescaped key, in us-west-1", calls)
		}
		if !strings.Contains(out.events[0].Tag, "sig.cisco.umbrella.dns.") {
			t.Errorf("tag %s", out.events[0].Tag)
		}
	})
	t.Run("non-ObjectCreated records ignored", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		body := strings.Replace(s3Body("eu-west-1", "b", vpcKey), "ObjectCreated:Put", "ObjectRemoved:Delete", 1)
		mustDone(t, h.handle(body), 0)
		if h.src.counters.Ignored.Load() != 1 || len(h.s3.callLog()) != 0 {
			t.Errorf("ignored %d, calls %v", h.src.counters.Ignored.Load(), h.s3.callLog())
		}
	})
	t.Run("region of the record, else the queue's", func(t *testing.T) {
		h := newHarness(t, loadService(t, "audit-events-all", ctYAML, ""), nil)
		h.s3.put("b", ctKey, gz(t, ctText(3)))
		mustDone(t, h.handle(s3Body("ap-south-1", "b", ctKey)), 3)
		mustDone(t, h.handle(fmt.Sprintf(`{"s3Bucket":"b","s3ObjectKey":[%q]}`, ctKey)), 3)
		calls := h.s3.callLog()
		if len(calls) != 2 || !strings.HasPrefix(calls[0], "ap-south-1 ") || !strings.HasPrefix(calls[1], "eu-west-1 ") {
			t.Errorf("S3 calls %q", calls)
		}
	})
	t.Run("several objects, one fails: message not done", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		k2 := strings.Replace(vpcKey, "3f2a", "4444", 1)
		h.s3.put("b", vpcKey, gz(t, vpcText(5)))
		h.s3.put("b", k2, gz(t, vpcText(5)))
		h.s3.denied["b/"+k2] = true
		out := h.handle(s3Body("eu-west-1", "b", vpcKey, k2))
		if out.err == nil || sqsengine.IsPoison(out.err) || len(out.events) != 5 || (out.fired && out.res.OK()) {
			t.Fatalf("err %v, events %d, result %+v: want a retryable error after the first object's 5 events", out.err, len(out.events), out.res)
		}
		h.s3.denied["b/"+k2] = false
		mustDone(t, h.handle(s3Body("eu-west-1", "b", vpcKey, k2)), 10)
	})
}

func TestBadInputs(t *testing.T) {
	logs := loadService(t, "non-cloudwatch-logs", logsYAML, "")
	ct := loadService(t, "audit-events-all", ctYAML, "")

	t.Run("body not JSON", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		out := h.handle("hello, not json")
		mustPoison(t, out)
		if h.src.counters.BadMessages.Load() != 1 {
			t.Errorf("bad messages %d", h.src.counters.BadMessages.Load())
		}
	})
	t.Run("JSON that is not a notification", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		out := h.handle(`{"hello":"world","Records":"nope"}`)
		mustPoison(t, out)
		if h.src.counters.BadMessages.Load() != 1 || !strings.Contains(out.err.Error(), "m-1") {
			t.Errorf("bad messages %d, err %v", h.src.counters.BadMessages.Load(), out.err)
		}
	})
	t.Run("missing object", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		mustDone(t, h.handle(s3Body("eu-west-1", "b", vpcKey)), 0)
		if h.src.counters.MissingObjects.Load() != 1 {
			t.Errorf("missing %d", h.src.counters.MissingObjects.Load())
		}
	})
	t.Run("access denied returns the message with an ERROR", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		h.s3.put("b", vpcKey, gz(t, vpcText(1)))
		h.s3.denied["b/"+vpcKey] = true
		out := h.handle(s3Body("eu-west-1", "b", vpcKey))
		if out.err == nil || sqsengine.IsPoison(out.err) {
			t.Fatalf("err %v: want a retryable error", out.err)
		}
		log := h.logs.String()
		if !strings.Contains(log, "level=ERROR") || !strings.Contains(log, "bucket=b") || !strings.Contains(log, vpcKey) || !strings.Contains(log, "AccessDenied") {
			t.Errorf("log does not name the object and the code:\n%s", log)
		}
		if h.src.counters.ReadErrors.Load() != 1 {
			t.Errorf("read errors %d", h.src.counters.ReadErrors.Load())
		}
	})
	t.Run("zero-byte object", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		h.s3.put("b", vpcKey, nil)
		body := strings.Replace(s3Body("eu-west-1", "b", vpcKey), `"size":1234`, `"size":0`, 1)
		mustDone(t, h.handle(body), 0)
		// Size unknown (CloudTrail's notice): read, found empty.
		h2 := newHarness(t, ct, nil)
		h2.s3.put("b", ctKey, nil)
		mustDone(t, h2.handle(fmt.Sprintf(`{"s3Bucket":"b","s3ObjectKey":[%q]}`, ctKey)), 0)
		if h.src.counters.EmptyObjects.Load() != 1 || h2.src.counters.EmptyObjects.Load() != 1 || len(h.s3.callLog()) != 0 {
			t.Errorf("empty %d/%d, calls %v", h.src.counters.EmptyObjects.Load(), h2.src.counters.EmptyObjects.Load(), h.s3.callLog())
		}
	})
	t.Run("corrupt gzip", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		data := gz(t, vpcText(50000))
		for i := len(data) * 3 / 4; i < len(data)*3/4+64; i++ {
			data[i] ^= 0x5a
		}
		h.s3.put("b", vpcKey, data)
		out := h.handle(s3Body("eu-west-1", "b", vpcKey))
		mustPoison(t, out)
		if len(out.events) == 0 || len(out.events) >= 50000 {
			t.Errorf("%d events: want those before the corruption", len(out.events))
		}
		if !errors.Is(out.err, ErrCorrupt) || h.src.counters.Corrupt.Load() != 1 {
			t.Errorf("err %v, corrupt %d", out.err, h.src.counters.Corrupt.Load())
		}
	})
	t.Run("truncated gzip", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		data := gz(t, vpcText(1000))
		h.s3.put("b", vpcKey, data[:len(data)-20])
		out := h.handle(s3Body("eu-west-1", "b", vpcKey))
		mustPoison(t, out)
		if h.src.counters.Corrupt.Load() != 1 {
			t.Errorf("corrupt %d", h.src.counters.Corrupt.Load())
		}
	})
	t.Run("truncated JSON", func(t *testing.T) {
		h := newHarness(t, ct, nil)
		text := ctText(10)
		cut := bytes.Index(text, []byte("id-000003")) // inside the 4th record
		h.s3.put("b", ctKey, gz(t, text[:cut]))
		out := h.handle(s3Body("eu-west-1", "b", ctKey))
		mustPoison(t, out)
		if len(out.events) != 3 || h.src.counters.Corrupt.Load() != 1 {
			t.Errorf("%d events (want the 3 complete records), corrupt %d", len(out.events), h.src.counters.Corrupt.Load())
		}
	})
	t.Run("connection fails mid-object: retried, not poison", func(t *testing.T) {
		h := newHarness(t, logs, nil)
		data := gz(t, vpcText(20000))
		h.s3.put("b", vpcKey, data)
		h.s3.failAfter["b/"+vpcKey] = len(data) / 2
		out := h.handle(s3Body("eu-west-1", "b", vpcKey))
		if out.err == nil || sqsengine.IsPoison(out.err) || (out.fired && out.res.OK()) {
			t.Fatalf("err %v, result %+v: want a retryable failure", out.err, out.res)
		}
		if h.src.counters.ReadErrors.Load() != 1 || h.src.counters.Corrupt.Load() != 0 {
			t.Errorf("read errors %d, corrupt %d", h.src.counters.ReadErrors.Load(), h.src.counters.Corrupt.Load())
		}
	})
	t.Run("over the size cap", func(t *testing.T) {
		h := newHarness(t, logs, func(o *Options) { o.MaxObjectBytes = 1 << 20 })
		h.s3.put("b", vpcKey, gz(t, vpcText(100000)))
		out := h.handle(s3Body("eu-west-1", "b", vpcKey))
		mustPoison(t, out)
		if !errors.Is(out.err, ErrTooLarge) || h.src.counters.TooLarge.Load() != 1 {
			t.Errorf("err %v, too large %d", out.err, h.src.counters.TooLarge.Load())
		}
	})
	t.Run("skipped and discarded files", func(t *testing.T) {
		h := newHarness(t, ct, nil)
		digest := "AWSLogs/123456789012/CloudTrail-Digest/eu-west-1/2024/05/31/123456789012_CloudTrail-Digest_eu-west-1_trail_eu-west-1_20240531T131500Z.json.gz"
		mustDone(t, h.handle(s3Body("eu-west-1", "b", digest)), 0)
		h.s3.put("b", ctKey, gz(t, []byte(`{"digestStartTime":"x","logFiles":[]}`)))
		mustDone(t, h.handle(s3Body("eu-west-1", "b", ctKey)), 0)
		if h.src.counters.Skipped.Load() != 1 || h.src.counters.Discarded.Load() != 1 || len(h.s3.callLog()) != 1 {
			t.Errorf("skipped %d, discarded %d, calls %v", h.src.counters.Skipped.Load(), h.src.counters.Discarded.Load(), h.s3.callLog())
		}
		h2 := newHarness(t, logs, nil)
		h2.s3.put("b", "misc/readme.txt", []byte("hello\nworld\n"))
		mustDone(t, h2.handle(s3Body("eu-west-1", "b", "misc/readme.txt", "x/flows.parquet")), 0)
		if h2.src.counters.Discarded.Load() != 1 || h2.src.counters.Skipped.Load() != 1 {
			t.Errorf("discarded %d, skipped %d", h2.src.counters.Discarded.Load(), h2.src.counters.Skipped.Load())
		}
		if got := h2.src.Cycle().Counts().DiscardedFiles; got != 2 {
			t.Errorf("cycle discarded files %d, want 2", got)
		}
	})
	t.Run("dropped event names counted", func(t *testing.T) {
		h := newHarness(t, ct, nil)
		text := bytes.ReplaceAll(ctText(10), []byte(`"DescribeInstances","awsRegion":"eu-west-1","eventID":"id-00000`), []byte(`"Decrypt","awsRegion":"eu-west-1","eventID":"id-00000`))
		h.s3.put("b", ctKey, gz(t, text))
		mustDone(t, h.handle(s3Body("eu-west-1", "b", ctKey)), 0)
		if h.src.counters.Dropped.Load() != 10 || h.src.Cycle().Counts().Dropped != 10 {
			t.Errorf("dropped %d", h.src.counters.Dropped.Load())
		}
	})
}
