package devo

import (
	"context"
	"encoding/json"
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

// TestSpoolDrainsAfterOutage: events spooled while the receiver is down go
// out as soon as it is back, without a restart, before anything queued
// after them: over one connection every event first arrives in the order it
// was emitted, and the spool ends empty.
func TestSpoolDrainsAfterOutage(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	sp := openSpool(t, t.TempDir())
	o := testOpts(srv.TLSPort, c)
	o.Spool = sp
	o.SpoolAfter = 300 * time.Millisecond
	o.BatchSize = 10
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 40) // a small queue fills at once during the outage
	h.start(context.Background())
	ctx := context.Background()
	seq := 0
	emit := func(n int) {
		for range n {
			h.emit(ctx, [2]string{testTags[0], fmt.Sprintf(`{"seq":%d}`, seq)})
			seq++
		}
	}
	emit(50)
	srv.WaitMessages(50, 30*time.Second)
	// Past the start-up probe: a server closing a connection before any
	// was healthy counts as a rejected client certificate.
	time.Sleep(2 * o.ProbeTimeout)
	srv.Stop()
	emitted := make(chan struct{})
	go func() { emit(300); close(emitted) }() // blocks until spooling frees the queue
	select {
	case <-emitted:
	case <-time.After(30 * time.Second):
		t.Fatalf("sources blocked during the outage; %d spooled", sp.Len())
	}
	if sp.Len() == 0 {
		t.Fatal("nothing was spooled during the outage")
	}
	srv.Start()
	emit(50) // queued after the spooled ones
	total := seq
	first := map[int]int{} // seq → index of its first arrival
	var order []int
	deadline := time.Now().Add(60 * time.Second)
	for len(first) < total && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		clear(first)
		order = order[:0]
		for _, m := range srv.Messages() {
			var v struct{ Seq int }
			if err := json.Unmarshal([]byte(m.Payload()), &v); err != nil {
				t.Fatalf("payload %q: %v", m.Payload(), err)
			}
			if _, ok := first[v.Seq]; !ok {
				first[v.Seq] = len(order)
				order = append(order, v.Seq)
			}
		}
	}
	if len(first) < total {
		t.Fatalf("%d of %d events arrived without a restart; %d still spooled", len(first), total, sp.Len())
	}
	for i := 1; i < len(order); i++ {
		if order[i] < order[i-1] {
			t.Fatalf("event %d first arrived after event %d: spooled and queued events out of order", order[i-1], order[i])
		}
	}
	if !waitFor(10*time.Second, func() bool { return sp.Len() == 0 }) {
		t.Fatalf("spool still holds %d events after they were all delivered", sp.Len())
	}
	if err := h.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(int64(total))
	t.Logf("%d events, %d spooled during the outage, %d messages at the receiver", total, s.Stats().Spooled, len(srv.Messages()))
}

