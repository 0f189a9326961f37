// Command demo runs the collector end to end against a local AWS emulator:
// it starts fauxqs on 127.0.0.1, creates the queues and the bucket, uploads
// composed sample objects (CloudTrail, VPC Flow v2 and v5, CloudFront,
// Umbrella dns/ip/proxy) and sends their S3 notifications, sends EventBridge
// and Security Hub events, runs the collector with the console output, waits
// until every event has arrived and every queue is empty, stops it with
// SIGTERM, prints a summary and stops everything it started.
//
//	go run ./tools/demo -collector bin/devo-aws-collector
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

const bucket = "demo-logs"

func main() {
	bin := flag.String("collector", "bin/devo-aws-collector", "collector binary")
	quiet := flag.Bool("quiet", false, "do not echo the collector's output lines")
	timeout := flag.Duration("timeout", 3*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*bin, *quiet, *timeout); err != nil {
		fmt.Fprintf(os.Stderr, "demo: FAILED: %v\n", err)
		os.Exit(1)
	}
}

func run(bin string, quiet bool, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}

	say("starting the AWS emulator (fauxqs) on 127.0.0.1")
	emu, err := fauxqs.StartProcess(ctx)
	if err != nil {
		return fmt.Errorf("start fauxqs: %w", err)
	}
	defer emu.Stop()
	say("fauxqs listening at %s", emu.URL)

	expected, err := seed(ctx, emu)
	if err != nil {
		return err
	}
	total := 0
	for _, n := range expected {
		total += n
	}

	dir, err := os.MkdirTemp("", "devo-aws-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath, err := writeConfig(dir, emu.URL)
	if err != nil {
		return err
	}

	say("running: %s run --config %s", filepath.Base(bin), cfgPath)
	cmd := exec.Command(bin, "run", "--config", cfgPath)
	cmd.Dir = dir
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = prefixWriter("collector log | ", os.Stderr)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)

	var mu sync.Mutex
	counts := map[string]int{}
	seen := 0
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 16<<20)
		for sc.Scan() {
			line := sc.Text()
			tag := lineTag(line)
			mu.Lock()
			counts[tag]++
			if !strings.HasPrefix(tag, "devo.collectors.") { // the collector's own log records
				seen++
			}
			mu.Unlock()
			if !quiet {
				fmt.Println(truncate(line, 220))
			}
		}
	}()
	go func() {
		<-readDone
		exited <- cmd.Wait()
	}()

	// Wait for every event and for every queue to be empty (all messages
	// deleted, none in flight).
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		mu.Lock()
		n := seen
		mu.Unlock()
		if n >= total {
			left, err := inFlight(ctx, emu)
			if err == nil && left == 0 {
				break
			}
		}
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return fmt.Errorf("timed out: %d of %d events arrived", n, total)
		case err := <-exited:
			return fmt.Errorf("collector exited early: %v", err)
		case <-tick.C:
		}
	}

	say("all %d events arrived and every queue is empty; sending SIGTERM", total)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			return fmt.Errorf("collector did not stop cleanly: %v", err)
		}
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		return fmt.Errorf("collector did not stop within 60s of SIGTERM")
	}

	fmt.Println()
	say("summary (events per Devo tag):")
	var tags []string
	for t := range counts {
		tags = append(tags, t)
	}
	sort.Strings(tags)
	for _, t := range tags {
		fmt.Printf("  %6d  %s\n", counts[t], t)
	}
	fmt.Printf("  %6d  data events (expected %d); devo.collectors.* are the collector's own log records\n", seen, total)
	var bad []string
	for tbl, want := range expected {
		got := 0
		for t, n := range counts {
			if strings.HasPrefix(t, tbl+".") {
				got += n
			}
		}
		if got != want {
			bad = append(bad, fmt.Sprintf("%s: %d events, expected %d", tbl, got, want))
		}
	}
	if len(bad) > 0 || seen != total {
		return fmt.Errorf("counts differ: %s", strings.Join(bad, "; "))
	}
	// A clean run prints no warning: the collector's own WARN and ERROR
	// records also arrive on stdout under these tags.
	if n := configWarnings.Load(); n > 0 {
		return fmt.Errorf("the collector warned %d time(s) about the demo's configuration", n)
	}
	if n := counts["devo.collectors.out.local.warning"] + counts["devo.collectors.out.local.error"] + counts["devo.collectors.out.local.critical"]; n > 0 {
		return fmt.Errorf("the collector logged %d warning(s) or error(s); see the lines above", n)
	}
	say("collector started, delivered everything, deleted every message and stopped cleanly")
	return nil
}

