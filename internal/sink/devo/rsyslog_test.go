package devo

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/rsyslog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

var testTags = []string{
	"cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1",
	"cloud.aws.vpc.flowlogs.123456789012.eu-west-1.1",
	"cloud.aws.guardduty.findings.123456789012.us-east-2.1",
	"my.app.demo",
	"devo.collectors.out.local.error",
}

func TestRsyslogDeliversEveryEventByteExact(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	o := testOpts(srv.TLSPort, c)
	o.Connections = 2
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Check(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
	h := newHarness(t, s, 500)
	h.start(context.Background())

	const n = 10000
	want := map[string]string{} // payload -> tag
	ctx := context.Background()
	for i := 0; i < n; i += 10 {
		var batch [][2]string
		for j := i; j < i+10; j++ {
			tag := testTags[j%len(testTags)]
			payload := fmt.Sprintf(`{"n":%d,"text":"ñandú €","pad":"%s"}`, j, strings.Repeat("x", j%300))
			if j%7 == 0 {
				payload = fmt.Sprintf("2 123456789012 eni-%d 10.0.0.1 10.0.0.2 443 49152 6 10 840 ACCEPT OK\n", j)
			}
			want[strings.TrimSuffix(payload, "\n")] = tag
			batch = append(batch, [2]string{tag, payload})
		}
		h.emit(ctx, batch...)
	}
	if err := h.finish(60 * time.Second); err != nil {
		t.Fatalf("run: %v", err)
	}
	h.wantSettled(n)

	srv.WaitMessages(n, 30*time.Second)
	time.Sleep(300 * time.Millisecond) // let any extra line land before counting
	msgs := srv.Messages()
	if len(msgs) != n {
		t.Fatalf("received %d messages, want %d", len(msgs), n)
	}
	seen := map[string]bool{}
	for _, m := range msgs {
		p := m.Payload()
		tag, ok := want[p]
		if !ok {
			t.Fatalf("unexpected payload %q", p)
		}
		if seen[p] {
			t.Fatalf("payload received twice: %q", p)
		}
		seen[p] = true
		if m.Tag != tag {
			t.Fatalf("payload %q arrived with tag %q, want %q", p, m.Tag, tag)
		}
		line := string(wire.AppendDevo(nil, "collector-test", tag, []byte(p)))
		if m.Raw+"\n" != line {
			t.Fatalf("raw line %q, want %q", m.Raw, line)
		}
	}
	if st := s.Stats(); st.Total != n || st.Connections != 2 {
		t.Errorf("stats %+v", st)
	}
}

func TestRsyslogNewlinePayloadArrivesWhole(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c, Plain: true})
	for _, tc := range []struct {
		name string
		o    Options
	}{
		{"tls devo line", testOpts(srv.TLSPort, c)},
		{"plain rfc3164", func() Options { o := testOpts(srv.PlainPort, nil); o.Format = wire.RFC3164; return o }()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(srv.Messages())
			s, err := New(tc.o)
			if err != nil {
				t.Fatal(err)
			}
			h := newHarness(t, s, 10)
			h.start(context.Background())
			h.emit(context.Background(), [2]string{"my.app.demo", "first line\nsecond line"}, [2]string{"my.app.demo", "after"})
			if err := h.finish(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			h.wantSettled(2)
			msgs := srv.WaitMessages(before+2, 10*time.Second)[before:]
			if len(msgs) != 2 || msgs[0].Payload() != "first line\nsecond line" || msgs[1].Payload() != "after" {
				t.Fatalf("got %+v", msgs)
			}
			if tc.o.Format == wire.RFC3164 {
				stamp := msgs[0].Raw[4:19]
				if _, err := time.Parse("Jan _2 15:04:05", stamp); err != nil || stamp == "Jan  1 00:00:00" {
					t.Fatalf("rfc3164 timestamp %q: %v", stamp, err)
				}
			}
		})
	}
}

func TestRsyslogRejectedClientCertificate(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	for _, tc := range []struct{ name, cert, key string }{
		{"rogue CA", c.RogueCert, c.RogueKey},
		{"no client certificate", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOpts(srv.TLSPort, c)
			o.Cert, o.Key = tc.cert, tc.key
			o.ProbeTimeout = 2 * time.Second // the default
			s, err := New(o)
			if err != nil {
				t.Fatal(err)
			}
			wantPrefix := fmt.Sprintf(`OutputConnectionError(1): Client certificate rejected by "127.0.0.1:%d": `, srv.TLSPort)
			check := func(what string, err error, took time.Duration) {
				t.Helper()
				var ae *AuthError
				if !errors.As(err, &ae) {
					t.Fatalf("%s: got %v, want *AuthError", what, err)
				}
				if !strings.HasPrefix(err.Error(), wantPrefix) {
					t.Fatalf("%s: %q lacks %q", what, err, wantPrefix)
				}
				if tc.cert != "" && (!strings.Contains(err.Error(), tc.cert) || !strings.Contains(err.Error(), tc.key)) {
					t.Fatalf("%s: %q does not name the certificate files", what, err)
				}
				if took > 2*time.Second+500*time.Millisecond {
					t.Fatalf("%s: took %v", what, took)
				}
			}
			start := time.Now()
			err = s.Check(context.Background())
			check("check", err, time.Since(start))

			s2, _ := New(o)
			h := newHarness(t, s2, 10)
			start = time.Now()
			h.start(context.Background())
			h.emit(context.Background(), [2]string{"my.app.demo", "never delivered"})
			err = h.finish(10 * time.Second)
			check("run", err, time.Since(start))
			if d, f := h.delivered.Load(), h.failed.Load(); d != 0 || f != 1 {
				t.Fatalf("delivered=%d failed=%d, want 0 and 1", d, f)
			}
		})
	}
}

