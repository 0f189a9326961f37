package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// TestSIGINTLeavesNoFIFOGroupHidden: the binary long-polls an empty FIFO
// queue (visibility timeout 60 s) when it gets SIGINT, and a group's
// messages arrive during the stop. The poll in progress takes the group's
// first message; the stopping collector releases it at once instead of
// leaving it hidden, so the restarted collector delivers the whole group,
// in order, within seconds rather than after the 60 s.
func TestSIGINTLeavesNoFIFOGroupHidden(t *testing.T) {
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	q := e.queue("sigint.fifo", map[string]string{"FifoQueue": "true", "ContentBasedDeduplication": "true", "VisibilityTimeout": "60"})
	cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      service-events-all: {sqs_queue_name: sigint.fifo, sqs_wait_time_seconds: 5}
`)
	p := e.start(cfg)
	waitLog(t, p, "sqs consumer started")
	time.Sleep(500 * time.Millisecond) // the first long poll is waiting
	if err := p.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := range n {
		e.send(q, fmt.Sprintf(`{"version":"0","id":"sigint-%d","detail-type":"T","source":"aws.ec2","account":"1","time":"2024-05-31T13:20:11Z","region":"us-east-1","resources":[],"detail":{"n":%d}}`, i, i), "devo-collector")
	}
	if code := p.wait(60 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGINT: %d", code)
	}
	if !strings.Contains(p.log(), "sqs messages not started at shutdown released to the queue") {
		t.Fatalf("the stopping collector released nothing; the poll in progress did not take the group's first message:\n%s", p.log())
	}

	restarted := time.Now()
	p2 := e.start(cfg)
	eventually(t, 20*time.Second, "the whole group after the restart", func() bool {
		return len(dataMessages(rs.Messages())) >= n
	})
	t.Logf("group delivered %s after the restart", time.Since(restarted).Round(100*time.Millisecond))
	terminate(t, p2)
	var ids []string
	for _, m := range dataMessages(rs.Messages()) {
		var ev struct{ ID string }
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			t.Fatalf("payload %q: %v", m.Payload(), err)
		}
		if !slices.Contains(ids, ev.ID) {
			ids = append(ids, ev.ID)
		}
	}
	want := []string{"sigint-0", "sigint-1", "sigint-2", "sigint-3", "sigint-4"}
	if !slices.Equal(ids, want) {
		t.Errorf("first arrivals %v, want %v", ids, want)
	}
}
