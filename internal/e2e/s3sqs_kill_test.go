package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// TestS3SQSSurvivesKill9: 30 CloudTrail files of 1,000 records each, on a
// standard queue whose VisibilityTimeout is 15 s, flow through the binary,
// the Devo output and rsyslog. The collector is killed with SIGKILL at
// three random moments of the flow and started again each time. The
// configuration does not set sqs_visibility_timeout: the messages the dead
// process held come back after the queue's 15 s, so every event arrives
// within a minute of the last restart (with the old fixed 300 s timeout
// nothing came back for five minutes).
func TestS3SQSSurvivesKill9(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	e.emu.MustCreateBucket(t, "kill-logs")
	q := e.queue("kill-cloudtrail", map[string]string{"VisibilityTimeout": "15"})

	const files, perFile = 30, 1000
	const total = files * perFile
	for f := range files {
		key, body := uniqueCloudTrail(f, perFile)
		if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("kill-logs"), Key: aws.String(key),
			Body: strings.NewReader(string(body))}); err != nil {
			t.Fatal(err)
		}
		e.send(q, samples.S3Notification("kill-logs", key, len(body)), "")
	}
	cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      audit-events-all: {types: [audits_s3], sqs_queue_name: kill-cloudtrail, sqs_wait_time_seconds: 1}
`)

	p := e.start(cfg)
	if !strings.Contains(waitLog(t, p, "sqs consumer started"), "visibility_timeout=15s") {
		t.Fatalf("the consumer does not use the queue's 15 s visibility timeout:\n%s", p.log())
	}
	for kill := 1; kill <= 3; kill++ {
		// A random moment of the flow: once 1 to 4 MB more have reached
		// the receiver since the last start (all 30,000 events are about
		// 18 MB in its file). The receiver is polled every 5 ms, so the
		// kill lands while events stream in.
		base := rs.Bytes()
		step := int64(1<<20 + rand.IntN(3<<20))
		deadline := time.Now().Add(2 * time.Minute)
		for rs.Bytes() < base+step {
			if time.Now().After(deadline) {
				t.Fatalf("kill %d: no %d more bytes at the receiver within 2 minutes", kill, step)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		p.wait(10 * time.Second)
		left := e.pending(q)
		if left == 0 {
			t.Fatalf("kill %d came after the last file was delivered: no flow was interrupted", kill)
		}
		t.Logf("kill %d: %d of %d files delivered, %d distinct events of %d at the receiver",
			kill, files-left, files, distinctEvents(rs.Messages()), total)
		p = e.start(cfg)
	}
	restarted := time.Now()

	eventually(t, time.Minute, fmt.Sprintf("all %d events within a minute of the last restart", total), func() bool {
		return distinctEvents(rs.Messages()) == total
	})
	t.Logf("every event arrived %s after the last restart; %d deliveries in all (%d duplicates)",
		time.Since(restarted).Round(100*time.Millisecond), len(dataMessages(rs.Messages())), len(dataMessages(rs.Messages()))-total)
	eventually(t, 30*time.Second, "every SQS message deleted", func() bool { return e.pending(q) == 0 })
	terminate(t, p)
}

// uniqueCloudTrail is a gzip CloudTrail file whose records carry eventIDs
// unique across files ("kill-<file>-<n>").
func uniqueCloudTrail(file, n int) (key string, body []byte) {
	var b strings.Builder
	b.WriteString(`{"Records":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"eventVersion":"1.09","userIdentity":{"type":"IAMUser","accountId":"%[1]s"},"eventTime":"2024-05-31T13:14:%02[2]dZ","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"198.51.100.23","requestID":"req-%[3]d-%[4]d","eventID":"kill-%[3]d-%[4]d","readOnly":true,"eventType":"AwsApiCall","recipientAccountId":"%[1]s"}`,
			samples.Account, i%60, file, i)
	}
	b.WriteString(`]}`)
	key = fmt.Sprintf("AWSLogs/%[1]s/CloudTrail/us-east-1/2024/05/31/%[1]s_CloudTrail_us-east-1_20240531T1315Z_kill%04[2]d.json.gz", samples.Account, file)
	return key, samples.Gzip(b.String())
}

// distinctEvents is the number of distinct kill-… eventIDs received.
func distinctEvents(msgs []rsyslog.Message) int {
	seen := map[string]struct{}{}
	for _, m := range msgs {
		p := m.Payload()
		i := strings.Index(p, `"eventID":"kill-`)
		if i < 0 {
			continue
		}
		rest := p[i+len(`"eventID":"`):]
		if j := strings.IndexByte(rest, '"'); j > 0 {
			seen[rest[:j]] = struct{}{}
		}
	}
	return len(seen)
}

// waitLog waits until the collector's output holds substr and returns the
// line holding it.
func waitLog(t *testing.T, p *proc, substr string) string {
	t.Helper()
	var line string
	eventually(t, time.Minute, "log line "+substr, func() bool {
		for _, l := range strings.Split(p.log(), "\n") {
			if strings.Contains(l, substr) {
				line = l
				return true
			}
		}
		return false
	})
	return line
}
