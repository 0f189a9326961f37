// Package app assembles the collector from a loaded configuration: logging,
// stats, the state store, the outputs and one unit per (input, service,
// region), and runs them with the pipeline's shutdown order.
package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/lease"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/selflog"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// Version is the collector's version, set at build time with
// -ldflags "-X .../internal/app.Version=…".
var Version = "0.1.0-dev"

// Image names the collector in internal messages (collector_image).
const Image = "devo-aws-collector"

// Run builds the collector from cfg and runs it until stop ends. Logs go to
// stderr (and, as internal messages, to the outputs); console outputs write
// to stdout.
func Run(stop context.Context, cfg *config.Config, stdout, stderr io.Writer) error {
	self := selflog.New(baseHandler(cfg, stderr), selflog.Options{
		CollectorName:    cfg.Globals.Name,
		CollectorVersion: Version,
		CollectorImage:   Image,
		Debug:            cfg.Globals.Debug,
	})
	log := slog.New(self)
	log.Info("collector starting", "version", Version, "config", cfg.Path, "persistence", cfg.Globals.PersistenceDir)

	if limit := memoryLimit(cfg.Globals); limit > 0 {
		debug.SetMemoryLimit(limit)
		log.Debug("memory limit set", "bytes", limit)
	}

	if err := os.MkdirAll(cfg.Globals.PersistenceDir, 0o700); err != nil {
		return fmt.Errorf("create persistence directory: %w", err)
	}
	store, err := state.Open(cfg.Globals.PersistenceDir)
	if err != nil {
		return err
	}
	defer store.Close()

	reg := stats.NewRegistry()
	if addr := cfg.Globals.MetricsListen; addr != "" {
		srv := stats.NewServer(reg, log)
		if err := srv.Start(addr); err != nil {
			return fmt.Errorf("metrics listener %s: %w", addr, err)
		}
		// stats.Server logs "metrics listener started" with the address.
		defer func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = srv.Shutdown(ctx)
		}()
	}

	outs, err := buildOutputs(cfg, reg, log, stdout)
	if err != nil {
		return err
	}
	defer closeOutputs(outs)

	// With globals.coordination, the API streams' checkpoints and leases
	// live in the shared table; the local store stays open for a
	// collector alone (and the spool and journal are per instance anyway).
	ck := checkpoints{Store: store, Leases: lease.Solo{}}
	if cfg.Globals.Coordination != nil {
		co, err := openCoordination(stop, cfg, reg, log)
		if err != nil {
			return err
		}
		watchCtx, stopWatch := context.WithCancel(context.Background())
		defer stopWatch()
		go watchCoordination(watchCtx, co, reg.Health(), credentialsPoll)
		// Deferred after the outputs' close, so it runs before it: once
		// the pipeline has stopped every stream, the leases are released
		// and the other collectors take over at once.
		defer func() {
			if err := co.Close(); err != nil {
				log.Warn("leases not released, the other collectors take them when they expire", "err", err)
			}
		}()
		ck = checkpoints{Store: co.Store(), Leases: co}
		log.Info("coordination enabled", "table", cfg.Globals.Coordination.Table, "region", cfg.Globals.Coordination.Region,
			"owner", co.Owner(), "lease_duration", co.LeaseDuration())
	}

	units, err := buildUnits(stop, cfg, ck, reg, log)
	if err != nil {
		return err
	}

	// Operator lines and internal messages run until the pipeline is done.
	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go stats.LogMemory(bg, log, stats.DefaultMemoryPeriod)
	logSenderStats(bg, outs, cfg.Globals.SenderStatsPeriod, log)
	if cfg.Globals.QueueGenerateMetrics {
		go logQueueMetrics(bg, outs, cfg.Globals.SenderStatsPeriod, log)
	}
	pouts := make([]*pipeline.Output, len(outs))
	for i, o := range outs {
		pouts[i] = o.Output
	}
	go self.Run(bg, selflog.NewOutputs(pouts))

	p := pipeline.New(log, pipeline.Options{
		InFlightBytes: cfg.Globals.InFlightMaxBytes,
		// The start-up probe runs beside the sources: the first events
		// leave while it holds its connection. A rejected certificate
		// still stops the collector, and nothing was delivered then
		// (the output settles what it holds Failed: see devo.Sender.Run).
		Check: func(ctx context.Context) error { return checkOutputs(ctx, outs, log) },
		UnitState: func(unit, state string, err error) {
			switch state {
			case "running":
				reg.Health().Set(unit, stats.Running, "")
			case "restarting":
				reg.Health().Set(unit, stats.Degraded, err.Error())
				if u := unitCounters(reg, unit); u != nil {
					u.Restarts.Add(1)
				}
			case "stopped":
				reg.Health().Remove(unit)
			}
		},
	}, pouts, units)
	log.Info("collector started", "outputs", len(outs), "units", len(units))
	if cfg.Globals.GenerateCollectorDetails {
		logCollectorDetails(log, cfg, outs, units)
	}
	err = p.Run(stop, context.Background())
	if err != nil {
		log.Error("collector stopped with an error", "err", err)
		return err
	}
	log.Info("collector stopped")
	return nil
}

// memoryLimit is the soft memory limit for the Go runtime, 0 for none. The
// in-flight budget bounds what events hold; without a limit the garbage
// collector would still let the heap grow to twice what is live before
// collecting (GOGC), so the process would use about twice the budget. A
// GOMEMLIMIT in the environment wins.
func memoryLimit(g config.Globals) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return 0
	}
	if g.MemoryLimitBytes > 0 {
		return g.MemoryLimitBytes
	}
	if g.InFlightMaxBytes > 0 {
		return g.InFlightMaxBytes + 32<<20
	}
	return 0
}

func baseHandler(cfg *config.Config, w io.Writer) slog.Handler {
	level := slog.LevelInfo
	if cfg.Globals.Debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Globals.LogFormat == "json" {
		return slog.NewJSONHandler(w, opts)
	}
	return slog.NewTextHandler(w, opts)
}
