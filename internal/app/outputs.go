package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sink/console"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
)

// buildOutputs makes one sink and one bounded queue per configured output.
// The returned func releases what the outputs hold (spool files).
func buildOutputs(ctx context.Context, cfg *config.Config, reg *stats.Registry, log *slog.Logger, stdout io.Writer) ([]*pipeline.Output, func(), error) {
	var outs []*pipeline.Output
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for _, o := range cfg.Outputs {
		olog := log.With("output", o.Name)
		var sink pipeline.Sink
		switch o.Type {
		case config.OutputConsole, config.OutputStdout:
			s, err := console.New(stdout, console.Options{Format: o.Format, Hostname: o.Hostname, Log: olog})
			if err != nil {
				closeAll()
				return nil, nil, fmt.Errorf("output %s: %w", o.Name, err)
			}
			sink = s
		default:
			closeAll()
			return nil, nil, fmt.Errorf("output %s: type %q is not implemented in this build", o.Name, o.Type)
		}
		q := pipeline.NewQueue(cfg.Globals.QueueMaxMessages, cfg.Globals.QueueMaxBytes)
		reg.Output(o.Name, q.Depth)
		outs = append(outs, &pipeline.Output{Name: o.Name, Sink: sink, Queue: q})
	}
	return outs, closeAll, nil
}
