package config

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Load reads the file at path (YAML or JSON, by extension), expands ${VAR}
// references, applies defaults and calls Validate. I/O and syntax problems
// (and an unset ${VAR}) return a plain error naming the file. Catalogue
// problems return the best-effort *Config together with an Errors value
// holding every problem found.
func Load(path string) (*Config, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("resolve config path: %w", err)
	}
	root, err := parseFile(abs)
	if err != nil {
		return nil, err
	}
	if err := expandEnv(root, "", os.LookupEnv); err != nil {
		return nil, fmt.Errorf("config %s: %w", abs, err)
	}
	if root.kind != kMap {
		return nil, fmt.Errorf("config %s: line %d: the top level must be a mapping, found a %s", abs, root.line, root.kind)
	}
	c := &Config{Path: abs, Dir: baseDir(abs)}
	d := &decoder{c: c}
	d.config(root)
	c.problems = d.errs
	if errs := c.Validate(); len(errs) > 0 {
		return c, errs
	}
	return c, nil
}

// DefaultPath is where the collector looks when no --config flag is given:
// ./config/$CONFIG_FILE, the layout of Devo's collector containers. ok is
// false when CONFIG_FILE is not set.
func DefaultPath() (path string, ok bool) {
	name, ok := os.LookupEnv("CONFIG_FILE")
	if !ok || name == "" {
		return "", false
	}
	return filepath.Join("config", name), true
}

// baseDir is <base>: the parent of the file's directory when that directory
// is named "config" (Devo's layout), else the file's directory.
func baseDir(file string) string {
	dir := filepath.Dir(file)
	if filepath.Base(dir) == "config" {
		return filepath.Dir(dir)
	}
	return dir
}

// decoder turns the parsed tree into a Config, collecting every problem.
type decoder struct {
	c    *Config
	errs Errors
}

func (d *decoder) add(e *Error) { d.errs = append(d.errs, e) }

func (d *decoder) warn(path, format string, args ...any) {
	d.c.Warnings = append(d.c.Warnings, path+": "+fmt.Sprintf(format, args...))
}

// expect reports a value outside the catalogue's typed rows (row P20).
func (d *decoder) expect(path, expected string) {
	d.add(newError("P20", path, "key_path", path, "expected", expected))
}

// unknown reports every key of m not in known. A key near a known one
// (a likely misspelling, which would otherwise silently leave the known
// key at its default) is error P21 naming the key it resembles; any other
// unknown key is a warning, so keys meant for the reference collector
// still load.
func (d *decoder) unknown(m *value, path string, known ...string) {
	if m == nil || m.kind != kMap {
		return
	}
	for _, k := range m.keys {
		if slices.Contains(known, k) {
			continue
		}
		kp := joinPath(path, k)
		if near, ok := closest(k, known); ok {
			d.add(newError("P21", kp, "key_path", kp).withHint(didYouMean(near)))
			continue
		}
		d.warn(kp, "unknown key, ignored")
	}
}

// Scalar readers. Each returns ok=false after reporting a wrong type; a
// missing or null value returns the default with ok=true.

func (d *decoder) boolean(m *value, key, path string, def bool) bool {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	if v.kind != kBool {
		d.expect(joinPath(path, key), "a boolean (true or false)")
		return def
	}
	return v.b
}

func (d *decoder) integer(m *value, key, path string, def, min, max int) int {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	if v.kind != kInt || v.i < int64(min) || v.i > int64(max) {
		d.expect(joinPath(path, key), rangeText(min, max))
		return def
	}
	return int(v.i)
}

func rangeText(min, max int) string {
	switch {
	case max == math.MaxInt32 && min == 0:
		return "an integer of 0 or more"
	case max == math.MaxInt32:
		return fmt.Sprintf("an integer of %d or more", min)
	}
	return fmt.Sprintf("an integer from %d to %d", min, max)
}

func (d *decoder) number(m *value, key, path string, def float64) float64 {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	switch v.kind {
	case kInt:
		return float64(v.i)
	case kFloat:
		return v.f
	}
	d.expect(joinPath(path, key), "a number")
	return def
}

