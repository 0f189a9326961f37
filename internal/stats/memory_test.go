package stats

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

func TestRenderMemoryGolden(t *testing.T) {
	before := MemorySample{GlobalUsedPct: 20.4, RSS: 35328 * 1024, VMS: 420372 * 1024}
	after := MemorySample{GlobalUsedPct: 20.4, RSS: 34898 * 1024, VMS: 419860 * 1024}
	want := "[GC] global: 20.4% -> 20.4%, process: RSS(34.50MiB -> 34.08MiB), VMS(410.52MiB -> 410.02MiB)"
	if got := RenderMemory(before, after); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}

func TestReadMemoryFromProcFiles(t *testing.T) {
	got, err := readMemory("testdata/proc")
	if err != nil {
		t.Fatal(err)
	}
	// (16000000-12736000)/16000000 = 20.4 %; kB are KiB.
	want := MemorySample{GlobalUsedPct: 20.4, RSS: 35328 * 1024, VMS: 420372 * 1024}
	if got.RSS != want.RSS || got.VMS != want.VMS || got.GlobalUsedPct < 20.39999 || got.GlobalUsedPct > 20.40001 {
		t.Fatalf("readMemory = %+v, want %+v", got, want)
	}
}

func TestReadMemoryErrors(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "self"), 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := readMemory(dir); err == nil {
		t.Error("missing meminfo: want an error")
	}
	write("meminfo", "MemTotal: 100 kB\n")
	write("self/status", "VmRSS: 1 kB\nVmSize: 2 kB\n")
	if _, err := readMemory(dir); err == nil {
		t.Error("meminfo without MemAvailable: want an error")
	}
	write("meminfo", "MemTotal: 100 kB\nMemAvailable: x kB\n")
	if _, err := readMemory(dir); err == nil {
		t.Error("unparseable MemAvailable: want an error")
	}
	write("meminfo", "MemTotal: 100 kB\nMemAvailable: 25 kB\n")
	write("self/status", "VmRSS: 1 kB\n")
	if _, err := readMemory(dir); err == nil {
		t.Error("status without VmSize: want an error")
	}
}

func TestReadMemoryLive(t *testing.T) {
	m, err := ReadMemory()
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.VMS < m.RSS || m.GlobalUsedPct <= 0 || m.GlobalUsedPct > 100 {
		t.Fatalf("implausible sample %+v", m)
	}
}

func TestLogMemory(t *testing.T) {
	var buf logBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		logMemory(ctx, buf.logger(), 10*time.Millisecond, "testdata/proc")
	}()
	waitFor(t, func() bool { return len(buf.records(t)) >= 3 })
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("logMemory did not return after cancel")
	}
	want := "[GC] global: 20.4% -> 20.4%, process: RSS(34.50MiB -> 34.50MiB), VMS(410.52MiB -> 410.52MiB)"
	for _, r := range buf.records(t) {
		if r["msg"] != want || r["level"] != "INFO" {
			t.Fatalf("record %v, want msg %q", r, want)
		}
	}

	// On the real /proc the line has the same shape.
	{
		var live logBuffer
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		LogMemory(ctx, live.logger(), time.Hour)
		msgs := live.messages(t)
		re := regexp.MustCompile(`^\[GC\] global: \d+\.\d% -> \d+\.\d%, process: RSS\(\d+\.\d\dMiB -> \d+\.\d\dMiB\), VMS\(\d+\.\d\dMiB -> \d+\.\d\dMiB\)$`)
		if len(msgs) != 1 || !re.MatchString(msgs[0]) {
			t.Fatalf("live memory lines %q", msgs)
		}
	}
}

func TestLogMemoryWithoutProc(t *testing.T) {
	var buf logBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		logMemory(context.Background(), buf.logger(), time.Millisecond, t.TempDir())
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("logMemory kept running without /proc")
	}
	recs := buf.records(t)
	if len(recs) != 1 || recs[0]["level"] != "WARN" || recs[0]["msg"] != "memory statistics unavailable, memory line disabled" {
		t.Fatalf("records %v", recs)
	}
}
