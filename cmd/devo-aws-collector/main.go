// Command devo-aws-collector pulls AWS telemetry and delivers it to Devo.
//
//	devo-aws-collector run      [--config FILE] [--debug]
//	devo-aws-collector validate [--config FILE] [--check] [--debug]
//	devo-aws-collector version
//
// This is the only place that calls os.Exit.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/devo-aws-collector/devo-aws-collector/internal/app"
	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
)

// Exit codes (docs/errors.md, docs/operations.md): one rule for run and
// validate alike.
const (
	exitOK     = 0
	exitFailed = 1 // a runtime failure; validate --check could not reach AWS or an output
	exitConfig = 2 // the configuration (or the command line) is invalid: nothing started
	exitUsage  = exitConfig
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage:
  devo-aws-collector run      [--config FILE] [--debug]   collect until SIGINT/SIGTERM
  devo-aws-collector validate [--config FILE] [--check]   check the configuration and exit
  devo-aws-collector version

--config defaults to $CONFIG_FILE (a file name in ./config/) or config/config.yaml.
`)
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "devo-aws-collector %s\n", app.Version)
		return exitOK
	case "help", "--help", "-h":
		usage(stdout)
		return exitOK
	case "run", "validate":
	default:
		fmt.Fprintf(stderr, "unknown command %q\n", cmd)
		usage(stderr)
		return exitUsage
	}

	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (YAML or JSON)")
	debug := fs.Bool("debug", false, "debug logging (overrides globals.debug)")
	check := fs.Bool("check", false, "validate: also reach AWS and the outputs")
	if err := fs.Parse(rest); err != nil {
		return exitUsage
	}
	path := configPath(*cfgPath)

	cfg, err := config.Load(path)
	var problems config.Errors
	if errors.As(err, &problems) {
		// Errors first, then the warnings: a misspelt key can explain
		// an error (an unknown key next to a missing mandatory one).
		for _, p := range problems {
			fmt.Fprintln(stderr, p.Detail())
		}
		printWarnings(stderr, cfg)
		fmt.Fprintf(stderr, "%s: %d configuration problem(s)", path, len(problems))
		if cfg != nil && len(cfg.Warnings) > 0 {
			fmt.Fprintf(stderr, ", %d warning(s)", len(cfg.Warnings))
		}
		fmt.Fprintln(stderr)
		return exitConfig
	}
	if err != nil {
		fmt.Fprintf(stderr, "load configuration: %v\n", err)
		return exitConfig
	}
	if *debug {
		cfg.Globals.Debug = true
	}
	printWarnings(stderr, cfg)

	if cmd == "validate" {
		fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
		cfg.Summary(stdout)
		if *check {
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := app.Check(ctx, cfg, stdout); err != nil {
				fmt.Fprintln(stderr, err)
				return exitFailed
			}
		}
		return exitOK
	}
	return runCollector(cfg, stdout, stderr)
}

// printWarnings prints the configuration's warnings, one per line.
func printWarnings(w io.Writer, cfg *config.Config) {
	if cfg == nil {
		return
	}
	for _, warning := range cfg.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warning)
	}
}

// configPath applies Devo's rule: --config wins; else CONFIG_FILE names a
// file in ./config/; else config/config.yaml.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if name := os.Getenv("CONFIG_FILE"); name != "" {
		if filepath.IsAbs(name) || filepath.Dir(name) != "." {
			return name
		}
		return filepath.Join("config", name)
	}
	return filepath.Join("config", "config.yaml")
}

// runCollector runs until the first SIGINT/SIGTERM, then shuts down in
// order; a second signal exits at once.
func runCollector(cfg *config.Config, stdout, stderr io.Writer) int {
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)

	stop, graceful := context.WithCancel(context.Background())
	defer graceful()
	go func() {
		<-sigs
		graceful()
		<-sigs
		fmt.Fprintln(stderr, "second signal: exiting at once")
		os.Exit(exitFailed)
	}()

	defer startPprof(stderr)()
	if err := app.Run(stop, cfg, stdout, stderr); err != nil {
		fmt.Fprintf(stderr, "devo-aws-collector: %v\n", err)
		return exitFailed
	}
	return exitOK
}
