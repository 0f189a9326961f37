package devo

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/spool"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
)

// TestRealSpoolAcrossRestart: the output is down at shutdown, everything
// goes to the bbolt spool; the next run replays it to rsyslog first.
func TestRealSpoolAcrossRestart(t *testing.T) {
	c := certs.New(t)
	dir := t.TempDir()
	sp, err := spool.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	o := testOpts(closedPort(t), c)
	o.Spool = sp
	s, _ := New(o)
	h := newHarness(t, s, 1000)
	h.start(context.Background())
	const n = 500
	for i := range n {
		h.emit(context.Background(), [2]string{testTags[i%len(testTags)], fmt.Sprintf(`{"spool":%d}`, i)})
	}
	time.Sleep(200 * time.Millisecond)
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	h.wantSettled(n)
	if sp.Len() != n {
		t.Fatalf("spool holds %d events, want %d", sp.Len(), n)
	}
	if err := sp.Close(); err != nil {
		t.Fatal(err)
	}

	sp, err = spool.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.Close()
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	o = testOpts(srv.TLSPort, c)
	o.Spool = sp
	s, _ = New(o)
	h = newHarness(t, s, 10)
	h.start(context.Background())
	h.emit(context.Background(), [2]string{"after.the.replay", "new"})
	if err := h.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(1)
	msgs := srv.WaitMessages(n+1, 10*time.Second)
	if len(msgs) != n+1 {
		t.Fatalf("got %d messages, want %d", len(msgs), n+1)
	}
	for i, m := range msgs[:n] {
		if m.Payload() != fmt.Sprintf(`{"spool":%d}`, i) || m.Tag != testTags[i%len(testTags)] {
			t.Fatalf("message %d = %+v", i, m)
		}
	}
	if msgs[n].Payload() != "new" {
		t.Fatalf("queue event not last: %+v", msgs[n])
	}
	if sp.Len() != 0 {
		t.Fatalf("%d events left in the spool after replay", sp.Len())
	}
}
