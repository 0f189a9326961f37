package config

import (
	"fmt"
	"maps"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

const inputPath = "inputs.aws"

// APIs is the set of AWS APIs an endpoint override may name.
var APIs = []string{"sqs", "s3", "sts", "cloudtrail", "cloudwatch", "logs", "guardduty"}

// regionName accepts AWS region codes (us-east-1, eu-central-2, ap-southeast-7,
// us-gov-west-1, cn-north-1, us-iso-east-1, us-isob-east-1.
var regionName = regexp.MustCompile(`^[a-z]{2}(-gov|-iso[a-z]?)?-(east|west|north|south|central|northeast|southeast|northwest|southwest)-\d{1,2}$`)

var environmentName = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// roleARN is arn:<partition>:iam::<12 digits>:role/<path/name>.
var roleARN = regexp.MustCompile(`^arn:aws(-[a-z]+)*:iam::\d{12}:role/[\w+=,.@/-]+$`)

func (d *decoder) inputs(root *value) {
	ins, ok := root.get("inputs")
	if !ok || ins.kind == kNull || ins.kind == kMap && len(ins.keys) == 0 {
		d.add(newError("A30", inputPath, "input_config_key_path", inputPath))
		return
	}
	if ins.kind != kMap {
		d.add(newError("A31", "inputs", "input_config_key_path", "inputs"))
		return
	}
	for _, k := range ins.keys {
		if k != "aws" {
			d.warn("inputs."+k, "unknown input, ignored (this collector has one input, aws)")
		}
	}
	aws, ok := ins.get("aws")
	if !ok || aws.empty() {
		d.add(newError("A30", inputPath, "input_config_key_path", inputPath))
		return
	}
	if aws.kind != kMap {
		d.add(newError("A31", inputPath, "input_config_key_path", inputPath))
		return
	}
	d.c.Inputs = append(d.c.Inputs, d.input(aws))
}

func (d *decoder) input(v *value) *Input {
	p := inputPath
	d.unknown(v, p, "id", "enabled", "requests_per_second", "credentials", "regions", "environment",
		"services", "endpoint_url", "endpoints", "s3_force_path_style")
	in := &Input{Name: "aws"}
	if _, ok := v.get("id"); !ok {
		d.expect(p+".id", "set (a string or an integer)")
	}
	in.ID = d.idValue(v, "id", p, "")
	in.Enabled = d.boolean(v, "enabled", p, true)
	in.Credentials = d.credentials(v)
	in.Regions = d.regions(v, p, true)
	in.Environment = d.str(v, "environment", p, "")
	if in.Environment != "" && !environmentName.MatchString(in.Environment) {
		d.expect(p+".environment", "made of letters, digits, '-' and '_' only")
	}
	in.EndpointURL = d.url(v, "endpoint_url", p)
	in.Endpoints = d.endpoints(v, p)
	in.S3ForcePathStyle = d.boolean(v, "s3_force_path_style", p, in.EndpointURL != "" || in.Endpoints["s3"] != "")

	// Services first: whether requests_per_second is mandatory depends on them.
	in.Services = d.services(v, in)
	in.RequestsPerSecond = 5
	if rv, ok := v.get("requests_per_second"); ok && rv.kind != kNull {
		switch {
		case rv.kind == kInt && rv.i > 0:
			in.RequestsPerSecond = float64(rv.i)
		case rv.kind == kFloat && rv.f > 0 && !math.IsInf(rv.f, 0):
			in.RequestsPerSecond = rv.f
		default:
			d.add(newError("P6", p+".requests_per_second", "input_config_key_path", p))
		}
	} else if slices.ContainsFunc(in.Services, func(s *Service) bool { return s.Kind == Logs }) {
		d.add(newError("D1", p+".requests_per_second"))
	}
	return in
}

var credKeys = []string{"access_key", "access_secret", "base_assume_role", "target_assume_role", "assume_role_external_id"}

// credentials maps the keys present to exactly one mode of spec §6, or P1.
func (d *decoder) credentials(in *value) Credentials {
	p := inputPath + ".credentials"
	var c Credentials
	v, ok := in.get("credentials")
	if !ok {
		d.expect(p, "set: a mapping, empty ({}) for the default AWS credential chain")
		return c
	}
	if v.kind == kNull {
		return c
	}
	if v.kind != kMap {
		d.expect(p, "a mapping")
		return c
	}
	d.unknown(v, p, credKeys...)
	var present []string
	vals := map[string]string{}
	for _, k := range credKeys {
		cv, ok := v.get(k)
		if !ok {
			continue
		}
		present = append(present, k)
		if cv.kind != kString || cv.s == "" {
			d.add(newError("P2", p+"."+k, "input_config_key_path", inputPath, "key", k))
			continue
		}
		vals[k] = cv.s
	}
	for _, k := range []string{"base_assume_role", "target_assume_role"} {
		if s := vals[k]; s != "" && !roleARN.MatchString(s) {
			d.add(newError("P3", p+"."+k, "input_config_key_path", inputPath, "key", k))
		}
	}
	c.AccessKey, c.AccessSecret = vals["access_key"], vals["access_secret"]
	c.BaseAssumeRole, c.TargetAssumeRole = vals["base_assume_role"], vals["target_assume_role"]
	c.ExternalID = vals["assume_role_external_id"]

	modeKeys := slices.DeleteFunc(slices.Clone(present), func(k string) bool { return k == "assume_role_external_id" })
	hasExt := slices.Contains(present, "assume_role_external_id")
	switch strings.Join(modeKeys, ",") {
	case "":
		if !hasExt {
			c.Mode = CredDefaultChain
			return c
		}
	case "access_key,access_secret":
		if !hasExt {
			c.Mode = CredKeys
			return c
		}
	case "access_key,access_secret,base_assume_role":
		c.Mode = CredKeysRole
		return c
	case "base_assume_role,target_assume_role":
		c.Mode = CredCrossAccount
		return c
	}
	d.add(newError("P1", p, "input_config_key_path", inputPath, "keys", quoteList(present)))
	return c
}

// regions reads a region list at path.regions. required: P4 when missing.
func (d *decoder) regions(m *value, path string, required bool) []string {
	rp := path + ".regions"
	v, ok := m.get("regions")
	if !ok || v.kind == kNull {
		if required {
			d.add(newError("P4", rp, "input_config_key_path", path))
		}
		return nil
	}
	if v.kind != kList {
		d.expect(rp, "a list of region names")
		return nil
	}
	if len(v.list) == 0 {
		d.add(newError("P4", rp, "input_config_key_path", path))
		return nil
	}
	var out []string
	for _, r := range v.list {
		if r.kind != kString || !regionName.MatchString(r.s) {
			d.add(newError("P5", rp, "input_config_key_path", path, "region", r.s))
			continue
		}
		if !slices.Contains(out, r.s) {
			out = append(out, r.s)
		}
	}
	return out
}

func (d *decoder) url(m *value, key, path string) string {
	s := d.str(m, key, path, "")
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.expect(joinPath(path, key), "an http:// or https:// URL")
		return ""
	}
	return s
}

