package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// 200 S3 objects of mixed kinds go through the S3+SQS services, the Devo
// TLS output and a real rsyslog: exact counts per tag, every payload exactly
// as composed (so payload memory reused too early would show), every SQS message
// deleted, the collector's own INFO lines delivered too, and SIGTERM drains
// and exits 0.
func TestS3SQSThroughDevoIntoRsyslog(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	e.emu.MustCreateBucket(t, "e2e-logs")
	queues := map[string]string{
		"e2e-cloudtrail": e.queue("e2e-cloudtrail", nil),
		"e2e-s3-logs":    e.queue("e2e-s3-logs", nil),
		"e2e-umbrella":   e.queue("e2e-umbrella", nil),
	}

	want := map[string]int{}
	wantPayloads := map[string]int{} // every event's payload, as composed
	const acct = "000000000000"      // fauxqs's GetCallerIdentity account
	put := func(o samples.Object, queue, tag string) {
		if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("e2e-logs"), Key: aws.String(o.Key), Body: strings.NewReader(string(o.Body))}); err != nil {
			t.Fatal(err)
		}
		e.send(queues[queue], samples.S3Notification("e2e-logs", o.Key, len(o.Body)), "")
		want[tag] += o.Events
		addPayloads(t, wantPayloads, o)
	}
	for i := 0; i < 200; i++ {
		switch i % 7 {
		case 0:
			put(samples.CloudTrail(i, 30), "e2e-cloudtrail", "") // tags per eventSource, counted below
		case 1:
			put(samples.VPCFlow(i, 2, 40), "e2e-s3-logs", "cloud.aws.vpc.flowlogs."+acct+".us-east-1.1")
		case 2:
			put(samples.VPCFlow(i, 5, 10), "e2e-s3-logs", "cloud.aws.vpc.flowlogs."+acct+".us-east-1.1")
		case 3:
			put(samples.CloudFront(i, 15), "e2e-s3-logs", "cloud.aws.cloudfront.logs."+acct+".us-east-1.1")
		case 4:
			put(samples.Umbrella(i, "dnslogs", 12), "e2e-umbrella", "sig.cisco.umbrella.dns."+acct+".us-east-1.1")
		case 5:
			put(samples.Umbrella(i, "iplogs", 8), "e2e-umbrella", "sig.cisco.umbrella.ip."+acct+".us-east-1.1")
		case 6:
			put(samples.Umbrella(i, "proxylogs", 5), "e2e-umbrella", "sig.cisco.umbrella.proxy."+acct+".us-east-1.1")
		}
	}
	// CloudTrail records rotate over the sample sources; 30 per file.
	ctFiles := (200 + 6) / 7
	for i := 0; i < ctFiles*30; i++ {
		src := samples.CloudTrailSources[(i%30)%len(samples.CloudTrailSources)]
		want["cloud.aws.cloudtrail."+src+"."+acct+".us-east-1.1"]++
	}
	delete(want, "")
	total := 0
	for _, n := range want {
		total += n
	}

	metricsAddr := freeAddr(t)
	// A short visibility timeout bounds the delay should a receive's answer
	// be lost on the wire (see events_test.go).
	cfg := e.writeConfig("  metrics_listen: "+metricsAddr, e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      audit-events-all: {types: [audits_s3], sqs_queue_name: e2e-cloudtrail, auto_event_type: true, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
      non-cloudwatch-logs: {types: [flowlogs, cloudfrontlogs], sqs_queue_name: e2e-s3-logs, auto_event_type: true, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
      cisco-umbrella: {sqs_queue_name: e2e-umbrella, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
`)
	p := e.start(cfg)

	eventually(t, 3*time.Minute, fmt.Sprintf("%d data events at rsyslog", total), func() bool {
		return len(dataMessages(rs.Messages())) >= total
	})
	eventually(t, time.Minute, "every SQS message deleted", func() bool {
		n := 0
		for _, u := range queues {
			n += e.pending(u)
		}
		return n == 0
	})
	// /metrics counts every event as delivered for its unit, and /healthz
	// is 200 while everything runs.
	umbrella := want["sig.cisco.umbrella.dns."+acct+".us-east-1.1"] + want["sig.cisco.umbrella.ip."+acct+".us-east-1.1"] + want["sig.cisco.umbrella.proxy."+acct+".us-east-1.1"]
	metrics := httpGet(t, "http://"+metricsAddr+"/metrics", 200)
	for _, line := range []string{
		fmt.Sprintf(`devo_collector_events_delivered_total{input="aws",region="us-east-1",service="cisco-umbrella"} %d`, umbrella),
		`devo_collector_events_failed_total{input="aws",region="us-east-1",service="cisco-umbrella"} 0`,
		`devo_collector_output_queue_messages{output="devo"} 0`,
	} {
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics lacks %q", line)
		}
	}
	if !strings.Contains(metrics, `devo_collector_output_events_delivered_total{output="devo"}`) {
		t.Errorf("/metrics lacks the output's delivered counter")
	}
	httpGet(t, "http://"+metricsAddr+"/healthz", 200)
	terminate(t, p)

	msgs := rs.Messages()
	checkPayloads(t, wantPayloads, dataMessages(msgs))
	got := countTags(dataMessages(msgs))
	for tag, n := range want {
		if got[tag] != n {
			t.Errorf("tag %s: %d events, want %d", tag, got[tag], n)
		}
	}
	for tag, n := range got {
		if _, ok := want[tag]; !ok {
			t.Errorf("unexpected tag %s (%d events)", tag, n)
		}
	}

	// The collector's own INFO records arrive as devo.collectors.out.local.info.
	var started bool
	for _, m := range msgs {
		if m.Tag != "devo.collectors.out.local.info" {
			continue
		}
		var payload map[string]any
		if err := json.Unmarshal([]byte(m.Payload()), &payload); err != nil {
			t.Fatalf("internal message is not JSON: %q", m.Payload())
		}
		if strings.HasPrefix(fmt.Sprint(payload["msg"]), "collector started") && payload["level"] == "info" && payload["collector_name"] == "e2e" {
			started = true
		}
	}
	if !started {
		t.Errorf("no devo.collectors.out.local.info record for \"collector started\" at the receiver; tags: %v", countTags(msgs))
	}
	if !strings.Contains(p.log(), "collector stopped") {
		t.Errorf("no orderly stop in the log")
	}
}

// Events accepted while the receiver is down are spooled (their SQS
// messages deleted), survive a kill -9, and reach the receiver after a
// restart before anything pulled after it.
func TestSpooledEventsSurviveSIGKILL(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	rs.Stop() // the receiver is down from the start; its port is known
	q := e.queue("e2e-events.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
	const before = 60
	for i := 0; i < before; i++ {
		e.send(q, fmt.Sprintf(`{"version":"0","id":"old-%d","detail-type":"T","source":"aws.ec2","account":"1","time":"2024-05-31T13:20:11Z","region":"us-east-1","resources":[],"detail":{"n":%d}}`, i, i), fmt.Sprint("g", i%4))
	}
	// A receive cut short by the kill can still take a message on the
	// emulator's side (as on SQS); a short visibility timeout bounds the delay.
	cfg := e.writeConfig("  queue_max_size_in_messages: 5", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      service-events-all: {sqs_queue_name: e2e-events.fifo, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 10}
`)
	p := e.start(cfg)
	// Only durable spooling can let the messages be deleted: the receiver never ran.
	eventually(t, 2*time.Minute, "every message deleted after spooling", func() bool { return e.pending(q) == 0 })
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.wait(10 * time.Second)
	if n := len(dataMessages(rs.Messages())); n != 0 {
		t.Fatalf("%d events reached a receiver that was down", n)
	}

	rs.Start()
	p2 := e.start(cfg)
	const after = 10
	for i := 0; i < after; i++ {
		e.send(q, fmt.Sprintf(`{"version":"0","id":"new-%d","detail-type":"T","source":"aws.ec2","account":"1","time":"2024-05-31T13:20:11Z","region":"us-east-1","resources":[],"detail":{"n":%d}}`, i, i), "g0")
	}
	eventually(t, 2*time.Minute, "old and new events at the receiver", func() bool {
		return len(dataMessages(rs.Messages())) >= before+after
	})
	terminate(t, p2)

	seen := map[string]int{}
	lastOld, firstNew := -1, -1
	for i, m := range dataMessages(rs.Messages()) {
		var ev struct{ ID string }
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			t.Fatalf("payload %q: %v", m.Payload(), err)
		}
		seen[ev.ID]++
		if strings.HasPrefix(ev.ID, "old-") {
			lastOld = i
		} else if firstNew < 0 {
			firstNew = i
		}
	}
	for i := 0; i < before; i++ {
		if seen[fmt.Sprint("old-", i)] == 0 {
			t.Errorf("spooled event old-%d lost", i)
		}
	}
	for i := 0; i < after; i++ {
		if seen[fmt.Sprint("new-", i)] == 0 {
			t.Errorf("new event new-%d lost", i)
		}
	}
	dups := 0
	for _, n := range seen {
		dups += n - 1
	}
	t.Logf("%d events arrived, %d of them duplicates", len(dataMessages(rs.Messages())), dups)
	if firstNew >= 0 && lastOld > firstNew {
		t.Errorf("a spooled event arrived after a newly pulled one (last old at %d, first new at %d)", lastOld, firstNew)
	}
}

// A client certificate from another CA makes the process exit non-zero at
// start with the documented error naming the files.
func TestRejectedCertificateExitsNonZero(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	e.queue("e2e-events.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"})
	cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.RogueCert, e.cert.RogueKey, ""), `
      service-events-all: {sqs_queue_name: e2e-events.fifo}
`)
	p := e.start(cfg)
	code := p.wait(60 * time.Second)
	if code <= 0 {
		t.Fatalf("exit code %d, want non-zero", code)
	}
	log := p.log()
	for _, want := range []string{"OutputConnectionError(1)", "Client certificate rejected", e.cert.RogueCert} {
		if !strings.Contains(log, want) {
			t.Errorf("log does not contain %q", want)
		}
	}
}