// TestWriteAheadJournal: with ack_settle at 10 minutes, events that ask for
// write-ahead are delivered as soon as the journal holds them, while the
// others wait for their settle; all of them reach the receiver at once, the
// write-ahead ones in order from the journal. At shutdown the unsettled
// write-ahead events stay journaled and the others are spooled.
func TestWriteAheadJournal(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	dir := t.TempDir()
	sp, j := openSpool(t, dir+"/spool"), openSpool(t, dir+"/journal")
	o := testOpts(srv.TLSPort, c)
	o.Spool, o.Journal = sp, j
	o.AckSettle = 10 * time.Minute
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 1000)
	h.start(context.Background())
	ctx := context.Background()
	const fifo, plain = 300, 30 // a plain event after every tenth write-ahead one
	for i := range fifo {
		h.emitWith(ctx, true, [2]string{testTags[0], fmt.Sprintf(`{"fifo":%d}`, i)})
		if i%10 == 0 {
			h.emitWith(ctx, false, [2]string{testTags[1], fmt.Sprintf(`{"plain":%d}`, i/10)})
		}
	}
	msgs := srv.WaitMessages(fifo+plain, 30*time.Second)
	if d := h.delivered.Load(); d != fifo {
		t.Fatalf("%d events delivered, want exactly the %d write-ahead ones (the others wait 10 minutes)", d, fifo)
	}
	if st := s.Stats(); st.Journaled != fifo {
		t.Fatalf("stats %+v: want %d journaled", st, fifo)
	}
	var order []int
	seen := map[string]bool{}
	for _, m := range msgs {
		p := m.Payload()
		if seen[p] {
			continue
		}
		seen[p] = true
		var v struct{ Fifo *int }
		if err := json.Unmarshal([]byte(p), &v); err != nil {
			t.Fatalf("payload %q: %v", p, err)
		}
		if v.Fifo != nil {
			order = append(order, *v.Fifo)
		}
	}
	if len(order) != fifo {
		t.Fatalf("%d write-ahead events arrived, want %d", len(order), fifo)
	}
	for i := range order {
		if order[i] != i {
			t.Fatalf("write-ahead event %d arrived in place %d: the journal is not sent in order", order[i], i)
		}
	}
	h.cancel()
	if err := <-h.done; err != nil {
		t.Fatal(err)
	}
	h.done <- nil
	h.wantSettled(fifo + plain)
	if j.Len() != fifo || sp.Len() != plain {
		t.Fatalf("after shutdown: journal %d (want %d, none settled), spool %d (want %d)", j.Len(), fifo, sp.Len(), plain)
	}
}

// openSpool opens a real spool in dir, closed when the test ends.
func openSpool(t *testing.T, dir string) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	return sp
}

// TestWriteAheadJournalOrderOverConnections: with several connections, the
// journal is still sent in order (one connection at a time carries it), so
// the first arrival of every write-ahead event at the receiver is in
// journal order, as a FIFO message group needs; also across a receiver
// restart half-way, when the connection carrying the journal dies and
// hands its unsettled events back.
func TestWriteAheadJournalOrderOverConnections(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	dir := t.TempDir()
	o := testOpts(srv.TLSPort, c)
	o.Spool, o.Journal = openSpool(t, dir+"/spool"), openSpool(t, dir+"/journal")
	o.Connections = 4
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 1000)
	h.start(context.Background())
	ctx := context.Background()
	const n = 2000
	restarted := make(chan struct{})
	for i := range n {
		// One event at a time, as one FIFO group delivers them.
		h.emitWith(ctx, true, [2]string{testTags[0], fmt.Sprintf(`{"fifo":%d}`, i)})
		time.Sleep(200 * time.Microsecond)
		if i == n/4 {
			// The receiver restarts while events flow, past the start-up
			// probe (a connection closed inside it is taken for a
			// certificate rejection, fatal at start).
			go func() {
				defer close(restarted)
				srv.WaitMessages(n/8, 10*time.Second)
				time.Sleep(o.ProbeTimeout)
				srv.Stop()
				time.Sleep(300 * time.Millisecond)
				srv.Start()
			}()
		}
	}
	<-restarted
	// First arrivals, in order; resent events arrive twice.
	firsts := func() []int {
		var order []int
		seen := map[int]bool{}
		for _, m := range srv.Messages() {
			var v struct{ Fifo int }
			if err := json.Unmarshal([]byte(m.Payload()), &v); err != nil {
				t.Fatalf("payload %q: %v", m.Payload(), err)
			}
			if !seen[v.Fifo] {
				seen[v.Fifo] = true
				order = append(order, v.Fifo)
			}
		}
		return order
	}
	waitFor(30*time.Second, func() bool { return len(firsts()) >= n })
	order := firsts()
	if len(order) != n {
		t.Fatalf("%d write-ahead events arrived, want %d", len(order), n)
	}
	for i := range order {
		if order[i] != i {
			t.Fatalf("write-ahead event %d arrived in place %d over %d connections: the journal is not sent in order", order[i], i, o.Connections)
		}
	}
	if err := h.finish(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}
