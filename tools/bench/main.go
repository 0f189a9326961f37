// Command bench measures the collector end to end through its binary and
// writes a markdown report (see docs/performance.md).
//
// For each scenario it starts the AWS emulator (fauxqs) on 127.0.0.1,
// uploads generated S3 objects, starts a discarding mutual-TLS receiver in
// this process, and in the same run:
//
//   - runs a lean reference pipeline (this program re-executed with
//     -reference) that does the minimum the job needs: receive from SQS,
//     GetObject, klauspost gunzip, a one-pass split into records, Devo line
//     framing, 64 KiB-buffered TLS writes, delete;
//   - runs the plain SDK loop (-plain): receive, GetObject, standard-library
//     gunzip into io.Discard, delete, 10 workers; it delivers nothing;
//   - runs the collector binary with its default settings and the Devo
//     output on the same objects (the notifications are sent again).
//
// All run as child processes, so their CPU time (user + system, from the
// kernel) excludes the emulator and the receiver. Reported: CPU-seconds per
// million events, events/s, time to drain, peak RSS, and the ratios
// reference/collector in CPU, and collector/reference and collector/plain
// loop in wall-clock rate.
//
// The memory scenarios run the collector alone: one large object
// (large-cloudtrail, large-vpcflow), and a backlog of about 1 GB of events
// with the receiver not listening for its first seconds (backlog), for peak
// RSS and the time to drain once the receiver is up.
//
//	go run ./tools/bench -collector bin/devo-aws-collector -objects 200 -scenarios all
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