// addPayloads adds the payloads the collector should send for o: each
// CloudTrail record compacted, or each data line of a text format (VPC Flow
// and CloudFront headers are not events).
func addPayloads(t *testing.T, m map[string]int, o samples.Object) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(o.Body))
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(o.Key, "/CloudTrail/") {
		var doc struct{ Records []json.RawMessage }
		if err := json.Unmarshal(text, &doc); err != nil {
			t.Fatal(err)
		}
		for _, r := range doc.Records {
			var b bytes.Buffer
			if err := json.Compact(&b, r); err != nil {
				t.Fatal(err)
			}
			m[b.String()]++
		}
		return
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(text), "\n"), "\n") {
		if strings.HasPrefix(line, "#") || (i == 0 && strings.HasPrefix(line, "version ")) {
			continue
		}
		m[line]++
	}
}

// checkPayloads compares the payloads received with those composed, as
// multisets; a CloudTrail payload is compared without its
// "@devo_pulling_id" member, which must be its last.
func checkPayloads(t *testing.T, want map[string]int, msgs []rsyslog.Message) {
	t.Helper()
	const pid = `,"@devo_pulling_id":"`
	got := map[string]int{}
	for _, m := range msgs {
		p := m.Payload()
		if strings.HasPrefix(m.Tag, "cloud.aws.cloudtrail.") {
			i := strings.LastIndex(p, pid)
			if i < 0 || !strings.HasSuffix(p, `"}`) || strings.ContainsAny(p[i+len(pid):len(p)-2], `"\,}`) {
				t.Errorf("CloudTrail payload without a final pulling id: %.200q", p)
				continue
			}
			p = p[:i] + "}"
		}
		got[p]++
	}
	bad := 0
	for p, n := range got {
		if want[p] != n && bad < 5 {
			bad++
			t.Errorf("payload received %d times, composed %d times: %.200q", n, want[p], p)
		}
	}
	for p, n := range want {
		if got[p] == 0 && bad < 10 {
			bad++
			t.Errorf("payload composed %d times, never received: %.200q", n, p)
		}
	}
}