func TestRsyslogOutageLosesNothing(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})
	o := testOpts(srv.TLSPort, c)
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, s, 1000)
	h.start(context.Background())

	ctx := context.Background()
	const outage = 30 * time.Second // the outage
	produced := 0
	emitFor := func(d time.Duration) {
		end := time.Now().Add(d)
		for time.Now().Before(end) {
			var b [][2]string
			for range 50 {
				b = append(b, [2]string{testTags[produced%len(testTags)], fmt.Sprintf(`{"seq":%d}`, produced)})
				produced++
			}
			h.emit(ctx, b...)
			time.Sleep(20 * time.Millisecond)
		}
	}
	emitFor(2 * time.Second)
	srv.Stop()
	stopped := time.Now()
	// Keep producing into the outage; Emit blocks once the queue is full.
	emitDone := make(chan struct{})
	go func() { emitFor(3 * time.Second); close(emitDone) }()
	if avail := waitFor(5*time.Second, func() bool { return s.Stats().Available == 0 }); !avail {
		t.Errorf("sender still reports an available connection during the outage")
	}
	time.Sleep(outage - time.Since(stopped))
	srv.Start()
	<-emitDone
	emitFor(time.Second)
	if err := h.finish(60 * time.Second); err != nil {
		t.Fatal(err)
	}
	h.wantSettled(int64(produced))

	msgs := srv.WaitMessages(produced, 30*time.Second)
	got := map[string]int{}
	for _, m := range msgs {
		got[m.Payload()]++
	}
	dups := 0
	for i := range produced {
		p := fmt.Sprintf(`{"seq":%d}`, i)
		switch got[p] {
		case 0:
			t.Fatalf("event %d lost (%d of %d received)", i, len(got), produced)
		case 1:
		default:
			dups += got[p] - 1
		}
	}
	t.Logf("%d events, %d duplicates (resent after the outage), %d connections", produced, dups, srv.Connections())
}

func waitFor(d time.Duration, cond func() bool) bool {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}

func TestRsyslogIdleAndAgeReconnects(t *testing.T) {
	c := certs.New(t)
	srv := rsyslog.Start(t, rsyslog.Options{Certs: c})

	t.Run("idle", func(t *testing.T) {
		before := srv.Connections()
		o := testOpts(srv.TLSPort, c)
		o.InactivityTimeout = 700 * time.Millisecond
		s, _ := New(o)
		h := newHarness(t, s, 10)
		h.start(context.Background())
		h.emit(context.Background(), [2]string{"a.b.c", "one"})
		h.emit(context.Background(), [2]string{"a.b.c", "two"}) // same connection
		waitFor(5*time.Second, func() bool { return h.delivered.Load() == 2 })
		time.Sleep(1200 * time.Millisecond)
		h.emit(context.Background(), [2]string{"a.b.c", "three"}) // after idle: new connection
		if err := h.finish(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		h.wantSettled(3)
		srv.WaitMessages(3, 5*time.Second)
		waitFor(3*time.Second, func() bool { return srv.Connections()-before == 2 })
		if n := srv.Connections() - before; n != 2 {
			t.Fatalf("server saw %d connections, want 2", n)
		}
	})
	t.Run("age", func(t *testing.T) {
		before := srv.Connections()
		o := testOpts(srv.TLSPort, c)
		o.MaxConnectionAge = time.Second
		s, _ := New(o)
		h := newHarness(t, s, 10)
		h.start(context.Background())
		end := time.Now().Add(3500 * time.Millisecond)
		i := 0
		for time.Now().Before(end) {
			h.emit(context.Background(), [2]string{"a.b.c", fmt.Sprintf("age %d", i)})
			i++
			time.Sleep(50 * time.Millisecond)
		}
		if err := h.finish(10 * time.Second); err != nil {
			t.Fatal(err)
		}
		h.wantSettled(int64(i))
		n := srv.Connections() - before
		if n < 3 || n > 5 {
			t.Fatalf("server saw %d connections in 3.5 s with a 1 s maximum age, want 3-5", n)
		}
	})
}