func (d *decoder) str(m *value, key, path, def string) string {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	if v.kind != kString {
		d.expect(joinPath(path, key), "a string")
		return def
	}
	return v.s
}

// duration reads an extension duration: a Go duration string ("2s") or a
// number of seconds.
func (d *decoder) duration(m *value, key, path string, def time.Duration) time.Duration {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	switch v.kind {
	case kInt:
		if v.i > 0 {
			return time.Duration(v.i) * time.Second
		}
	case kString:
		if dur, err := time.ParseDuration(v.s); err == nil && dur > 0 {
			return dur
		}
	}
	d.expect(joinPath(path, key), `a positive duration such as "2s" or "1h"`)
	return def
}

func seconds(n int) time.Duration { return time.Duration(n) * time.Second }

// config decodes the top level.
func (d *decoder) config(root *value) {
	d.unknown(root, "", "globals", "global_overrides", "outputs", "inputs")
	globals, _ := root.get("globals")
	if over, ok := root.get("global_overrides"); ok && over.kind != kNull {
		if over.kind != kMap {
			d.expect("global_overrides", "a mapping")
		} else {
			globals = mergeMaps(globals, over)
		}
	}
	d.globals(globals)
	d.outputs(root)
	d.inputs(root)
}

// mergeMaps returns base with over merged in, recursively for mappings.
func mergeMaps(base, over *value) *value {
	if base == nil || base.kind != kMap {
		return over
	}
	out := &value{kind: kMap, m: map[string]*value{}, line: base.line}
	for _, k := range base.keys {
		out.set(k, base.m[k])
	}
	for _, k := range over.keys {
		if b, ok := out.m[k]; ok && b.kind == kMap && over.m[k].kind == kMap {
			out.set(k, mergeMaps(b, over.m[k]))
		} else {
			out.set(k, over.m[k])
		}
	}
	return out
}

var collectorName = regexp.MustCompile(`^[0-9a-zA-Z_-]+$`)

