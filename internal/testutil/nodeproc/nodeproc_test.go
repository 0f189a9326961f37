package nodeproc

import (
	"context"
	"strings"
	"testing"
	"time"
)

// An emulator that dies during start-up fails Start at once, with what it
// printed, instead of waiting out the readiness limit.
func TestStartReportsEarlyExit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir, err := Install(ctx, "fauxqs")
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	_, err = Start(ctx, Spec{
		Name:      "crasher",
		Dir:       dir,
		Args:      func(int) []string { return []string{"-e", "console.error('boom'); process.exit(3)"} },
		ReadyPath: "/",
	})
	if err == nil || !strings.Contains(err.Error(), "crasher on port") || !strings.Contains(err.Error(), "exited during start-up: boom") {
		t.Fatalf("Start error %v, want an early-exit error carrying the output", err)
	}
	if d := time.Since(began); d > 30*time.Second {
		t.Fatalf("Start took %v to see the exit", d)
	}
}

func TestInstallUnknownName(t *testing.T) {
	if _, err := Install(context.Background(), "no-such-emulator"); err == nil || !strings.Contains(err.Error(), "locate install.sh") {
		t.Fatalf("Install error %v, want a locate error", err)
	}
}
