package devo

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/acceptloop"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/wire"
)

// discardServer is a loopback mutual-TLS server that reads and drops
// everything.
func discardServer(b *testing.B, c *certs.Set) (port int, stop func()) {
	ln, err := tls.Listen("tcp", "127.0.0.1:0", c.ServerTLS(b))
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	acceptloop.Go(ln, &wg, func(nc net.Conn) {
		_, _ = io.Copy(io.Discard, nc)
		nc.Close()
	})
	return ln.Addr().(*net.TCPAddr).Port, func() { ln.Close(); wg.Wait() }
}

// BenchmarkSender measures the sender end to end (queue → encode → TLS)
// against raw tls.Conn writes of the same bytes in 64 KiB writes in the same
// run, and reports both rates and their ratio (goal ≥ 0.6).
func BenchmarkSender(b *testing.B) {
	c := certs.New(b)
	port, stop := discardServer(b, c)
	defer stop()

	const events = 1000000
	payload := []byte(`{"eventVersion":"1.08","userIdentity":{"type":"AssumedRole","principalId":"AROAEXAMPLE:session","arn":"arn:aws:sts::123456789012:assumed-role/r/s"},"eventTime":"2024-05-31T13:12:08Z","eventSource":"ec2.amazonaws.com","eventName":"DescribeInstances","awsRegion":"us-east-1","sourceIPAddress":"10.0.0.1","@devo_pulling_id":"1717160741.123456"}`)
	tag := "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1"
	line := wire.AppendDevo(nil, "collector-bench", tag, payload)
	total := int64(len(line)) * events

	evs := make([]*pipeline.Event, events)
	for i := range evs {
		evs[i] = pipeline.NewEvent(nil, tag, time.Now(), payload)
	}

	var senderNS, rawNS time.Duration
	for b.Loop() {
		// the sender
		o := testOpts(port, c)
		o.Hostname = "collector-bench"
		o.AckSettle = 10 * time.Millisecond
		o.ProbeTimeout = 10 * time.Millisecond
		s, err := New(o)
		if err != nil {
			b.Fatal(err)
		}
		q := pipeline.NewQueue(events, 1<<40)
		for _, ev := range evs {
			_ = q.Put(context.Background(), ev)
		}
		q.Close()
		start := time.Now()
		if err := s.Run(context.Background(), q); err != nil {
			b.Fatal(err)
		}
		senderNS += time.Since(start)
		if d, f := q.Settled(); d != events || f != 0 {
			b.Fatalf("settled %d/%d", d, f)
		}

		// raw writes of the same bytes
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), s.tls)
		if err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, 64<<10+len(line))
		start = time.Now()
		for range events {
			buf = append(buf, line...)
			if len(buf) >= 64<<10 {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
				buf = buf[:0]
			}
		}
		if _, err := conn.Write(buf); err != nil {
			b.Fatal(err)
		}
		rawNS += time.Since(start)
		conn.Close()
	}
	// The sender's time includes its final settle wait (AckSettle); it is
	// 10 ms here, small next to the transfer.
	n := float64(b.N)
	senderMBs := float64(total) * n / senderNS.Seconds() / 1e6
	rawMBs := float64(total) * n / rawNS.Seconds() / 1e6
	b.ReportMetric(senderMBs, "sender_MB/s")
	b.ReportMetric(rawMBs, "raw_tls_MB/s")
	b.ReportMetric(senderMBs/rawMBs, "ratio")
	b.ReportMetric(float64(events)*n/senderNS.Seconds(), "events/s")
}
