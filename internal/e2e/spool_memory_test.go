package e2e

import (
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// procRSSFile is the resident file-backed memory (RssFile) of process pid.
func procRSSFile(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0 // exited
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// A backlog spooled while the receiver is down, then replayed, does not
// stay in the collector's resident memory: the spool is read through a
// mapping of its file, and its pages are dropped from the process as they
// are used. Before, the process grew by about the spool's size (a 1 GB
// backlog made a 1.2 GB process, 1.1 GB of it the spool file). Through the
// binary: 24 CloudTrail objects (about 40 MB of events) with the receiver
// down, every message but the last deleted once spooled, then the receiver
// up and every event delivered, the file-backed resident size sampled
// throughout.
func TestSpoolDoesNotStayResident(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	rs.Stop() // down from the start; its port is known
	e.emu.MustCreateBucket(t, "e2e-trails")
	q := e.queue("e2e-trails", nil)
	const objects, records = 24, 1000
	for i := range objects {
		o := samples.BusyTrail(i, records, 7)
		if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("e2e-trails"), Key: aws.String(o.Key), Body: bytes.NewReader(o.Body)}); err != nil {
			t.Fatal(err)
		}
		e.send(q, samples.S3Notification("e2e-trails", o.Key, len(o.Body)), "")
	}
	// A small queue fills at once, so the output spools after its 5 s.
	cfg := e.writeConfig("  queue_max_size_in_messages: 100", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      audit-events-all:
        types: [audits_s3]
        sqs_queue_name: e2e-trails
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 30
`)
	p := e.start(cfg)
	pid := p.cmd.Process.Pid
	time.Sleep(time.Second)
	base := procRSSFile(t, pid)
	var peak int64
	sample := func() { peak = max(peak, procRSSFile(t, pid)-base) }
	// The output spools while its queue is at least half full: the last
	// message's events stay queued, so it stays pending.
	deadline := time.Now().Add(2 * time.Minute)
	for e.pending(q) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("messages not deleted after spooling: %d pending", e.pending(q))
		}
		sample()
		time.Sleep(100 * time.Millisecond)
	}
	spooled := peak
	rs.Start()
	deadline = time.Now().Add(2 * time.Minute)
	for n := 0; n < objects*records; {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d events at the receiver", n, objects*records)
		}
		for range 10 {
			sample()
			time.Sleep(100 * time.Millisecond)
		}
		n = len(dataMessages(rs.Messages()))
	}
	sample()
	terminate(t, p)
	t.Logf("resident file pages grew by %.1f MB while spooling, %.1f MB at most over the run (from %.1f MB)",
		float64(spooled)/(1<<20), float64(peak)/(1<<20), float64(base)/(1<<20))
	// The binary's own pages can grow a few MB as code runs for the first
	// time; the spool is about 40 MB.
	if peak > 16<<20 {
		t.Errorf("the collector's resident file pages grew by %d MB with a %d-event spool", peak>>20, objects*records)
	}
}
