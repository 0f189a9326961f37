package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// The receiver goes away while the collector's start-up probe holds its
// first connection (a relay restarting while the collector starts) and
// comes back 20 s later: the collector must not mistake the closed probe
// connection for a rejected certificate. It stays up, says the output is
// unreachable, and delivers every event once the receiver is back. (A rogue
// certificate still exits at once: TestRejectedCertificateExitsNonZero.)
func TestReceiverRestartDuringStartupProbe(t *testing.T) {
	const n = 100
	e := newEnv(t)
	rs := rsyslog.Start(t, rsyslog.Options{Certs: e.cert})
	q := e.queue("e2e-probe", nil)
	for i := range n {
		e.send(q, eventBody(i, ""), "")
	}
	cfg := e.writeConfig("", e.devoOutput(rs.TLSPort, e.cert.ClientCert, e.cert.ClientKey, ""), `
      service-events-all: {sqs_queue_name: e2e-probe, sqs_wait_time_seconds: 1, sqs_visibility_timeout: 20}
`)
	p := e.start(cfg)
	// Stop the receiver as soon as the probe connection reached it: well
	// inside the 2 s probe.
	eventually(t, 10*time.Second, "the probe connection at rsyslog", func() bool { return rs.Connections() >= 1 })
	rs.Stop()
	stoppedAt := time.Now()
	time.Sleep(20 * time.Second)
	if code := p.wait(0); code != -1 {
		t.Fatalf("collector exited with %d while the receiver was away", code)
	}
	rs.Start()
	eventually(t, 90*time.Second, "every event at rsyslog", func() bool { return len(dataMessages(rs.Messages())) >= n })
	if code := p.wait(0); code != -1 {
		t.Fatalf("collector exited with %d", code)
	}
	terminate(t, p)
	log := p.log()
	if strings.Contains(log, "Client certificate rejected") {
		t.Errorf("the collector called the outage a certificate rejection")
	}
	if !strings.Contains(log, "not a certificate rejection") {
		t.Errorf("no log line says the closed probe connection was not a rejection")
	}
	seen := map[int]bool{}
	for _, m := range dataMessages(rs.Messages()) {
		var ev struct{ Detail struct{ Seq int } }
		if err := json.Unmarshal([]byte(m.Payload()), &ev); err != nil {
			t.Fatalf("payload %q: %v", m.Payload(), err)
		}
		seen[ev.Detail.Seq] = true
	}
	for i := range n {
		if !seen[i] {
			t.Errorf("event %d never arrived", i)
		}
	}
	t.Logf("receiver away %v; %d messages at rsyslog", time.Since(stoppedAt).Round(time.Second), len(dataMessages(rs.Messages())))
}
