package e2e

import (
	"context"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

// eventsLineRe and s3LineRe are the SQS services' end-of-cycle lines as the
// text log quotes them, with what the test reads: messages received and
// avg_time_per_source_message in milliseconds.
var (
	eventsLineRe = regexp.MustCompile(`msg="Received \d+ response\(s\), received (\d+) message\(s\), generated \d+ message\(s\), detected_event_types: \[[^\]]*\], avg_time_per_source_message: ([0-9.]+) ms" input=aws service=(\S+)`)
	s3LineRe     = regexp.MustCompile(`msg="Received \d+ response\(s\), messages \(fromSQS/generated\): (\d+)/\d+, discarded files: \d+, avg_time_per_source_message: ([0-9.]+) ms" input=aws service=(\S+)`)
)

// cycleLine is one end-of-cycle line of an SQS service.
type cycleLine struct {
	service  string
	received int
	avgMs    float64
}

func cycleLines(log string) []cycleLine {
	var out []cycleLine
	for _, re := range []*regexp.Regexp{eventsLineRe, s3LineRe} {
		for _, m := range re.FindAllStringSubmatch(log, -1) {
			n, _ := strconv.Atoi(m[1])
			avg, _ := strconv.ParseFloat(m[2], 64)
			out = append(out, cycleLine{service: m[3], received: n, avgMs: avg})
		}
	}
	return out
}

// The operator lines through the binary, with --debug (globals.debug): an
// EventBridge service and an S3+SQS service start idle, then get a few
// messages; a third service's queue stays idle.
//   - every SQS service, S3+SQS included, logs "Starting a new pulling from
//     "<queue>" queue at …";
//   - the first messages show in a cycle line within seconds, although
//     cycles last 60 s;
//   - an idle queue's cycle reports an average of 0.000 ms, not its long-poll
//     wait;
//   - DEBUG lines per receive, per S3 object and per output write, and fewer
//     writes than events;
//   - no INFO line appears twice.
func TestOperatorLines(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	e.emu.MustCreateBucket(t, "e2e-lines")
	events := e.queue("e2e-lines-events", nil)
	umbrella := e.queue("e2e-lines-umbrella", nil)
	e.queue("e2e-lines-idle", nil)

	cfg := e.writeConfig("  debug: true", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      service-events-all: {sqs_queue_name: e2e-lines-events, sqs_wait_time_seconds: 2}
      cisco-umbrella: {sqs_queue_name: e2e-lines-umbrella, sqs_wait_time_seconds: 2}
      sqs-cloudwatch-consumer: {sqs_queue_name: e2e-lines-idle, sqs_wait_time_seconds: 2}
`)
	p := e.start(cfg)
	eventually(t, time.Minute, "three consumers started", func() bool {
		return strings.Count(p.log(), `msg="sqs consumer started"`) == 3
	})
	// Let every queue answer a few empty long polls first: without the
	// per-message average they would make the idle cycles' figure.
	time.Sleep(5 * time.Second)

	const perObject = 40
	for i := range 2 {
		o := samples.Umbrella(i, "dnslogs", perObject)
		if _, err := e.s3.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("e2e-lines"), Key: aws.String(o.Key), Body: strings.NewReader(string(o.Body))}); err != nil {
			t.Fatal(err)
		}
		e.send(umbrella, samples.S3Notification("e2e-lines", o.Key, len(o.Body)), "")
	}
	for i := range 3 {
		e.send(events, samples.EventBridge(i), "")
	}
	sent := time.Now()
	received := func(service string) int {
		n := 0
		for _, l := range cycleLines(p.log()) {
			if l.service == service {
				n += l.received
			}
		}
		return n
	}
	// Cycles last 60 s: only the early end of the first busy cycle can
	// show the messages this soon.
	eventually(t, 30*time.Second, "cycle lines with the first messages", func() bool {
		return received("service-events-all") == 3 && received("cisco-umbrella") == 2
	})
	t.Logf("first messages in the cycle lines %v after they were sent", time.Since(sent).Round(100*time.Millisecond))
	eventually(t, time.Minute, "every event at rsyslog", func() bool { return len(dataMessages(rs.Messages())) >= 2*perObject+3 })
	terminate(t, p)
	log := p.log()

	for _, q := range []string{"e2e-lines-events", "e2e-lines-umbrella", "e2e-lines-idle"} {
		if !strings.Contains(log, `msg="Starting a new pulling from \"`+q+`\" queue at \"`) {
			t.Errorf("no start line for %s", q)
		}
	}
	var idle int
	for _, l := range cycleLines(log) {
		if l.received == 0 && l.avgMs != 0 {
			t.Errorf("%s: a cycle without messages reports avg_time_per_source_message %.3f ms, want 0.000", l.service, l.avgMs)
		}
		if l.service == "sqs-cloudwatch-consumer" {
			idle++
		}
	}
	if idle == 0 {
		t.Error("no cycle line for the idle queue")
	}

	receives := regexp.MustCompile(`level=DEBUG msg="sqs receive answered" input=aws service=(\S+) region=us-east-1 queue=\S+ messages=(\d+) `)
	got := map[string]int{}
	for _, m := range receives.FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[2])
		got[m[1]] += n
	}
	if got["service-events-all"] != 3 || got["cisco-umbrella"] != 2 || got["sqs-cloudwatch-consumer"] != 0 {
		t.Errorf("DEBUG receive lines account for %v messages, want 3 events, 2 umbrella, 0 idle", got)
	}
	if n := strings.Count(log, `level=DEBUG msg="object read" input=aws service=cisco-umbrella region=us-east-1 bucket=e2e-lines key=`); n != 2 {
		t.Errorf("%d DEBUG object lines, want 2 (one per object)", n)
	}
	writes := strings.Count(log, `level=DEBUG msg="batch written" output=devo`)
	if writes == 0 || writes >= 2*perObject+3 {
		t.Errorf("%d DEBUG output write lines for %d events, want at least one and fewer than the events", writes, 2*perObject+3)
	}

	seen := map[string]int{}
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, " level=INFO ") && !strings.Contains(line, " level=WARN ") {
			continue
		}
		_, rest, _ := strings.Cut(line, " level=") // drop time=
		seen[rest]++
	}
	for line, n := range seen {
		if n > 1 {
			t.Errorf("logged %d times: %s", n, line)
		}
	}
}
