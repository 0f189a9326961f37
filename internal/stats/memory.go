package stats

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"
)

// DefaultMemoryPeriod is how often the product logs its memory line.
const DefaultMemoryPeriod = 5 * time.Minute

// MemorySample is what the memory line reports at one moment.
type MemorySample struct {
	GlobalUsedPct float64 // system memory in use: (MemTotal-MemAvailable)/MemTotal, in percent
	RSS, VMS      int64   // this process's resident and virtual size, in bytes
}

// ReadMemory reads a sample from /proc.
func ReadMemory() (MemorySample, error) { return readMemory("/proc") }

func readMemory(proc string) (MemorySample, error) {
	var m MemorySample
	mem, err := procKB(filepath.Join(proc, "meminfo"), "MemTotal", "MemAvailable")
	if err != nil {
		return m, err
	}
	if mem["MemTotal"] <= 0 {
		return m, fmt.Errorf("%s: MemTotal is %d", filepath.Join(proc, "meminfo"), mem["MemTotal"])
	}
	m.GlobalUsedPct = float64(mem["MemTotal"]-mem["MemAvailable"]) / float64(mem["MemTotal"]) * 100
	self, err := procKB(filepath.Join(proc, "self", "status"), "VmRSS", "VmSize")
	if err != nil {
		return m, err
	}
	m.RSS, m.VMS = self["VmRSS"]*1024, self["VmSize"]*1024
	return m, nil
}

// procKB reads "Name:   123 kB" lines of a /proc file and returns the
// wanted ones in kB; all must be present.
func procKB(path string, want ...string) (map[string]int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read memory statistics: %w", err)
	}
	out := make(map[string]int64, len(want))
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := bytes.Cut(sc.Bytes(), []byte(":"))
		if !ok {
			continue
		}
		for _, w := range want {
			if string(name) != w {
				continue
			}
			fields := bytes.Fields(rest)
			if len(fields) == 0 {
				return nil, fmt.Errorf("%s: %s has no value", path, w)
			}
			v, err := strconv.ParseInt(string(fields[0]), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", path, w, err)
			}
			out[w] = v
		}
	}
	for _, w := range want {
		if _, ok := out[w]; !ok {
			return nil, fmt.Errorf("%s: no %s line", path, w)
		}
	}
	return out, nil
}

// RenderMemory renders the product's memory line for a sample taken before
// and one taken after freeing memory, for example
// "[GC] global: 20.4% -> 20.4%, process: RSS(34.50MiB -> 34.08MiB), VMS(410.52MiB -> 410.02MiB)".
func RenderMemory(before, after MemorySample) string {
	return fmt.Sprintf("[GC] global: %.1f%% -> %.1f%%, process: RSS(%.2fMiB -> %.2fMiB), VMS(%.2fMiB -> %.2fMiB)",
		before.GlobalUsedPct, after.GlobalUsedPct,
		mib(before.RSS), mib(after.RSS), mib(before.VMS), mib(after.VMS))
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// LogMemory logs the memory line once at start and then every period
// (DefaultMemoryPeriod when period <= 0) until ctx ends. Each time it samples,
// returns freed memory to the OS (debug.FreeOSMemory), samples again, and
// logs both. Where /proc cannot be read it warns once and returns.
func LogMemory(ctx context.Context, log *slog.Logger, period time.Duration) {
	logMemory(ctx, log, period, "/proc")
}

func logMemory(ctx context.Context, log *slog.Logger, period time.Duration, proc string) {
	if period <= 0 {
		period = DefaultMemoryPeriod
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		before, err := readMemory(proc)
		if err == nil {
			debug.FreeOSMemory()
			var after MemorySample
			if after, err = readMemory(proc); err == nil {
				log.Info(RenderMemory(before, after))
			}
		}
		if err != nil {
			log.Warn("memory statistics unavailable, memory line disabled", "err", err)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