func (d *decoder) globals(g *value) {
	const p = "globals"
	if g != nil && g.kind != kMap && g.kind != kNull {
		d.expect(p, "a mapping")
		g = nil
	}
	d.unknown(g, p, "id", "name", "persistence", "debug", "debug_status", "log_format",
		"queue_max_size_in_messages", "queue_max_size_in_mb", "queue_max_elapsed_time_in_sec",
		"queue_wrap_max_size_in_messages", "queue_generate_metrics", "sender_stats_period_in_sec",
		"devo_sender_threshold_for_using_gzip_in_transport_layer", "devo_sender_compression_level",
		"devo_sender_compression_buffer_in_bytes", "generate_collector_details", "multiprocessing",
		"internal_global_messages", "metrics_listen", "in_flight_max_size_in_mb", "memory_limit_in_mb",
		"coordination")
	gl := &d.c.Globals
	gl.ID = d.idValue(g, "id", p, "not_used")
	name := d.str(g, "name", p, "aws_collector")
	name = strings.NewReplacer(".", "_", "#", "_", " ", "_").Replace(name)
	if !collectorName.MatchString(name) {
		d.expect(p+".name", "made of letters, digits, '-' and '_' only")
	}
	gl.Name = name

	dir := "state"
	if pers, ok := g.get("persistence"); ok && pers.kind != kNull {
		pp := p + ".persistence"
		if pers.kind != kMap {
			d.expect(pp, "a mapping")
		} else {
			d.unknown(pers, pp, "type", "config")
			if t := d.str(pers, "type", pp, "filesystem"); t != "filesystem" {
				d.expect(pp+".type", `"filesystem"`)
			}
			if pc, ok := pers.get("config"); ok && pc.kind == kMap {
				d.unknown(pc, pp+".config", "directory_name", "dir")
				if _, has := pc.get("directory_name"); has {
					dir = d.str(pc, "directory_name", pp+".config", dir)
				} else {
					dir = d.str(pc, "dir", pp+".config", dir)
				}
				if dir == "" {
					d.expect(pp+".config.directory_name", "a non-empty path")
				}
			} else if ok && pc.kind != kNull {
				d.expect(pp+".config", "a mapping")
			}
		}
	}
	gl.PersistenceDir = d.resolve(dir)

	gl.Debug = d.boolean(g, "debug", p, false)
	if d.boolean(g, "debug_status", p, false) {
		gl.Debug = true
	}
	gl.LogFormat = d.str(g, "log_format", p, "text")
	if gl.LogFormat != "text" && gl.LogFormat != "json" {
		d.expect(p+".log_format", `"text" or "json"`)
		gl.LogFormat = "text"
	}
	gl.QueueMaxMessages = d.integer(g, "queue_max_size_in_messages", p, 10000, 1, math.MaxInt32)
	gl.QueueMaxBytes = int64(d.integer(g, "queue_max_size_in_mb", p, 256, 1, math.MaxInt32)) << 20
	gl.InFlightMaxBytes = int64(d.integer(g, "in_flight_max_size_in_mb", p, 96, 0, math.MaxInt32)) << 20
	gl.MemoryLimitBytes = int64(d.integer(g, "memory_limit_in_mb", p, 0, 0, math.MaxInt32)) << 20
	gl.QueueMaxElapsed = seconds(d.integer(g, "queue_max_elapsed_time_in_sec", p, 60, 1, math.MaxInt32))
	gl.QueueWrapMaxMessages = d.integer(g, "queue_wrap_max_size_in_messages", p, 100, 1, math.MaxInt32)
	gl.QueueGenerateMetrics = d.boolean(g, "queue_generate_metrics", p, false)
	gl.SenderStatsPeriod = seconds(d.integer(g, "sender_stats_period_in_sec", p, 300, 1, math.MaxInt32))
	gl.GzipThreshold = d.number(g, "devo_sender_threshold_for_using_gzip_in_transport_layer", p, 1.1)
	gl.CompressionLevel = d.integer(g, "devo_sender_compression_level", p, 6, 0, 9)
	gl.CompressionBuffer = d.integer(g, "devo_sender_compression_buffer_in_bytes", p, 51200, 1, math.MaxInt32)
	gl.GenerateCollectorDetails = d.boolean(g, "generate_collector_details", p, false)
	d.boolean(g, "multiprocessing", p, false) // accepted and ignored: one process
	gl.InternalGlobalMessages = d.boolean(g, "internal_global_messages", p, false)
	gl.MetricsListen = d.str(g, "metrics_listen", p, "")
	gl.Coordination = d.coordination(g, p)
}

// Lease durations outside these bounds are refused: below 3 s a renewal
// (every third) races DynamoDB's own latency and retries; above an hour a
// dead collector's streams would stop for hours.
const (
	minLeaseSeconds = 3
	maxLeaseSeconds = 3600
)

