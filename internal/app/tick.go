package app

import (
	"context"
	"time"
)

// nowAndEvery calls f at once and then every period until ctx ends: the
// loop of the watchers that publish a state (credentials, coordination,
// queue backlog) and must show it from the start.
func nowAndEvery(ctx context.Context, period time.Duration, f func()) {
	f()
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}