func (d *decoder) endpoints(m *value, path string) map[string]string {
	ep := path + ".endpoints"
	v, ok := m.get("endpoints")
	if !ok || v.kind == kNull {
		return nil
	}
	if v.kind != kMap {
		d.expect(ep, "a mapping of AWS API to URL")
		return nil
	}
	d.unknown(v, ep, APIs...)
	out := map[string]string{}
	for _, api := range APIs {
		if u := d.url(v, api, ep); u != "" {
			out[api] = u
		}
	}
	return out
}

// sectionRows are the catalogue rows one section uses for the user's
// service settings. Where the same mistake has a row in several sections,
// the section of the service decides.
type sectionRows struct {
	svcMissing, svcNotMap, tagType               string
	queueMissing, queueNotString, queueNotScalar string
	autoType, startType, startFormat             string
}

var sections = map[string]sectionRows{
	"A": {"A32", "A33", "A34", "A35", "A36", "A37", "A38", "", ""},
	"B": {"B18", "B19", "B20", "B21", "B22", "B23", "B24", "B25", "B26"},
	"C": {"C26", "C27", "C28", "", "", "", "C34", "C31", "C32"},
	"D": {"D13", "D14", "D15", "", "", "", "", "D19", "D20"},
	"E": {"E9", "E10", "E11", "", "", "", "", "E15", "E16"},
}

// predefined maps the predefined service keys to their kind.
var predefined = map[string]ServiceKind{
	"service-events-all": EventBridge, "sqs-cloudwatch-consumer": SecurityHub,
	"audit-events-all": CloudTrailAPI, "metrics-all": Metrics, "ec2": Metrics,
	"non-cloudwatch-logs": S3Logs, "aws-guardduty": GuardDuty, "cisco-umbrella": Umbrella,
}