// seed creates the queues and the bucket, uploads the objects and sends
// the messages. It returns the expected event count per Devo table (the
// first four tag levels).
func seed(ctx context.Context, emu *fauxqs.Server) (map[string]int, error) {
	for _, q := range []string{"demo-cloudtrail", "demo-s3-logs", "demo-umbrella"} {
		if _, err := emu.CreateQueue(q, nil); err != nil {
			return nil, fmt.Errorf("create queue %s: %w", q, err)
		}
	}
	for _, q := range []string{"demo-events.fifo", "demo-securityhub.fifo"} {
		if _, err := emu.CreateQueue(q, map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true"}); err != nil {
			return nil, fmt.Errorf("create queue %s: %w", q, err)
		}
	}
	if err := emu.CreateBucket(bucket); err != nil {
		return nil, fmt.Errorf("create bucket: %w", err)
	}
	s3c, sqsc := emu.S3(), emu.SQS()
	url := func(name string) (string, error) {
		out, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(name)})
		if err != nil {
			return "", err
		}
		return *out.QueueUrl, nil
	}

	objects := []struct {
		o     samples.Object
		table string
	}{
		{samples.CloudTrail(1, 120), "cloud.aws.cloudtrail"},
		{samples.VPCFlow(2, 2, 200), "cloud.aws.vpc.flowlogs"},
		// Version 2 only: a custom (v5) header is sent as it is with a
		// WARN, since Devo's table parses the default format; the demo
		// must run clean. internal/e2e covers v5 files.
		{samples.VPCFlow(3, 2, 50), "cloud.aws.vpc.flowlogs"},
		{samples.CloudFront(4, 40), "cloud.aws.cloudfront.logs"},
		{samples.Umbrella(5, "dnslogs", 30), "sig.cisco.umbrella.dns"},
		{samples.Umbrella(6, "iplogs", 20), "sig.cisco.umbrella.ip"},
		{samples.Umbrella(7, "proxylogs", 10), "sig.cisco.umbrella.proxy"},
	}
	expected := map[string]int{}
	for _, x := range objects {
		if _, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(x.o.Key), Body: strings.NewReader(string(x.o.Body))}); err != nil {
			return nil, fmt.Errorf("upload %s: %w", x.o.Key, err)
		}
		u, err := url(x.o.Queue)
		if err != nil {
			return nil, err
		}
		if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(samples.S3Notification(bucket, x.o.Key, len(x.o.Body)))}); err != nil {
			return nil, err
		}
		expected[x.table] += x.o.Events
		say("uploaded s3://%s/%s (%d events) and notified %s", bucket, x.o.Key, x.o.Events, x.o.Queue)
	}
	// S3 sends one test event when a notification configuration is saved.
	u, _ := url("demo-s3-logs")
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(u), MessageBody: aws.String(`{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-05-31T12:00:00.000Z","Bucket":"demo-logs","RequestId":"9ZK3EXAMPLE","HostId":"aGVsbG8="}`)}); err != nil {
		return nil, err
	}

	evURL, err := url("demo-events.fifo")
	if err != nil {
		return nil, err
	}
	const events = 30
	for i := 0; i < events; i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j := i; j < i+10; j++ {
			entries = append(entries, types.SendMessageBatchRequestEntry{
				Id: aws.String(fmt.Sprint(j)), MessageBody: aws.String(samples.EventBridge(j)), MessageGroupId: aws.String("devo-collector"),
			})
		}
		if _, err := sqsc.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: aws.String(evURL), Entries: entries}); err != nil {
			return nil, err
		}
	}
	expected["cloud.aws.cloudwatch"] += events
	say("sent %d EventBridge events to demo-events.fifo", events)

	shURL, err := url("demo-securityhub.fifo")
	if err != nil {
		return nil, err
	}
	if _, err := sqsc.SendMessage(ctx, &sqs.SendMessageInput{QueueUrl: aws.String(shURL), MessageBody: aws.String(samples.SecurityHub(3)), MessageGroupId: aws.String("devo-collector")}); err != nil {
		return nil, err
	}
	expected["cloud.aws.securityhub.findings"] += 3
	say("sent a Security Hub event with 3 findings to demo-securityhub.fifo")
	return expected, nil
}

