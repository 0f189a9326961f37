package config

import (
	"math"
	"net/url"
	"regexp"
	"slices"
	"strings"
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
	} else if slices.ContainsFunc(in.Services, func(s *Service) bool { return kindSpecs[s.Kind].needsRate }) {
		d.add(newError("D1", p+".requests_per_second").withHint("add requests_per_second under inputs.aws, e.g. requests_per_second: 5 (a CloudWatch Logs service needs it)"))
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