// PredefinedServices returns the predefined service keys, sorted.
func PredefinedServices() []string { return slices.Sorted(maps.Keys(predefined)) }

func sectionOf(k ServiceKind) string {
	switch k {
	case EventBridge, SecurityHub:
		return "A"
	case CloudTrailS3, S3Logs, Umbrella:
		return "B"
	case CloudTrailAPI, GuardDuty:
		return "C"
	case Logs:
		return "D"
	}
	return "E"
}

func (d *decoder) services(in *value, input *Input) []*Service {
	sp := inputPath + ".services"
	v, ok := in.get("services")
	if !ok || v.empty() {
		d.add(newError("A32", sp, "service_config_key_path", sp))
		return nil
	}
	if v.kind != kMap {
		d.add(newError("A33", sp, "service_config_key_path", sp))
		return nil
	}
	names := slices.Clone(v.keys)
	slices.Sort(names)
	var out []*Service
	for _, name := range names {
		if s := d.service(name, v.m[name], input); s != nil {
			out = append(out, s)
		}
	}
	return out
}

// service decodes one service block.
func (d *decoder) service(name string, v *value, in *Input) *Service {
	p := inputPath + ".services." + name
	pathArg := []string{"service_config_key_path", p}
	s := &Service{Name: name, bad: map[string]bool{}}
	kind, isPredefined := predefined[name]
	s.Custom = !isPredefined
	if s.Custom {
		kind = Logs
	}
	// The kind of audit-events-all and custom keys depends on types.
	if v.kind == kMap {
		kind = d.kindFromTypes(s, kind, v, p)
	}
	s.Kind = kind
	rows := sections[sectionOf(kind)]
	if v.kind == kNull {
		d.add(newError(rows.svcMissing, p, pathArg...))
		return nil
	}
	if v.kind != kMap {
		d.add(newError(rows.svcNotMap, p, pathArg...))
		return nil
	}

	def := builtinFor(definitionName(s))
	known := []string{"tag", "types", "regions", "endpoints", "request_period_in_seconds"}
	sqsKeys := []string{def.queueKey, "sqs_max_messages", "sqs_wait_time_seconds", "sqs_visibility_timeout", "max_receive_count"}
	switch kind {
	case EventBridge, SecurityHub:
		known = append(known, sqsKeys...)
		known = append(known, def.autoKey)
	case CloudTrailAPI, CloudTrailS3:
		known = append(known, sqsKeys...)
		known = append(known, def.autoKey, "start_time", "gap_until_now_in_minutes", "time_slot_in_hours", "sources", "drop_event_names")
	case S3Logs, Umbrella:
		known = append(known, sqsKeys...)
		known = append(known, def.autoKey, "start_time", "event_type_file_regex_patterns")
	case Metrics:
		known = append(known, "metric_namespaces", "metric_statistics", "start_time")
	case Logs:
		known = append(known, "log_group", "start_time", "use_first_optimized_retrieval")
	case GuardDuty:
		known = append(known, "start_time")
	}
	d.unknown(v, p, known...)

	s.DefaultEventType = def.defaultEventType
	s.EventTypeField = def.field
	s.EventTypeRegex = def.re

	// tag
	if tv, ok := v.get("tag"); ok && tv.kind != kNull {
		if tv.kind != kString {
			d.add(newError(rows.tagType, p+".tag", pathArg...))
			s.bad["tag"] = true
		} else if len(tag.Unknown(tv.s)) > 0 {
			d.add(newError("P18", p+".tag", pathArg...))
			s.bad["tag"] = true
		} else {
			s.Tag = tv.s
		}
	}
	s.TagTemplate = templateFor(s.Tag, def.tagBase, in.Environment)
	if kind == S3Logs {
		s.TypeTagTemplates = map[string]string{}
		for _, t := range s.Types {
			s.TypeTagTemplates[t] = templateFor(s.Tag, builtinFor("non-cloudwatch-logs."+t).tagBase, in.Environment)
		}
		if len(s.Types) > 0 {
			s.TagTemplate = s.TypeTagTemplates[s.Types[0]]
		}
	}

	// auto_event_type
	s.AutoEventType = def.autoDefault
	if av, ok := v.get(def.autoKey); ok && av.kind != kNull {
		auto, valid := false, true
		switch {
		case av.kind == kBool:
			auto = av.b
		case av.kind == kString && (av.s == "true" || av.s == "false"):
			auto = av.s == "true"
		default:
			valid = false
		}
		if !valid {
			d.add(newError(rows.autoType, p+"."+def.autoKey, append(pathArg, "enable_auto_event_type_config_key", def.autoKey)...))
		} else {
			s.AutoEventType = auto
		}
		if auto && (kind == SecurityHub || kind == Umbrella) {
			d.warn(p+"."+def.autoKey, "has no effect on this service")
		}
	}
	switch kind {
	case SecurityHub:
		s.AutoEventType = false
	case Umbrella:
		s.AutoEventType = true // always derived from the S3 key
	}

	// SQS
	if kind.SQS() {
		d.queue(s, v, p, def.queueKey, rows)
		s.SQSMaxMessages = d.integer(v, "sqs_max_messages", p, 10, 1, 10)
		s.SQSWaitTime = seconds(d.integer(v, "sqs_wait_time_seconds", p, 20, 0, 20))
		// 0 (absent): the queue's own VisibilityTimeout attribute applies.
		s.SQSVisibilityTimeout = seconds(d.integer(v, "sqs_visibility_timeout", p, 0, 1, 43200))
		s.MaxReceiveCount = d.integer(v, "max_receive_count", p, 5, 1, math.MaxInt32)
	} else if kind == CloudTrailAPI {
		if _, ok := v.get(def.queueKey); ok {
			d.warn(p+"."+def.queueKey, "ignored with types [audits_api]")
		}
	}

	// start_time
	if rows.startType != "" {
		if sv, ok := v.get("start_time"); ok && sv.kind != kNull {
			switch {
			case sv.kind != kString:
				d.add(newError(rows.startType, p+".start_time", pathArg...))
			case def.startRe != nil && !def.startRe.MatchString(sv.s):
				d.add(newError(rows.startFormat, p+".start_time", append(pathArg, "start_time_regex", def.startRe.String())...))
			default:
				s.StartTime = sv.s
			}
		}
	}

	switch kind {
	case CloudTrailAPI, CloudTrailS3:
		d.cloudtrail(s, v, p, def)
	case S3Logs, Umbrella:
		s.EventTypePatterns = def.patterns
		if kind == S3Logs {
			// Both types share the built-in map; it lives in each type's definition.
			s.EventTypePatterns = builtinFor(defFlowLogs).patterns
		}
		d.patterns(s, v, p)
	case Metrics:
		d.metrics(s, v, p, def)
	case Logs:
		d.logs(s, v, p)
	}

	// request_period_in_seconds
	s.RequestPeriod = 60 * time.Second
	if rv, ok := v.get("request_period_in_seconds"); ok && rv.kind != kNull {
		switch {
		case kind == Metrics:
			if rv.kind != kInt || !validMetricPeriod(rv.i) {
				d.add(newError("E14", p+".request_period_in_seconds"))
			} else {
				s.RequestPeriod = seconds(int(rv.i))
			}
		case rv.kind != kInt || rv.i < 1:
			d.expect(p+".request_period_in_seconds", "an integer of 1 or more")
		default:
			s.RequestPeriod = seconds(int(rv.i))
		}
	}

	// regions and endpoints
	s.Regions = in.Regions
	if _, ok := v.get("regions"); ok {
		if r := d.regions(v, p, false); r != nil {
			s.Regions = r
		}
	}
	own := d.endpoints(v, p)
	s.Endpoints = map[string]string{}
	for _, api := range APIs {
		switch {
		case own[api] != "":
			s.Endpoints[api] = own[api]
		case in.Endpoints[api] != "":
			s.Endpoints[api] = in.Endpoints[api]
		case in.EndpointURL != "":
			s.Endpoints[api] = in.EndpointURL
		}
	}
	return s
}

