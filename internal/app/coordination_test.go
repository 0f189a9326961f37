package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/coord"
	"github.com/devo-aws-collector/devo-aws-collector/internal/state"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/dynalite"
)

func coordConfig(endpoint string) *config.Config {
	return &config.Config{
		Globals: config.Globals{Coordination: &config.Coordination{Type: config.CoordinationDynamoDB,
			Table: "app-leases", Region: "us-east-1", EndpointURL: endpoint, LeaseDuration: 3 * time.Second}},
		Inputs: []*config.Input{{Name: "aws", ID: "1", Enabled: true, Regions: []string{"us-east-1"},
			Credentials: config.Credentials{Mode: config.CredKeys, AccessKey: "AKIAEXAMPLE", AccessSecret: "s"}}},
	}
}

// With globals.coordination, every input's Env gets the coordinator as
// its lease holder and the coordinator's checkpoint store, and /metrics
// shows the leases.
func TestCoordinationGivesEveryEnvTheSharedStore(t *testing.T) {
	srv := dynalite.Start(t)
	cfg := coordConfig(srv.URL)
	reg := stats.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	co, err := openCoordination(ctx, cfg, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()

	env, err := newEnv(ctx, cfg.Inputs[0], checkpoints{Store: co.Store(), Leases: co}, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := env.Leases.(*coord.Coordinator); !ok || h != co {
		t.Fatalf("Env.Leases = %T, want the coordinator", env.Leases)
	}
	if env.State != co.Store() {
		t.Fatalf("Env.State = %T, want the coordinator's store", env.State)
	}

	// A stream run through Env.Leases saves its checkpoint in the table.
	k := state.Key{Input: "aws", Service: "aws-guardduty", Region: "us-east-1", Sub: "det"}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	saved := make(chan error, 1)
	go func() {
		done <- env.Leases.Run(rctx, k, func(ctx context.Context) error {
			saved <- env.State.Put(k, []byte("cp"))
			<-ctx.Done()
			return nil
		})
	}()
	select {
	case err := <-saved:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("the stream never ran")
	}
	if v, ok, err := co.Store().Get(k); err != nil || !ok || string(v) != "cp" {
		t.Fatalf("checkpoint in the table: %q %v %v", v, ok, err)
	}

	mfs, err := reg.Gatherer().Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			found[mf.GetName()] += v
		}
	}
	if found["devo_collector_leases_held"] != 1 || found["devo_collector_lease_held"] != 1 || found["devo_collector_lease_takeovers_total"] != 1 {
		t.Errorf("lease metrics: held=%v lease_held=%v takeovers=%v", found["devo_collector_leases_held"],
			found["devo_collector_lease_held"], found["devo_collector_lease_takeovers_total"])
	}
	rcancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// An unreachable table stops the start with catalogue row P27.
func TestCoordinationUnreachableIsP27(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg := coordConfig("http://" + addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = openCoordination(ctx, cfg, stats.NewRegistry(), slog.New(slog.DiscardHandler))
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Row != "P27" || !strings.Contains(err.Error(), `"app-leases"`) {
		t.Fatalf("err = %v, want P27 naming the table", err)
	}
}

// /healthz shows the lease table: degraded with the error while DynamoDB
// does not answer, running again once it does.
func TestCoordinationHealth(t *testing.T) {
	srv := dynalite.Start(t)
	cfg := coordConfig(srv.URL)
	reg := stats.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	co, err := openCoordination(ctx, cfg, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	go watchCoordination(ctx, co, reg.Health(), 20*time.Millisecond)
	wait := func(state stats.State, reason string) {
		t.Helper()
		for {
			c := reg.Health().Report().Components["coordination"]
			if c.State == state && strings.HasPrefix(c.Reason, reason) {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("coordination component %+v, want %s %q…", c, state, reason)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	wait(stats.Running, "")
	if err := srv.Pause(); err != nil {
		t.Fatal(err)
	}
	wait(stats.Degraded, "lease table: ")
	if err := srv.Resume(); err != nil {
		t.Fatal(err)
	}
	wait(stats.Running, "")
}
