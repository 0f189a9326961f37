package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"

	"github.com/devo-aws-collector/devo-aws-collector/internal/awstest/fauxqs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/certs"
	"github.com/devo-aws-collector/devo-aws-collector/internal/testutil/samples"
)

const bucket = "bench-logs"

// keepDir keeps the scenario's directory (config, collector.log, state).
var keepDir, verbose bool

// globalsExtra is YAML added to the collector's globals (-globals).
var globalsExtra string

// outputExtra is YAML added to the Devo output's config block (-output).
var outputExtra string

// scenario is one kind of S3 object, N of them.
type scenario struct {
	Name      string // cloudtrail or vpcflow
	Objects   int
	PerObject int // records or lines per object
}

// run is what one pipeline (reference or collector) took.
type run struct {
	Name    string
	Wall    time.Duration // start of the process to the last event at the receiver with the queue empty
	First   time.Duration // start of the process to the first event at the receiver
	CPU     time.Duration // user + system of the process over Wall
	PeakRSS int64         // bytes
}

func (p run) rate(events int) float64 { return float64(events) / p.Wall.Seconds() }

type result struct {
	Scenario             scenario
	Events               int
	ObjectBytes          int // mean gzip size of one object
	Reference, Collector run
}

func (r result) cpuRatio() float64  { return r.Reference.CPU.Seconds() / r.Collector.CPU.Seconds() }
func (r result) rateRatio() float64 { return r.Collector.rate(r.Events) / r.Reference.rate(r.Events) }

func (r result) summary() string {
	return fmt.Sprintf("%s: %d events; reference %.2fs %.2f CPU-s %d MB; collector %.2fs %.2f CPU-s %d MB; CPU ratio %.2f, rate ratio %.2f",
		r.Scenario.Name, r.Events, r.Reference.Wall.Seconds(), r.Reference.CPU.Seconds(), r.Reference.PeakRSS>>20,
		r.Collector.Wall.Seconds(), r.Collector.CPU.Seconds(), r.Collector.PeakRSS>>20, r.cpuRatio(), r.rateRatio())
}

func runScenario(ctx context.Context, bin string, sc scenario) (result, error) {
	res := result{Scenario: sc}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return res, err
	}
	dir, err := os.MkdirTemp("", "devo-aws-bench-")
	if err != nil {
		return res, err
	}
	if keepDir {
		fmt.Printf("%s: keeping %s\n", sc.Name, dir)
	} else {
		defer os.RemoveAll(dir)
	}
	set, err := certs.Generate(dir)
	if err != nil {
		return res, err
	}

	emu, err := fauxqs.StartProcess(ctx)
	if err != nil {
		return res, fmt.Errorf("start fauxqs: %w", err)
	}
	defer emu.Stop()
	queueName := "bench-" + sc.Name
	qURL, err := emu.CreateQueue(queueName, map[string]string{"VisibilityTimeout": "60"})
	if err != nil {
		return res, err
	}
	if err := emu.CreateBucket(bucket); err != nil {
		return res, err
	}

	fmt.Printf("%s: uploading %d objects\n", sc.Name, sc.Objects)
	notes, events, size, err := upload(ctx, emu.S3(), sc)
	if err != nil {
		return res, err
	}
	res.Events, res.ObjectBytes = events, size/sc.Objects

	rcv, err := startReceiver(set)
	if err != nil {
		return res, err
	}
	defer rcv.close()
	sqsc := emu.SQS()

	// The reference first, then the collector, on the same objects.
	if err := sendAll(ctx, sqsc, qURL, notes); err != nil {
		return res, err
	}
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	refCmd := exec.CommandContext(ctx, self, "-reference", "-endpoint", emu.URL, "-queue", qURL, "-addr", rcv.addr(),
		"-format", sc.Name, "-ca", set.CA, "-cert", set.ClientCert, "-key", set.ClientKey, "-n", strconv.Itoa(sc.Objects))
	refCmd.Stderr = os.Stderr
	fmt.Printf("%s: reference pipeline\n", sc.Name)
	res.Reference, err = runChild(ctx, "reference", refCmd, rcv, events, sqsc, qURL)
	if err != nil {
		return res, err
	}

	// A queue of its own: a long poll the reference had open when it exited
	// could still take messages on the server.
	rcv.reset()
	if qURL, err = emu.CreateQueue(queueName+"-collector", map[string]string{"VisibilityTimeout": "60"}); err != nil {
		return res, err
	}
	queueName += "-collector"
	if err := sendAll(ctx, sqsc, qURL, notes); err != nil {
		return res, err
	}
	cfgPath, err := writeCollectorConfig(dir, emu.URL, queueName, sc.Name, rcv.port(), set)
	if err != nil {
		return res, err
	}
	col := exec.CommandContext(ctx, bin, "run", "--config", cfgPath)
	col.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "collector.log"))
	if err != nil {
		return res, err
	}
	defer logf.Close()
	col.Stdout, col.Stderr = logf, logf
	fmt.Printf("%s: collector\n", sc.Name)
	res.Collector, err = runChild(ctx, "collector", col, rcv, events, sqsc, qURL)
	if err != nil {
		logData, _ := os.ReadFile(logf.Name())
		return res, fmt.Errorf("%w\ncollector log (tail):\n%s", err, tail(string(logData), 40))
	}
	return res, nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// upload puts the scenario's objects into the bucket and returns their