// templateFor is the effective tag template: the override as written, or
// the built-in base with the environment level when one is configured.
func templateFor(override, base, environment string) string {
	if override != "" {
		return override
	}
	if environment != "" && !strings.Contains(base, "{environment}") {
		return base + ".{environment}"
	}
	return base
}

func validMetricPeriod(n int64) bool {
	return n == 1 || n == 5 || n == 10 || n == 30 || n > 0 && n%60 == 0
}

// definitionName picks the built-in definition of a decoded service.
func definitionName(s *Service) string {
	switch {
	case s.Kind == S3Logs:
		if slices.Contains(s.Types, "flowlogs") || len(s.Types) == 0 {
			return defFlowLogs
		}
		return defCloudFront
	case s.Custom && s.Kind == Metrics:
		return defCustomMetrics
	case s.Custom:
		return defCustomLogs
	}
	return s.Name
}

// allowedTypes lists the types a service accepts (spec config.md §8).
func allowedTypes(name string, custom bool) []string {
	switch {
	case custom:
		return []string{"logs", "metrics"}
	case name == "audit-events-all":
		return []string{"audits_api", "audits_s3"}
	case name == "metrics-all", name == "ec2":
		return []string{"metrics"}
	case name == "non-cloudwatch-logs":
		return []string{"flowlogs", "cloudfrontlogs"}
	}
	return nil
}