// coordination reads globals.coordination; nil when absent.
func (d *decoder) coordination(g *value, path string) *Coordination {
	v, ok := g.get("coordination")
	if !ok || v.kind == kNull {
		return nil
	}
	p := path + ".coordination"
	if v.kind != kMap {
		d.expect(p, "a mapping")
		return nil
	}
	d.unknown(v, p, "type", "config")
	c := &Coordination{LeaseDuration: DefaultLeaseDuration}
	tv, ok := v.get("type")
	switch {
	case !ok || tv.kind == kNull || (tv.kind == kString && tv.s == ""):
		d.add(newError("P26", p+".type", "key", "type"))
	case tv.kind != kString:
		d.expect(p+".type", `the string "dynamodb"`)
	case tv.s != CoordinationDynamoDB:
		d.add(newError("P25", p+".type", "value", tv.s, "allowed", quoteList([]string{CoordinationDynamoDB})))
	default:
		c.Type = tv.s
	}
	cp := p + ".config"
	cv, ok := v.get("config")
	if !ok || cv.kind == kNull {
		d.add(newError("P26", cp, "key", "config"))
		return c
	}
	if cv.kind != kMap {
		d.expect(cp, "a mapping")
		return c
	}
	d.unknown(cv, cp, "table", "region", "endpoint_url", "lease_duration_in_sec")
	c.Table = d.str(cv, "table", cp, "")
	if tv, ok := cv.get("table"); ok && tv.kind == kString && tv.s != "" && !tableName.MatchString(tv.s) {
		d.expect(cp+".table", "a DynamoDB table name: 3 to 255 letters, digits, '_', '-' or '.'")
	} else if !ok || tv.kind == kNull || (tv.kind == kString && tv.s == "") {
		d.add(newError("P26", cp+".table", "key", "config.table"))
	}
	c.Region = d.str(cv, "region", cp, "")
	if rv, ok := cv.get("region"); !ok || rv.kind == kNull || (rv.kind == kString && rv.s == "") {
		d.add(newError("P26", cp+".region", "key", "config.region"))
	} else if rv.kind == kString && !regionName.MatchString(rv.s) {
		d.expect(cp+".region", "an AWS region name such as us-east-1")
	}
	c.EndpointURL = d.url(cv, "endpoint_url", cp)
	c.LeaseDuration = seconds(d.integer(cv, "lease_duration_in_sec", cp, int(DefaultLeaseDuration/time.Second), minLeaseSeconds, maxLeaseSeconds))
	return c
}

// tableName is DynamoDB's table naming rule.
var tableName = regexp.MustCompile(`^[a-zA-Z0-9_.-]{3,255}$`)

// idValue reads an id given as a string or an integer.
func (d *decoder) idValue(m *value, key, path, def string) string {
	v, ok := m.get(key)
	if !ok || v.kind == kNull {
		return def
	}
	switch v.kind {
	case kString:
		if v.s != "" {
			return v.s
		}
	case kInt:
		return strconv.FormatInt(v.i, 10)
	}
	d.expect(joinPath(path, key), "a non-empty string or integer")
	return def
}

// resolve makes p absolute against <base>.
func (d *decoder) resolve(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.c.Dir, p)
}

// resolveCert makes a certificate path absolute against <base>/certs.
func (d *decoder) resolveCert(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(d.c.Dir, "certs", p)
}

var outputTypes = []string{OutputDevo, OutputRelay, OutputInHouseRelay, OutputSyslog, OutputSidecar, OutputConsole, OutputStdout}

var networkKeys = []string{"address", "url", "location", "port", "type", "chain", "chain_loc", "cert", "cert_loc", "key", "key_loc",
	"concurrent_connections", "connecting_retries", "connecting_initial_wait_in_seconds", "connecting_max_wait_in_seconds",
	"sending_timeout", "sending_retries", "sending_initial_wait_in_seconds", "sending_max_wait_in_seconds",
	"sending_wait_between_retries_in_seconds", "check_hostname", "hostname", "handshake_probe_timeout", "ack_settle",
	"inactivity_timeout", "max_connection_age", "spool_max_size_in_mb", "write_ahead"}

func (d *decoder) outputs(root *value) {
	outs, ok := root.get("outputs")
	if ok && outs.kind != kNull && outs.kind != kMap {
		d.expect("outputs", "a mapping of output name to output")
	}
	if !ok || outs.kind != kMap || len(outs.keys) == 0 {
		d.c.Outputs = []*Output{consoleOutput(OutputConsole, OutputConsole)}
		return
	}
	names := slices.Clone(outs.keys)
	slices.Sort(names)
	for _, name := range names {
		if o := d.output(name, outs.m[name]); o != nil {
			d.c.Outputs = append(d.c.Outputs, o)
		}
	}
}

func consoleOutput(name, typ string) *Output {
	return &Output{Name: name, Type: typ, Destination: "standard", Format: "devo_line"}
}

