package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
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
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/sqs"
	"github.com/aws/aws-sdk-go-v2/service/sqs/types"
	"github.com/klauspost/compress/gzip"

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

// scenario is one kind of S3 object, N of them, and how the run goes.
type scenario struct {
	Name      string // as given to -scenarios
	Format    string // cloudtrail or vpcflow
	Objects   int
	PerObject int // records or lines per object
	// Baselines runs the reference pipeline and the plain SDK loop on the
	// same objects before the collector (the throughput scenarios).
	Baselines bool
	// DownFor keeps the receiver from listening for this long after the
	// collector started (the backlog scenario): the output is down.
	DownFor time.Duration
	// Distinct, when above 0, generates only this many distinct objects and
	// uploads each several times under other keys (the backlog's 1 GB would
	// otherwise take minutes of generating and compressing).
	Distinct int
}

// run is what one pipeline (reference or collector) took.
type run struct {
	Name    string
	Wall    time.Duration // start of the process to the last event at the receiver with the queue empty
	First   time.Duration // start of the process to the first event at the receiver
	CPU     time.Duration // user + system of the process over Wall
	PeakRSS int64         // bytes (VmHWM: anonymous and file-backed pages)
	// PeakAnon and PeakFile are the highest anonymous (heap, stacks) and
	// file-backed (mapped files, such as the spool's bbolt file) resident
	// sizes seen while polling every 50 ms.
	PeakAnon, PeakFile int64
	// PeakAt is when the polled resident size (anonymous + file) was
	// highest, from the start of the process.
	PeakAt time.Duration
	Up     time.Duration // start of the process to the receiver's start (a backlog; else 0)
}

func (p run) rate(events int) float64 { return float64(events) / p.Wall.Seconds() }

type result struct {
	Scenario    scenario
	Events      int
	ObjectBytes int   // mean gzip size of one object
	RawBytes    int64 // decompressed size of all objects
	// Reference and Plain are zero unless Scenario.Baselines.
	Reference, Plain, Collector run
	// UpDrain is, for a backlog, the time from the receiver's start to the
	// last event at the receiver with the queue empty.
	UpDrain time.Duration
}

func (r result) cpuRatio() float64  { return r.Reference.CPU.Seconds() / r.Collector.CPU.Seconds() }
func (r result) rateRatio() float64 { return r.Collector.rate(r.Events) / r.Reference.rate(r.Events) }

// plainRatio is the collector's drain rate over the plain SDK loop's.
func (r result) plainRatio() float64 { return r.Collector.rate(r.Events) / r.Plain.rate(r.Events) }

// runs are the pipelines that ran, in order.
func (r result) runs() []run {
	if r.Scenario.Baselines {
		return []run{r.Reference, r.Plain, r.Collector}
	}
	return []run{r.Collector}
}

