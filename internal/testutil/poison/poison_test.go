package poison

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

func TestAfterFate(t *testing.T) {
	q1, q2 := pipeline.NewQueue(10, 1<<20), pipeline.NewQueue(10, 1<<20)
	p := pipeline.New(slog.New(slog.DiscardHandler), pipeline.Options{},
		[]*pipeline.Output{{Name: "a", Queue: q1}, {Name: "b", Queue: q2}}, nil)
	ev := pipeline.NewEvent(nil, "t", time.Time{}, []byte("data"))
	AfterFate(ev)
	if err := p.Emit(context.Background(), ev); err != nil {
		t.Fatal(err)
	}
	q1.Settle(ev, pipeline.Delivered)
	if string(ev.Payload) != "data" {
		t.Fatalf("payload %q changed before the last output's fate", ev.Payload)
	}
	q2.Settle(ev, pipeline.Failed)
	if string(ev.Payload) != "####" {
		t.Fatalf("payload %q after every fate, want ####", ev.Payload)
	}
}