func writeConfig(dir, endpoint string) (string, error) {
	cfg := fmt.Sprintf(`# Written by the demo: every S3+SQS and SQS service against fauxqs, console output.
globals:
  name: aws_collector_demo
  persistence:
    type: filesystem
    config:
      directory_name: state
outputs:
  console:
    type: console
    config:
      format: devo_line
      hostname: demo-collector
inputs:
  aws:
    id: "100001"
    requests_per_second: 100
    regions: [us-east-1]
    endpoint_url: %q
    credentials:
      access_key: DEMOACCESSKEY
      access_secret: demo-secret
    services:
      audit-events-all:
        types: [audits_s3]
        sqs_queue_name: demo-cloudtrail
        auto_event_type: true
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 20
      non-cloudwatch-logs:
        types: [flowlogs, cloudfrontlogs]
        sqs_queue_name: demo-s3-logs
        auto_event_type: true
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 20
      cisco-umbrella:
        sqs_queue_name: demo-umbrella
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 20
      service-events-all:
        sqs_queue_name: demo-events.fifo
        auto_event_type: true
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 20
      sqs-cloudwatch-consumer:
        sqs_queue_name: demo-securityhub.fifo
        sqs_wait_time_seconds: 1
        sqs_visibility_timeout: 20
`, endpoint)
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "config", "config.yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o600)
}

// inFlight is the number of messages still visible or in flight across the
// demo queues.
func inFlight(ctx context.Context, emu *fauxqs.Server) (int, error) {
	sqsc := emu.SQS()
	total := 0
	for _, q := range []string{"demo-cloudtrail", "demo-s3-logs", "demo-umbrella", "demo-events.fifo", "demo-securityhub.fifo"} {
		u, err := sqsc.GetQueueUrl(ctx, &sqs.GetQueueUrlInput{QueueName: aws.String(q)})
		if err != nil {
			return 0, err
		}
		visible, inFlight, err := fauxqs.QueueCounts(ctx, sqsc, *u.QueueUrl)
		if err != nil {
			return 0, err
		}
		total += visible + inFlight
	}
	return total, nil
}

// lineTag returns the tag of a Devo line "<14>Jan  1 00:00:00 HOST TAG: PAYLOAD".
func lineTag(line string) string {
	f := strings.SplitN(line, " ", 7) // "<14>Jan", "", "1", "00:00:00", HOST, TAG:, rest
	if len(f) < 6 {
		return "(unparsed)"
	}
	return strings.TrimSuffix(f[5], ":")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func say(format string, args ...any) {
	fmt.Printf("demo: "+format+"\n", args...)
}

// prefixWriter prefixes each line written to w.
// configWarnings counts the collector's "warning: " lines about its
// configuration (printed on stderr before it starts).
var configWarnings atomic.Int64

func prefixWriter(prefix string, w io.Writer) io.Writer {
	pr, pw := io.Pipe()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "warning: ") {
				configWarnings.Add(1)
			}
			fmt.Fprintln(w, prefix+sc.Text())
		}
	}()
	return pw
}