// notifications, the number of events they hold and their total size.
func upload(ctx context.Context, s3c *s3.Client, sc scenario) (notes []string, events, size int, err error) {
	type obj struct {
		key  string
		body []byte
		n    int
	}
	objs := make(chan obj)
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for o := range objs {
				_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(o.key), Body: bytes.NewReader(o.body)})
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("put %s: %w", o.key, err)
				}
				notes = append(notes, samples.S3Notification(bucket, o.key, len(o.body)))
				events += o.n
				size += len(o.body)
				mu.Unlock()
			}
		}()
	}
	for i := range sc.Objects {
		var o samples.Object
		if sc.Name == "cloudtrail" {
			o = samples.BusyTrail(i, sc.PerObject, 1)
		} else {
			o = samples.VPCFlow(i, 2, sc.PerObject)
		}
		objs <- obj{key: o.Key, body: o.Body, n: o.Events}
	}
	close(objs)
	wg.Wait()
	return notes, events, size, firstErr
}

func sendAll(ctx context.Context, c *sqs.Client, url string, bodies []string) error {
	for i := 0; i < len(bodies); i += 10 {
		var entries []types.SendMessageBatchRequestEntry
		for j, b := range bodies[i:min(i+10, len(bodies))] {
			entries = append(entries, types.SendMessageBatchRequestEntry{Id: aws.String(strconv.Itoa(j)), MessageBody: aws.String(b)})
		}
		out, err := c.SendMessageBatch(ctx, &sqs.SendMessageBatchInput{QueueUrl: &url, Entries: entries})
		if err != nil {
			return fmt.Errorf("send notifications: %w", err)
		}
		if len(out.Failed) > 0 {
			return fmt.Errorf("send notifications: %d failed", len(out.Failed))
		}
	}
	return nil
}

// runChild starts cmd and waits until the receiver has every event and the
// queue is empty, measuring the process's CPU and peak RSS at that moment
// (from /proc); then it stops the process (SIGTERM) if it is still running.
func runChild(ctx context.Context, name string, cmd *exec.Cmd, rcv *receiver, events int, sqsc *sqs.Client, qURL string) (run, error) {
	r := run{Name: name}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return r, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	pid := cmd.Process.Pid
	var last procStats
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	done := false
	var lastLog time.Time
	for !done {
		select {
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			return r, fmt.Errorf("%s: timed out with %d of %d events at the receiver", name, rcv.count(), events)
		case err := <-exited:
			if rcv.count() < events {
				return r, fmt.Errorf("%s exited (%v) with %d of %d events at the receiver", name, err, rcv.count(), events)
			}
			ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
			r.Wall = time.Since(start)
			if ru != nil {
				r.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
				r.PeakRSS = ru.Maxrss << 10
			}
			return r, nil
		case <-tick.C:
		}
		if st, err := readProc(pid); err == nil {
			last = st
		}
		if r.First == 0 && rcv.count() > 0 {
			r.First = time.Since(start)
		}
		if verbose && time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			vis, inflight, _ := fauxqs.QueueCounts(ctx, sqsc, qURL)
			fmt.Printf("  %s: %5.1fs %d/%d events at the receiver, queue visible %d in flight %d\n", name, time.Since(start).Seconds(), rcv.count(), events, vis, inflight)
		}
		if rcv.count() >= events {
			vis, inflight, err := fauxqs.QueueCounts(ctx, sqsc, qURL)
			done = err == nil && vis == 0 && inflight == 0
		}
	}
	r.Wall = time.Since(start)
	if st, err := readProc(pid); err == nil {
		last = st
	}
	r.CPU, r.PeakRSS = last.cpu, last.peakRSS
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
	if got := rcv.count(); got != events {
		return r, fmt.Errorf("%s: %d events at the receiver, want %d", name, got, events)
	}
	return r, nil
}

