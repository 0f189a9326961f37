package ctxtime

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	if !Sleep(ctx, time.Millisecond) {
		t.Fatal("Sleep on a live context reported it ended")
	}
	if !Sleep(ctx, 0) {
		t.Fatal("Sleep(0) on a live context reported it ended")
	}
	cancel()
	if Sleep(ctx, 0) {
		t.Fatal("Sleep(0) on an ended context reported it live")
	}
	start := time.Now()
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep on an ended context reported it live")
	}
	if time.Since(start) > 10*time.Second {
		t.Fatal("Sleep did not end with its context")
	}
}

func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	if Sleep(ctx, time.Hour) {
		t.Fatal("Sleep cut short by its context reported it live")
	}
}

func TestEvery(t *testing.T) {
	for _, now := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		var n atomic.Int32
		done := make(chan struct{})
		f := func() {
			if n.Add(1) == 3 {
				cancel()
			}
		}
		go func() {
			defer close(done)
			if now {
				NowAndEvery(ctx, time.Hour, f)
			} else {
				Every(ctx, time.Millisecond, f)
			}
		}()
		if now {
			// The first call comes at once, long before the first hour.
			deadline := time.Now().Add(10 * time.Second)
			for n.Load() == 0 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			if n.Load() != 1 {
				t.Fatalf("NowAndEvery: %d calls before the first period, want 1", n.Load())
			}
			cancel()
		}
		<-done
		if !now && n.Load() != 3 {
			t.Fatalf("Every: %d calls, want 3", n.Load())
		}
	}
}