func (r result) summary() string {
	c := r.Collector
	if !r.Scenario.Baselines {
		s := fmt.Sprintf("%s: %d events (%.0f MB decompressed); collector %.2fs %.2f CPU-s peak RSS %d MB (anonymous %d, file %d; highest polled at %.1fs)",
			r.Scenario.Name, r.Events, float64(r.RawBytes)/(1<<20), c.Wall.Seconds(), c.CPU.Seconds(), c.PeakRSS>>20, c.PeakAnon>>20, c.PeakFile>>20, c.PeakAt.Seconds())
		if r.Scenario.DownFor > 0 {
			s += fmt.Sprintf("; receiver down %s, drained %.2fs after it came up (first event %.2fs after it, then %.2fs to the end)",
				r.Scenario.DownFor, r.UpDrain.Seconds(), (c.First - c.Up).Seconds(), (c.Wall - c.First).Seconds())
		}
		return s
	}
	return fmt.Sprintf("%s: %d events; reference %.2fs %.2f CPU-s %d MB; plain SDK loop %.2fs %.2f CPU-s %d MB; collector %.2fs %.2f CPU-s %d MB; CPU ratio %.2f, rate ratio %.2f, rate / plain loop %.2f",
		r.Scenario.Name, r.Events, r.Reference.Wall.Seconds(), r.Reference.CPU.Seconds(), r.Reference.PeakRSS>>20,
		r.Plain.Wall.Seconds(), r.Plain.CPU.Seconds(), r.Plain.PeakRSS>>20,
		c.Wall.Seconds(), c.CPU.Seconds(), c.PeakRSS>>20, r.cpuRatio(), r.rateRatio(), r.plainRatio())
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
	if err := emu.CreateBucket(bucket); err != nil {
		return res, err
	}

	fmt.Printf("%s: uploading %d objects\n", sc.Name, sc.Objects)
	notes, events, size, raw, err := upload(ctx, emu.S3(), sc)
	if err != nil {
		return res, err
	}
	res.Events, res.ObjectBytes, res.RawBytes = events, size/sc.Objects, raw

	rcv, err := newReceiver(set)
	if err != nil {
		return res, err
	}
	defer rcv.close()
	if sc.DownFor == 0 {
		if err := rcv.listen("127.0.0.1:0"); err != nil {
			return res, err
		}
	} else {
		// The output is down: nothing listens on the port the collector is
		// given until DownFor has passed.
		if rcv.port, err = freePort(); err != nil {
			return res, err
		}
	}
	sqsc := emu.SQS()
	self, err := os.Executable()
	if err != nil {
		return res, err
	}
	// Each pipeline gets a queue of its own, with every notification: a
	// long poll the previous one had open when it exited could still take
	// messages on the server.
	freshQueue := func(suffix string) (string, error) {
		url, err := emu.CreateQueue(queueName+suffix, map[string]string{"VisibilityTimeout": "60"})
		if err != nil {
			return "", err
		}
		return url, sendAll(ctx, sqsc, url, notes)
	}

	if sc.Baselines {
		qURL, err := freshQueue("-reference")
		if err != nil {
			return res, err
		}
		refCmd := exec.CommandContext(ctx, self, "-reference", "-endpoint", emu.URL, "-queue", qURL, "-addr", rcv.addr(),
			"-format", sc.Format, "-ca", set.CA, "-cert", set.ClientCert, "-key", set.ClientKey, "-n", strconv.Itoa(sc.Objects))
		refCmd.Stderr = os.Stderr
		fmt.Printf("%s: reference pipeline\n", sc.Name)
		if res.Reference, err = runChild(ctx, "reference", refCmd, rcv, events, sqsc, qURL, nil); err != nil {
			return res, err
		}

		rcv.reset()
		if qURL, err = freshQueue("-plain"); err != nil {
			return res, err
		}
		plainCmd := exec.CommandContext(ctx, self, "-plain", "-endpoint", emu.URL, "-queue", qURL, "-n", strconv.Itoa(sc.Objects))
		plainCmd.Stderr = os.Stderr
		fmt.Printf("%s: plain SDK loop\n", sc.Name)
		// It delivers nothing: it is done when the queue is empty.
		if res.Plain, err = runChild(ctx, "plain SDK loop", plainCmd, rcv, 0, sqsc, qURL, nil); err != nil {
			return res, err
		}
		rcv.reset()
	}

	qURL, err := freshQueue("-collector")
	if err != nil {
		return res, err
	}
	cfgPath, err := writeCollectorConfig(dir, emu.URL, queueName+"-collector", sc.Format, rcv.port, set)
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
	var up func(time.Duration) (time.Time, error)
	if sc.DownFor > 0 {
		up = func(elapsed time.Duration) (time.Time, error) {
			if elapsed < sc.DownFor {
				return time.Time{}, nil
			}
			fmt.Printf("%s: receiver up after %.1fs\n", sc.Name, elapsed.Seconds())
			return time.Now(), rcv.listen(fmt.Sprintf("127.0.0.1:%d", rcv.port))
		}
	}
	res.Collector, err = runChild(ctx, "collector", col, rcv, events, sqsc, qURL, up)
	res.UpDrain = res.Collector.Wall - res.Collector.Up
	if err != nil {
		logData, _ := os.ReadFile(logf.Name())
		return res, fmt.Errorf("%w\ncollector log (tail):\n%s", err, tail(string(logData), 40))
	}
	return res, nil
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// upload puts the scenario's objects into the bucket and returns their
// notifications, the number of events they hold, their total size and their
// total decompressed size.
func upload(ctx context.Context, s3c *s3.Client, sc scenario) (notes []string, events, size int, raw int64, err error) {
	type obj struct {
		key  string
		body []byte
		n    int
		raw  int64
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
				err := putObject(ctx, s3c, o.key, o.body)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("put %s: %w", o.key, err)
				}
				notes = append(notes, samples.S3Notification(bucket, o.key, len(o.body)))
				events += o.n
				size += len(o.body)
				raw += o.raw
				mu.Unlock()
			}
		}()
	}
	var made []obj
	for i := range sc.Objects {
		if sc.Distinct > 0 && i >= sc.Distinct {
			// A copy of an object made before, under a key of its own.
			o := made[i%sc.Distinct]
			ext := ".log.gz"
			if sc.Format == "cloudtrail" {
				ext = ".json.gz"
			}
			o.key = fmt.Sprintf("%s-copy%d%s", strings.TrimSuffix(o.key, ext), i, ext)
			objs <- o
			continue
		}
		var so samples.Object
		if sc.Format == "cloudtrail" {
			so = samples.BusyTrail(i, sc.PerObject, 1)
		} else {
			so = samples.VPCFlow(i, 2, sc.PerObject)
		}
		n, err := gunzipSize(so.Body)
		if err != nil {
			return nil, 0, 0, 0, err
		}
		o := obj{key: so.Key, body: so.Body, n: so.Events, raw: n}
		if sc.Distinct > 0 {
			made = append(made, o)
		}
		objs <- o
	}
	close(objs)
	wg.Wait()
	return notes, events, size, raw, firstErr
}