func (d *decoder) output(name string, v *value) *Output {
	p := "outputs." + name
	if v.kind != kMap {
		d.expect(p, "a mapping with type and config")
		return nil
	}
	d.unknown(v, p, "type", "config")
	tv, _ := v.get("type")
	typ := ""
	if tv != nil && tv.kind == kString {
		typ = tv.s
	} else if tv != nil && tv.kind != kNull {
		typ = tv.s
	}
	if !slices.Contains(outputTypes, typ) {
		hint := "the output types are " + strings.Join(outputTypes, ", ")
		if near, ok := closest(typ, outputTypes); ok {
			hint = didYouMean(near)
		}
		d.add(newError("P13", p+".type", "type", typ).withHint(hint))
		return nil
	}
	cfg, _ := v.get("config")
	cp := p + ".config"
	if cfg != nil && cfg.kind != kMap && cfg.kind != kNull {
		d.expect(cp, "a mapping")
		cfg = nil
	}
	if typ == OutputConsole || typ == OutputStdout {
		d.unknown(cfg, cp, "destination", "format", "hostname")
		o := consoleOutput(name, typ)
		// hostname is the HOST field of the Devo lines printed, as on a
		// network output; empty means the machine's host name.
		o.Hostname = d.str(cfg, "hostname", cp, "")
		o.Destination = d.str(cfg, "destination", cp, "standard")
		if !slices.Contains([]string{"standard", "console", "stdout"}, o.Destination) {
			d.add(newError("P19", cp+".destination", "name", name, "key", "destination", "value", o.Destination, "allowed", quoteList([]string{"standard", "console", "stdout"})))
		}
		o.Format = d.str(cfg, "format", cp, "devo_line")
		if o.Format != "devo_line" && o.Format != "json" {
			d.add(newError("P19", cp+".format", "name", name, "key", "format", "value", o.Format, "allowed", quoteList([]string{"devo_line", "json"})))
		}
		return o
	}

	d.unknown(cfg, cp, networkKeys...)
	o := &Output{Name: name, Type: typ}
	o.Address = d.alias(cfg, cp, "address", "url", "location")
	if o.Address == "" {
		d.add(newError("P14", cp+".address", "name", name, "key", "address"))
	}
	if pv, ok := cfg.get("port"); !ok || pv.empty() {
		d.add(newError("P14", cp+".port", "name", name, "key", "port"))
	} else if pv.kind != kInt || pv.i < 1 || pv.i > 65535 {
		d.add(newError("P19", cp+".port", "name", name, "key", "port", "value", pv.s, "allowed", "an integer from 1 to 65535"))
	} else {
		o.Port = int(pv.i)
	}
	o.Transport = "SSL"
	if typ == OutputInHouseRelay || typ == OutputSyslog || typ == OutputSidecar {
		o.Transport = "TCP"
	}
	if tv, ok := cfg.get("type"); ok && tv.kind != kNull {
		t := strings.ToUpper(tv.s)
		if tv.kind != kString || t != "SSL" && t != "TCP" {
			d.add(newError("P19", cp+".type", "name", name, "key", "type", "value", tv.s, "allowed", quoteList([]string{"SSL", "TCP"})))
			o.Transport = "" // unknown: which files are needed cannot be said
		} else {
			o.Transport = t
		}
	}
	chain := d.alias(cfg, cp, "chain", "chain_loc")
	cert := d.alias(cfg, cp, "cert", "cert_loc")
	key := d.alias(cfg, cp, "key", "key_loc")
	o.Chain, o.Cert, o.Key = d.resolveCert(chain), d.resolveCert(cert), d.resolveCert(key)
	switch {
	case typ == OutputDevo:
		if o.Transport != "SSL" || chain == "" || cert == "" || key == "" {
			d.add(newError("P16", cp).withHint(devoNeeds(o.Transport, chain, cert, key)))
		}
	case o.Transport == "":
	case o.Transport == "SSL" && typ == OutputRelay:
		for _, f := range [][2]string{{"chain", chain}, {"cert", cert}, {"key", key}} {
			if f[1] == "" {
				d.add(newError("P14", cp+"."+f[0], "name", name, "key", f[0]))
			}
		}
	case o.Transport == "SSL":
		// Syslog family: the chain verifies the server; a client
		// certificate is optional but needs both halves.
		if chain == "" {
			d.add(newError("P14", cp+".chain", "name", name, "key", "chain"))
		}
		if cert != "" && key == "" {
			d.add(newError("P14", cp+".key", "name", name, "key", "key"))
		}
		if key != "" && cert == "" {
			d.add(newError("P14", cp+".cert", "name", name, "key", "cert"))
		}
	}

	o.ConcurrentConnections = d.integer(cfg, "concurrent_connections", cp, 1, 1, 64)
	o.ConnectingRetries = d.integer(cfg, "connecting_retries", cp, 5, 0, math.MaxInt32)
	o.ConnectingInitialWait = seconds(d.integer(cfg, "connecting_initial_wait_in_seconds", cp, 2, 0, math.MaxInt32))
	o.ConnectingMaxWait = seconds(d.integer(cfg, "connecting_max_wait_in_seconds", cp, 60, 1, math.MaxInt32))
	o.SendingTimeout = seconds(d.integer(cfg, "sending_timeout", cp, 5, 1, math.MaxInt32))
	o.SendingRetries = d.integer(cfg, "sending_retries", cp, 5, 0, math.MaxInt32)
	o.SendingInitialWait = seconds(d.integer(cfg, "sending_initial_wait_in_seconds", cp, 2, 0, math.MaxInt32))
	o.SendingMaxWait = seconds(d.integer(cfg, "sending_max_wait_in_seconds", cp, 60, 1, math.MaxInt32))
	d.integer(cfg, "sending_wait_between_retries_in_seconds", cp, 1, 0, math.MaxInt32) // accepted; no effect
	o.CheckHostname = d.boolean(cfg, "check_hostname", cp, false)
	host, _ := os.Hostname()
	o.Hostname = d.str(cfg, "hostname", cp, host)
	o.HandshakeProbeTimeout = d.duration(cfg, "handshake_probe_timeout", cp, 2*time.Second)
	o.AckSettle = d.duration(cfg, "ack_settle", cp, 100*time.Millisecond)
	o.InactivityTimeout = d.duration(cfg, "inactivity_timeout", cp, 30*time.Second)
	o.MaxConnectionAge = d.duration(cfg, "max_connection_age", cp, time.Hour)
	o.SpoolMaxBytes = int64(d.integer(cfg, "spool_max_size_in_mb", cp, 1024, 0, math.MaxInt32)) << 20
	o.WriteAhead = d.boolean(cfg, "write_ahead", cp, true)
	return o
}

