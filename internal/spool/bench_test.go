package spool

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// benchEvents returns n events shaped like CloudTrail records: a real tag
// and a ~1 KiB JSON payload.
func benchEvents(n int) []*pipeline.Event {
	payload := []byte(`{"eventVersion":"1.08","eventSource":"ec2.amazonaws.com","eventName":"StartInstances","awsRegion":"us-east-1","requestParameters":"` +
		strings.Repeat("x", 900) + `","@devo_pulling_id":"1717160741.123456"}`)
	evs := make([]*pipeline.Event, n)
	t := time.Date(2024, 5, 31, 13, 12, 8, 0, time.UTC)
	for i := range evs {
		evs[i] = pipeline.NewEvent(nil, "cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", t, payload)
	}
	return evs
}

// BenchmarkAppend measures durable appends; each op is one fsync'd Append
// of a chunk. Reported: events/s and MB/s of payload+tag.
func BenchmarkAppend(b *testing.B) {
	for _, chunk := range []int{100, 1000} {
		b.Run(fmt.Sprintf("chunk=%d", chunk), func(b *testing.B) {
			s, err := Open(b.TempDir(), 1<<40)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			evs := benchEvents(chunk)
			var bytes int64
			for _, e := range evs {
				bytes += int64(len(e.Tag) + len(e.Payload))
			}
			b.SetBytes(bytes)
			for b.Loop() {
				if err := s.Append(evs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*chunk)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

// BenchmarkReplay measures draining: decode, hand over, delete.
func BenchmarkReplay(b *testing.B) {
	s, err := Open(b.TempDir(), 1<<40)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	evs := benchEvents(1000)
	b.SetBytes(int64(len(evs)) * int64(len(evs[0].Tag)+len(evs[0].Payload)))
	for b.Loop() {
		b.StopTimer()
		if err := s.Append(evs); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := s.Replay(context.Background(), func([]*pipeline.Event) error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(evs))/b.Elapsed().Seconds(), "events/s")
}