// putObject uploads body under key, in parts when it is larger than the
// emulator takes in one request (11 MiB).
func putObject(ctx context.Context, s3c *s3.Client, key string, body []byte) error {
	const part = 8 << 20
	if len(body) <= part {
		_, err := s3c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(body)})
		return err
	}
	mp, err := s3c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		return err
	}
	var parts []s3types.CompletedPart
	for i := 0; i < len(body); i += part {
		n := int32(len(parts) + 1)
		out, err := s3c.UploadPart(ctx, &s3.UploadPartInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mp.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(body[i:min(i+part, len(body))])})
		if err != nil {
			return err
		}
		// Unquoted: the SDK escapes the quotes as &#34;, which the
		// emulator does not unescape before comparing.
		parts = append(parts, s3types.CompletedPart{ETag: aws.String(strings.Trim(aws.ToString(out.ETag), `"`)), PartNumber: aws.Int32(n)})
	}
	_, err = s3c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key), UploadId: mp.UploadId,
		MultipartUpload: &s3types.CompletedMultipartUpload{Parts: parts}})
	return err
}

// gunzipSize is the decompressed size of a gzip body.
func gunzipSize(body []byte) (int64, error) {
	zr, err := gzip.NewReader(bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	return io.Copy(io.Discard, zr)
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
// up, when set, is called at every tick with the time since the start until
// it returns a non-zero time: the moment it brought the receiver up.
func runChild(ctx context.Context, name string, cmd *exec.Cmd, rcv *receiver, events int, sqsc *sqs.Client, qURL string,
	up func(elapsed time.Duration) (time.Time, error)) (run, error) {
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
	var peakNow int64
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
			if st.anon+st.file > peakNow {
				peakNow, r.PeakAt = st.anon+st.file, time.Since(start)
			}
			r.PeakAnon, r.PeakFile = max(r.PeakAnon, st.anon), max(r.PeakFile, st.file)
		}
		if up != nil {
			at, err := up(time.Since(start))
			if err != nil {
				_ = cmd.Process.Kill()
				return r, fmt.Errorf("bring the receiver up: %w", err)
			}
			if !at.IsZero() {
				r.Up, up = at.Sub(start), nil
			}
		}
		if r.First == 0 && rcv.count() > 0 {
			r.First = time.Since(start)
		}
		if verbose && time.Since(lastLog) >= time.Second {
			lastLog = time.Now()
			vis, inflight, _ := fauxqs.QueueCounts(ctx, sqsc, qURL)
			fmt.Printf("  %s: %5.1fs %d/%d events at the receiver, queue visible %d in flight %d, RSS anonymous %d MB file %d MB\n",
				name, time.Since(start).Seconds(), rcv.count(), events, vis, inflight, last.anon>>20, last.file>>20)
		}
		if rcv.count() >= events && up == nil {
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
	cpu        time.Duration
	peakRSS    int64
	anon, file int64 // resident now
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
	kb := func(s string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
		return n << 10
	}
	for line := range strings.Lines(string(status)) {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			st.peakRSS = kb(rest)
		} else if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
			st.anon = kb(rest)
		} else if rest, ok := strings.CutPrefix(line, "RssFile:"); ok {
			st.file = kb(rest)
		}
	}
	return st, nil
}

func writeCollectorConfig(dir, endpoint, queue, format string, port int, set *certs.Set) (string, error) {
	service := "audit-events-all:\n        types: [audits_s3]"
	if format == "vpcflow" {
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
	cfg   *tls.Config
	ln    net.Listener
	port  int
	lines atomic.Int64
	wg    sync.WaitGroup
}

// newReceiver returns a receiver that does not listen yet (see listen).
func newReceiver(set *certs.Set) (*receiver, error) {
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
	return &receiver{cfg: &tls.Config{
		Certificates: []tls.Certificate{kp}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	}}, nil
}

// listen starts accepting connections on addr.
func (r *receiver) listen(addr string) error {
	ln, err := tls.Listen("tcp", addr, r.cfg)
	if err != nil {
		return err
	}
	r.ln, r.port = ln, ln.Addr().(*net.TCPAddr).Port
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
	return nil
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
func (r *receiver) addr() string { return fmt.Sprintf("127.0.0.1:%d", r.port) }

func (r *receiver) close() {
	if r.ln != nil {
		r.ln.Close()
	}
}