func main() {
	ref := flag.Bool("reference", false, "internal: run the lean reference pipeline")
	plain := flag.Bool("plain", false, "internal: run the plain SDK loop (receive, GetObject, gunzip, delete)")
	var rc refConfig
	flag.StringVar(&rc.Endpoint, "endpoint", "", "internal (-reference): emulator URL")
	flag.StringVar(&rc.Queue, "queue", "", "internal (-reference): queue URL")
	flag.StringVar(&rc.Addr, "addr", "", "internal (-reference): receiver host:port")
	flag.StringVar(&rc.Format, "format", "cloudtrail", "internal (-reference): cloudtrail or vpcflow")
	flag.StringVar(&rc.CA, "ca", "", "internal (-reference): CA file")
	flag.StringVar(&rc.Cert, "cert", "", "internal (-reference): client certificate")
	flag.StringVar(&rc.Key, "key", "", "internal (-reference): client key")
	flag.IntVar(&rc.Objects, "n", 0, "internal (-reference): objects to process")
	flag.IntVar(&rc.Workers, "workers", 10, "internal (-reference): workers")

	bin := flag.String("collector", "bin/devo-aws-collector", "collector binary")
	objects := flag.Int("objects", 200, "objects per scenario")
	records := flag.Int("records", 1000, "CloudTrail records per object")
	lines := flag.Int("lines", 20000, "VPC Flow lines per object")
	scenarios := flag.String("scenarios", "cloudtrail,vpcflow", "comma-separated: cloudtrail, vpcflow, large-cloudtrail, large-vpcflow, backlog (or all)")
	largeRecords := flag.Int("large-records", 90000, "records of the large-cloudtrail object")
	largeLines := flag.Int("large-lines", 1000000, "lines of the large-vpcflow object")
	backlogObjects := flag.Int("backlog-objects", 620, "CloudTrail objects of the backlog (of -records records each)")
	downFor := flag.Duration("backlog-down", 20*time.Second, "how long the receiver stays down at the start of the backlog")
	gotest := flag.String("gotest", "", "a file of `go test -bench` output to include in the report")
	outDir := flag.String("out", "bench/results", "directory for the markdown report")
	flag.BoolVar(&keepDir, "keep", false, "keep each scenario's directory (config, collector.log) and print its path")
	output := flag.String("output", "", `extra keys for the Devo output's config, e.g. "ack_settle: 100ms" (default: none)`)
	globals := flag.String("globals", "", `extra keys for the collector's globals, e.g. "in_flight_max_size_in_mb: 32" (default: none)`)
	flag.BoolVar(&verbose, "v", false, "print progress every second")
	timeout := flag.Duration("timeout", 15*time.Minute, "give up after this long")
	flag.Parse()

	if *plain {
		if err := runPlain(rc); err != nil {
			fmt.Fprintf(os.Stderr, "plain SDK loop: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if *ref {
		if err := runReference(rc); err != nil {
			fmt.Fprintf(os.Stderr, "reference: %v\n", err)
			os.Exit(1)
		}
		return
	}
	for kv := range strings.SplitSeq(*output, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			outputExtra += "      " + kv + "\n"
		}
	}
	for kv := range strings.SplitSeq(*globals, ",") {
		if kv = strings.TrimSpace(kv); kv != "" {
			globalsExtra += "  " + kv + "\n"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	var results []result
	if *scenarios == "all" {
		*scenarios = "cloudtrail,vpcflow,large-cloudtrail,large-vpcflow,backlog"
	}
	for _, sc := range strings.Split(*scenarios, ",") {
		sc = strings.TrimSpace(sc)
		var s scenario
		switch sc {
		case "cloudtrail":
			s = scenario{Format: "cloudtrail", Objects: *objects, PerObject: *records, Baselines: true}
		case "vpcflow":
			s = scenario{Format: "vpcflow", Objects: *objects, PerObject: *lines, Baselines: true}
		case "large-cloudtrail":
			s = scenario{Format: "cloudtrail", Objects: 1, PerObject: *largeRecords}
		case "large-vpcflow":
			s = scenario{Format: "vpcflow", Objects: 1, PerObject: *largeLines}
		case "backlog":
			// 50 distinct objects, each uploaded under several keys.
			s = scenario{Format: "cloudtrail", Objects: *backlogObjects, PerObject: *records, DownFor: *downFor, Distinct: 50}
		default:
			fatalf("unknown scenario %q", sc)
		}
		s.Name = sc
		r, err := runScenario(ctx, *bin, s)
		if err != nil {
			fatalf("%s: %v", sc, err)
		}
		results = append(results, r)
		fmt.Println(r.summary())
	}
	path, err := writeReport(*outDir, results, *gotest)
	if err != nil {
		fatalf("write report: %v", err)
	}
	fmt.Println("report:", path)
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
	os.Exit(1)
}

// writeReport writes the results as a markdown table named after the date
// and commit, and returns its path.
func writeReport(dir string, rs []result, gotest string) (string, error) {
	commit := "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		commit = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(out) > 0 {
			commit += "+dirty"
		}
	}
	host, _ := os.Hostname()
	now := time.Now().UTC()
	var b strings.Builder
	fmt.Fprintf(&b, "# End-to-end benchmark, %s\n\n", now.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Commit %s, %s, %d CPUs, %s/%s, %s. Made by `make bench` (tools/bench).\n\n", commit, host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, runtime.Version())
	b.WriteString("| scenario | pipeline | objects | events | first event s | drain s | events/s | CPU s | CPU s / M events | peak RSS MB |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rs {
		for _, p := range r.runs() {
			first := fmt.Sprintf("%.2f", p.First.Seconds())
			if p.First == 0 {
				first = "–" // the plain loop delivers nothing
			}
			fmt.Fprintf(&b, "| %s | %s | %d | %d | %s | %.2f | %.0f | %.2f | %.2f | %.0f |\n",
				r.Scenario.Name, p.Name, r.Scenario.Objects, r.Events, first, p.Wall.Seconds(), p.rate(r.Events),
				p.CPU.Seconds(), p.CPU.Seconds()/float64(r.Events)*1e6, float64(p.PeakRSS)/(1<<20))
		}
	}
	head := false
	for _, r := range rs {
		if !r.Scenario.Baselines {
			continue
		}
		if !head {
			b.WriteString("\n| scenario | reference CPU / collector CPU | collector rate / reference rate | collector rate / plain SDK loop rate | object size (gzip) |\n|---|---|---|---|---|\n")
			head = true
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %.2f | %.1f KB |\n", r.Scenario.Name, r.cpuRatio(), r.rateRatio(), r.plainRatio(), float64(r.ObjectBytes)/1024)
	}
	head = false
	for _, r := range rs {
		if r.Scenario.Baselines {
			continue
		}
		if !head {
			b.WriteString("\n### Memory: large objects and a backlog\n\n")
			b.WriteString("| scenario | objects | events | decompressed MB | gzip MB | receiver down s | first event after it came up s | then to the end s | drain after it came up s | total s | CPU s | peak RSS MB | ≤ 150 MB | peak anon / file MB |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
			head = true
		}
		c, down, upFirst, rest, upDrain := r.Collector, "–", "–", "–", "–"
		if r.Scenario.DownFor > 0 {
			// The output's reconnect backoff, then the spool's replay.
			down, upDrain = fmt.Sprintf("%.1f", c.Up.Seconds()), fmt.Sprintf("%.2f", r.UpDrain.Seconds())
			upFirst, rest = fmt.Sprintf("%.2f", (c.First-c.Up).Seconds()), fmt.Sprintf("%.2f", (c.Wall-c.First).Seconds())
		}
		ok := "yes"
		if c.PeakRSS > 150<<20 {
			ok = "**no**"
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %.0f | %.1f | %s | %s | %s | %s | %.2f | %.2f | %.0f | %s | %.0f / %.0f |\n",
			r.Scenario.Name, r.Scenario.Objects, r.Events, float64(r.RawBytes)/(1<<20), float64(r.ObjectBytes*r.Scenario.Objects)/(1<<20),
			down, upFirst, rest, upDrain, c.Wall.Seconds(), c.CPU.Seconds(), float64(c.PeakRSS)/(1<<20), ok,
			float64(c.PeakAnon)/(1<<20), float64(c.PeakFile)/(1<<20))
	}
	b.WriteString("\nCPU is user + system time of the child process (the collector, the reference or the plain SDK loop), from the start of the process until every event reached the receiver and the queue was empty; the emulator and the receiver are not counted. The collector runs with its default settings (no `requests_per_second`, default SQS keys) and the `devo_platform` output; the reference is `tools/bench -reference`, the plain SDK loop `tools/bench -plain` (10 workers: receive, GetObject, standard-library gunzip into io.Discard, delete; it delivers nothing). In a backlog the receiver does not listen for the first seconds shown, so the output is down when the collector starts.\n")
	if gotest != "" {
		data, err := os.ReadFile(gotest)
		if err != nil {
			return "", err
		}
		b.WriteString("\n### In process (issue 16 targets)\n\n")
		b.WriteString(targetsMarkdown(parseTargets(string(data), inProcessTargets())))
		b.WriteString("\nFrom `go test -run '^$' -bench 'CloudTrailObject|VPCFlow' -benchtime 3s -cpu 1 -count 3 ./internal/source/s3sqs` (below); x_gunzip and x_naive are ratios within each run.\n")
		b.WriteString("\n## go test -bench\n\n```\n")
		b.Write(data)
		b.WriteString("```\n")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	path := filepath.Join(dir, now.Format("2006-01-02T1504")+"-"+strings.TrimSuffix(commit, "+dirty")+".md")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}