type procStats struct {
	cpu     time.Duration
	peakRSS int64
}

// readProc reads a live process's CPU time (utime + stime, in clock ticks
// of 100 Hz, as on every Linux/amd64 kernel) and peak RSS (VmHWM).
func readProc(pid int) (procStats, error) {
	var st procStats
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return st, err
	}
	// The command name may hold spaces; fields start after its ')'.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return st, errors.New("short /proc stat")
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	st.cpu = time.Duration(ut+stime) * 10 * time.Millisecond
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return st, err
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			st.peakRSS = kb << 10
		}
	}
	return st, nil
}

func writeCollectorConfig(dir, endpoint, queue, scenario string, port int, set *certs.Set) (string, error) {
	service := "audit-events-all:\n        types: [audits_s3]"
	if scenario == "vpcflow" {
		service = "non-cloudwatch-logs:\n        types: [flowlogs]"
	}
	cfg := fmt.Sprintf(`# Written by tools/bench: default settings, the Devo output to the bench receiver.
globals:
  name: bench
  persistence: {type: filesystem, config: {directory_name: state}}
%soutputs:
  devo:
    type: devo_platform
    config:
      address: 127.0.0.1
      port: %d
      chain: %s
      cert: %s
      key: %s
%sinputs:
  aws:
    id: "1"
    regions: [us-east-1]
    endpoint_url: %q
    credentials: {access_key: BENCHACCESSKEY, access_secret: bench-secret}
    services:
      %s
        sqs_queue_name: %s
`, globalsExtra, port, set.CA, set.ClientCert, set.ClientKey, outputExtra, endpoint, service, queue)
	if err := os.MkdirAll(filepath.Join(dir, "config"), 0o755); err != nil {
		return "", err
	}
	p := filepath.Join(dir, "config", "config.yaml")
	return p, os.WriteFile(p, []byte(cfg), 0o600)
}

// receiver is a mutual-TLS listener that counts the Devo lines of AWS
// events (tags cloud.aws.*) it receives and discards them.
type receiver struct {
	ln    net.Listener
	lines atomic.Int64
	wg    sync.WaitGroup
}

func startReceiver(set *certs.Set) (*receiver, error) {
	kp, err := tls.LoadX509KeyPair(set.ServerCert, set.ServerKey)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(set.CA)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		return nil, err
	}
	r := &receiver{ln: ln}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer c.Close()
				r.consume(c)
			}()
		}
	}()
	return r, nil
}

var awsTag = []byte(" cloud.aws.")

func (r *receiver) consume(c net.Conn) {
	br := bufio.NewReaderSize(c, 256<<10)
	var n int64
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the buffer: count it once, at its start.
			if bytes.Contains(line[:min(len(line), 200)], awsTag) {
				n++
			}
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
		} else if len(line) > 0 && bytes.Contains(line[:min(len(line), 200)], awsTag) {
			n++
		}
		if n >= 256 || err != nil || br.Buffered() == 0 {
			r.lines.Add(n)
			n = 0
		}
		if err != nil {
			return
		}
	}
}

func (r *receiver) count() int   { return int(r.lines.Load()) }
func (r *receiver) reset()       { r.lines.Store(0) }
func (r *receiver) addr() string { return r.ln.Addr().String() }
func (r *receiver) port() int    { return r.ln.Addr().(*net.TCPAddr).Port }
func (r *receiver) close()       { r.ln.Close() }