// alias reads the first of keys that is present, warning when several are.
func (d *decoder) alias(m *value, path string, keys ...string) string {
	found := ""
	for _, k := range keys {
		if v, ok := m.get(k); ok && v.kind != kNull {
			if found != "" {
				d.warn(joinPath(path, k), "%q is already set, this alias is ignored", found)
				continue
			}
			found = k
		}
	}
	if found == "" {
		return ""
	}
	return d.str(m, found, path, "")
}

// devoNeeds says what a devo_platform output lacks to run with TLS.
func devoNeeds(transport, chain, cert, key string) string {
	var lacks, todo []string
	for _, f := range [][2]string{{"chain", chain}, {"cert", cert}, {"key", key}} {
		if f[1] == "" {
			lacks = append(lacks, f[0])
		}
	}
	if transport != "SSL" {
		todo = append(todo, "set type: SSL (or remove type)")
	}
	if len(lacks) > 0 {
		todo = append(todo, "add "+strings.Join(lacks, ", "))
	}
	return "a devo_platform output needs TLS with the chain, cert and key files of your Devo domain: " + strings.Join(todo, "; ")
}

// describe renders a value for a message: a string quoted, else its type
// and text ("the integer 5", "a list").
func describe(v *value) string {
	switch v.kind {
	case kString:
		return fmt.Sprintf("%q", v.s)
	case kMap, kList:
		return "a " + v.kind.String()
	case kNull:
		return "nothing"
	}
	return "the " + v.kind.String() + " " + v.s
}
