package spool

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// Replay chunks fill up to their event bound with CloudTrail-sized events
// (about 1.7 KB), as the Devo output spools them (1,024 at a time): a chunk
// takes whole records only, so records as large as half a chunk left each
// chunk with one record, about 550 events, and a replay window carried half
// the events it could.
func TestReplayChunksFillWithCloudTrailSizedEvents(t *testing.T) {
	s := open(t, t.TempDir(), 0)
	payload := strings.Repeat("c", 1700)
	for range 4 {
		evs := make([]*pipeline.Event, 1024)
		for i := range evs {
			evs[i] = ev("cloud.aws.cloudtrail.ec2.123456789012.us-east-1.1", time.Time{}, payload)
		}
		if err := s.Append(evs); err != nil {
			t.Fatal(err)
		}
	}
	var sizes []int
	err := s.ReplayWindow(context.Background(), 32, 0, func(evs []*pipeline.Event) func() error {
		sizes = append(sizes, len(evs))
		return func() error { return nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range sizes {
		total += n
	}
	if total != 4096 {
		t.Fatalf("replayed %d events, want 4096", total)
	}
	for _, n := range sizes[:len(sizes)-1] {
		if n < chunkMaxEvents*8/10 {
			t.Fatalf("chunks of %v events: want each but the last near %d", sizes, chunkMaxEvents)
		}
	}
}
