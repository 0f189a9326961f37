package app

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/ctxtime"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
)

// logCollectorDetails is the start-up message `generate_collector_details`
// asks for: what runs, where, and what it reads and writes. Like every INFO
// record it also reaches the outputs as devo.collectors.out.local.info.
func logCollectorDetails(log *slog.Logger, cfg *config.Config, outs []*output, units []pipeline.Unit) {
	host, _ := os.Hostname()
	outputs := make([]string, 0, len(outs))
	for _, o := range cfg.Outputs {
		outputs = append(outputs, o.Name+" ("+o.Type+")")
	}
	names := make([]string, 0, len(units))
	for _, u := range units {
		names = append(names, u.Name)
	}
	log.Info("collector details",
		"collector_id", cfg.Globals.ID,
		"version", Version, "image", Image, "go_version", runtime.Version(),
		"platform", runtime.GOOS+"/"+runtime.GOARCH, "hostname", host, "pid", os.Getpid(),
		"config", cfg.Path, "persistence", cfg.Globals.PersistenceDir,
		"queue_max_messages", cfg.Globals.QueueMaxMessages, "queue_max_bytes", cfg.Globals.QueueMaxBytes,
		"outputs", outputs, "units", names)
}

// logQueueMetrics is what `queue_generate_metrics` asks for: every period,
// one INFO line per output with its queue's depth against its bounds and
// the fates the output has reported, until ctx ends.
func logQueueMetrics(ctx context.Context, outs []*output, period time.Duration, log *slog.Logger) {
	ctxtime.Every(ctx, period, func() {
		for _, o := range outs {
			msgs, bytes := o.Queue.Depth()
			maxMsgs, maxBytes := o.Queue.Bounds()
			delivered, failed := o.Queue.Settled()
			fill := pipeline.FillRatio(msgs, bytes, maxMsgs, maxBytes)
			log.Info("queue metrics", "output", o.Name,
				"queued_messages", msgs, "queued_bytes", bytes,
				"max_messages", maxMsgs, "max_bytes", maxBytes,
				"fill_percent", int(fill*100+0.5),
				"delivered_total", delivered, "failed_total", failed)
		}
	})
}