// kindFromTypes reads types, fills s.Types and returns the service's kind.
func (d *decoder) kindFromTypes(s *Service, kind ServiceKind, v *value, p string) ServiceKind {
	var given []string
	tv, present := v.get("types")
	if present && tv.kind != kNull {
		switch tv.kind {
		case kString:
			given = []string{tv.s}
		case kList:
			for _, e := range tv.list {
				given = append(given, e.s)
			}
		default:
			d.expect(p+".types", "a list of types")
			present = false
		}
	} else {
		present = false
	}
	allowed := allowedTypes(s.Name, s.Custom)
	if allowed == nil {
		if present {
			d.warn(p+".types", "this service takes no types, ignored")
		}
		return kind
	}
	var types []string
	for _, t := range given {
		if t == "audit_apis" && s.Name == "audit-events-all" {
			t = "audits_api" // the product documentation's other spelling
		}
		if !slices.Contains(allowed, t) {
			d.add(newError("P7", p+".types", "service_config_key_path", p, "type", t, "allowed", quoteList(allowed)))
			continue
		}
		if !slices.Contains(types, t) {
			types = append(types, t)
		}
	}
	switch {
	case s.Name == "audit-events-all":
		if len(types) != 1 {
			if len(types) != 0 || len(given) == 0 {
				d.add(newError("P8", p+".types", "service_config_key_path", p))
			}
			s.Types = types
			return CloudTrailAPI
		}
		s.Types = types
		if types[0] == "audits_s3" {
			return CloudTrailS3
		}
		return CloudTrailAPI
	case s.Custom:
		if len(types) > 1 {
			// A custom key runs one puller: logs or metrics, not both.
			d.add(newError("P7", p+".types", "service_config_key_path", p, "type", types[1], "allowed", quoteList(allowed)+" (one of them)"))
			types = types[:1]
		}
		if len(types) == 0 {
			types = []string{"logs"}
		}
		s.Types = types
		if types[0] == "metrics" {
			return Metrics
		}
		return Logs
	case s.Name == "non-cloudwatch-logs":
		if len(types) == 0 && len(given) == 0 {
			types = []string{"flowlogs", "cloudfrontlogs"}
		}
		s.Types = types
		return kind
	}
	if len(types) == 0 {
		types = slices.Clone(allowed)
	}
	s.Types = types
	return kind
}

// queue reads the SQS queue-name key (A35–A37, B21–B23).
func (d *decoder) queue(s *Service, v *value, p, key string, rows sectionRows) {
	args := []string{"service_config_key_path", p, "sqs_queue_custom_name_key", key}
	qv, ok := v.get(key)
	switch {
	case !ok || qv.empty():
		d.add(newError(rows.queueMissing, p+"."+key, args...))
	case qv.kind == kString:
		s.QueueName = qv.s
	case qv.kind == kMap || qv.kind == kList:
		d.add(newError(rows.queueNotScalar, p+"."+key, args...))
	default:
		d.add(newError(rows.queueNotString, p+"."+key, args...))
	}
}

func (d *decoder) cloudtrail(s *Service, v *value, p string, def *builtin) {
	pathArg := []string{"service_config_key_path", p}
	s.GapUntilNow, s.TimeSlot = def.gap, def.slot
	if gv, ok := v.get("gap_until_now_in_minutes"); ok && gv.kind != kNull {
		switch {
		case gv.kind != kInt:
			d.add(newError("C30", p+".gap_until_now_in_minutes", pathArg...))
		case gv.i < 0:
			d.add(newError("P11", p+".gap_until_now_in_minutes", pathArg...))
		default:
			s.GapUntilNow = time.Duration(gv.i) * time.Minute
		}
	}
	if tv, ok := v.get("time_slot_in_hours"); ok && tv.kind != kNull {
		switch {
		case tv.kind != kInt:
			d.add(newError("C35", p+".time_slot_in_hours", pathArg...))
		case tv.i <= 0:
			d.add(newError("P12", p+".time_slot_in_hours", pathArg...))
		default:
			s.TimeSlot = time.Duration(tv.i) * time.Hour
		}
	}
	s.Sources = def.sources
	if sv, ok := v.get("sources"); ok && sv.kind != kNull {
		if list, ok := stringList(sv, true); ok {
			s.Sources = list
		} else {
			d.add(newError("C29", p+".sources", pathArg...))
		}
	}
	if slices.Contains(s.Sources, "all_sources") {
		s.Sources = nil
	}
	if dv, ok := v.get("drop_event_names"); ok && dv.kind != kNull {
		if list, ok := stringList(dv, false); ok {
			s.DropEventNames = list
		} else {
			d.add(newError("C33", p+".drop_event_names", pathArg...))
		}
	}
}

// stringList reads a list of strings; with one, a single string is a list of one.
func stringList(v *value, one bool) ([]string, bool) {
	if one && v.kind == kString {
		return []string{v.s}, true
	}
	if v.kind != kList {
		return nil, false
	}
	out := make([]string, 0, len(v.list))
	for _, e := range v.list {
		if e.kind != kString {
			return nil, false
		}
		out = append(out, e.s)
	}
	return out, true
}

// patterns reads event_type_file_regex_patterns; a user map replaces the
// built-in one, in file order.
func (d *decoder) patterns(s *Service, v *value, p string) {
	pv, ok := v.get("event_type_file_regex_patterns")
	if !ok || pv.kind == kNull {
		return
	}
	pp := p + ".event_type_file_regex_patterns"
	if pv.kind != kMap || len(pv.keys) == 0 {
		d.expect(pp, "a mapping of event type to regular expression")
		return
	}
	var out []Pattern
	for _, et := range pv.keys {
		ev := pv.m[et]
		re, err := regexp.Compile(ev.s)
		if ev.kind != kString || err != nil {
			d.add(newError("P9", pp+"."+et, "service_config_key_path", p, "event_type", et))
			continue
		}
		if tag.Sanitize(et, "") != et {
			d.expect(pp+"."+et, "keyed by an event type made of a-z, 0-9, '-' and '_'")
			continue
		}
		out = append(out, Pattern{EventType: et, Re: re})
	}
	s.EventTypePatterns = out
}

var metricStatistics = []string{"Average", "Sum", "Minimum", "Maximum", "SampleCount"}
var percentile = regexp.MustCompile(`^p\d{1,2}(\.\d+)?$`)

func (d *decoder) metrics(s *Service, v *value, p string, def *builtin) {
	s.MetricNamespaces = def.namespaces
	nv, ok := v.get("metric_namespaces")
	switch {
	case !ok || nv.kind == kNull || nv.kind == kList && len(nv.list) == 0:
		if len(def.namespaces) == 0 {
			d.add(newError("E12", p+".metric_namespaces"))
		}
	default:
		list, ok := stringList(nv, false)
		if !ok {
			d.add(newError("E13", p+".metric_namespaces"))
		} else {
			s.MetricNamespaces = list
		}
	}
	s.MetricStatistics = slices.Clone(metricStatistics)
	if sv, ok := v.get("metric_statistics"); ok && sv.kind != kNull {
		list, ok := stringList(sv, false)
		if ok && len(list) > 0 {
			for _, st := range list {
				if !slices.Contains(metricStatistics, st) && !percentile.MatchString(st) {
					ok = false
				}
			}
		}
		if !ok || len(list) == 0 {
			d.expect(p+".metric_statistics", fmt.Sprintf("a list of statistics from %s or percentiles such as p99", quoteList(metricStatistics)))
		} else {
			s.MetricStatistics = list
		}
	}
}

func (d *decoder) logs(s *Service, v *value, p string) {
	pathArg := []string{"service_config_key_path", p}
	lv, ok := v.get("log_group")
	switch {
	case !ok || lv.empty():
		d.add(newError("D17", p+".log_group", pathArg...))
	case lv.kind != kString:
		d.add(newError("D18", p+".log_group", pathArg...))
	default:
		s.LogGroup = lv.s
	}
	if uv, ok := v.get("use_first_optimized_retrieval"); ok && uv.kind != kNull {
		if uv.kind != kBool {
			d.add(newError("D16", p+".use_first_optimized_retrieval", pathArg...))
		} else {
			s.UseFirstOptimizedRetrieval = uv.b
		}
	}
}
