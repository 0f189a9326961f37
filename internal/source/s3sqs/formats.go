package s3sqs

import (
	"bufio"
	"errors"
	"io"
	"path"
	"strings"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudfront"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/lines"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/s3notify"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/umbrella"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/vpcflow"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

func skipCloudTrail(key string) (bool, string) {
	return cloudtrail.Skip(key)
}

// read turns one opened object into events.
func (w *work) read(o s3notify.Object, rd *objReader, src io.Reader) error {
	text, empty, err := rd.open(src, w.s.o.MaxObjectBytes)
	if err != nil {
		return err
	}
	if !empty {
		if _, err := text.Peek(1); err == io.EOF {
			empty = true // a gzip stream of nothing
		} else if err != nil {
			return err
		}
	}
	if empty {
		w.s.counters.EmptyObjects.Add(1)
		return nil
	}
	switch w.s.kind {
	case config.CloudTrailS3:
		return w.cloudTrail(text)
	case config.S3Logs:
		return w.s3Log(o, text)
	default:
		return w.umbrella(o, text)
	}
}

// discard counts a file read and found to be of no known format.
func (w *work) discard(o s3notify.Object, why string) {
	w.s.counters.Discarded.Add(1)
	w.cyc.AddDiscardedFiles(1)
	w.s.log.Warn("file of no supported format, discarded", "bucket", o.Bucket, "key", o.Key, "reason", why)
}

func (w *work) dropped(n int64) {
	if n > 0 {
		w.s.counters.Dropped.Add(n)
		w.cyc.AddDropped(n)
	}
}

// cloudTrail emits one JSON event per record, with @devo_pulling_id added,
// tagged by the record's eventSource when auto_event_type is on.
func (w *work) cloudTrail(text io.Reader) error {
	svc := w.s.svc
	cache := w.tags.main
	id := w.cyc.ID
	def := cache.Tag(svc.DefaultEventType)
	var deriver *tag.Deriver
	// bySource caches eventSource → tag for this object: a file holds few
	// distinct sources, and a lookup with string(bytes) does not allocate.
	var bySource map[string]string
	if svc.AutoEventType {
		deriver = svc.Deriver()
		bySource = make(map[string]string, 8)
	}
	var drops int64
	defer func() { w.dropped(drops) }()
	var mem arena
	defer mem.close()
	r := cloudtrail.NewReader(text, 0)
	for {
		rec, err := r.Next()
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, cloudtrail.ErrNoRecords):
			w.s.counters.Discarded.Add(1)
			w.cyc.AddDiscardedFiles(1)
			return nil
		case err != nil:
			return err
		}
		if dropName(svc.DropEventNames, rec.EventName) {
			drops++
			continue
		}
		t := def
		if deriver != nil {
			var ok bool
			if t, ok = bySource[string(rec.EventSource)]; !ok {
				et := deriver.EventType(string(rec.EventSource))
				t = cache.Tag(et)
				w.cyc.EventType(et)
				bySource[string(rec.EventSource)] = t
			}
		}
		payload, blk, err := mem.payload(&rec, id)
		if err != nil {
			return err
		}
		ev := mem.newEvent(blk, w.b, t, w.now, payload)
		ev.Clean = true // jsonpay output: compact, valid UTF-8
		if err := w.emitEvent(ev); err != nil {
			return &emitError{err}
		}
	}
}

func dropName(names []string, name []byte) bool {
	for _, n := range names {
		if n == string(name) {
			return true
		}
	}
	return false
}

// s3Log classifies a non-cloudwatch-logs file (key, then first line) and
// emits its data lines raw.
func (w *work) s3Log(o s3notify.Object, text *bufio.Reader) error {
	kind := tag.ClassifyS3Log(o.Key, nil)
	if kind == tag.LogUnknown {
		first, _ := text.Peek(16)
		kind = tag.ClassifyS3Log(o.Key, first)
	}
	var cache *tag.Cache
	switch kind {
	case tag.LogVPCFlow:
		cache = w.tags.vpc
	case tag.LogCloudFront:
		cache = w.tags.cf
	default:
		w.discard(o, "neither VPC Flow Logs nor CloudFront")
		return nil
	}
	if cache == nil {
		w.discard(o, kind.String()+" file but that type is not enabled")
		return nil
	}
	svc := w.s.svc
	et := svc.DefaultEventType
	if svc.AutoEventType {
		et = tag.Match(svc.EventTypePatterns, o.Key, svc.DefaultEventType)
	}
	w.cyc.EventType(et)
	t := cache.Tag(et)
	if kind == tag.LogVPCFlow {
		return w.vpc(o, text, t)
	}
	return w.cloudFront(o, text, t)
}

func (w *work) vpc(o s3notify.Object, text io.Reader, t string) error {
	r := vpcflow.NewReader(text, 0)
	if _, err := r.Header(); err != nil {
		switch {
		case err == io.EOF:
			w.s.counters.EmptyObjects.Add(1)
			return nil
		case errors.Is(err, vpcflow.ErrNoHeader):
			w.discard(o, err.Error())
			return nil
		}
		return err
	}
	if !r.IsDefault() {
		if id := flowLogID(o.Key); w.s.warnOnce("vpc:" + id) {
			w.s.log.Warn("flow log header is not the default format, lines sent as they are",
				"flow_log_id", id, "key", o.Key)
		}
	}
	return w.emitRaw(t, r.Next, nil)
}

// emitRaw emits every line next yields as a raw payload under tag t, until
// io.EOF. A line over the reader's cap is dropped and counted; special, when
// set, may end the file quietly on an error of its reader (done = true).
func (w *work) emitRaw(t string, next func() ([]byte, error), special func(error) (done bool)) error {
	var drops int64
	defer func() { w.dropped(drops) }()
	var mem arena
	defer mem.close()
	for {
		line, err := next()
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, lines.ErrTooLong), errors.Is(err, umbrella.ErrRowTooLong):
			drops++
			continue
		case err != nil && special != nil && special(err):
			return nil
		case err != nil:
			return err
		}
		payload, blk := mem.line(line)
		if err := w.emitEvent(mem.newEvent(blk, w.b, t, w.now, payload)); err != nil {
			return &emitError{err}
		}
	}
}

// flowLogID picks <flow-log-id> from
// <account>_vpcflowlogs_<region>_<flow-log-id>_<time>_<hash>.log.gz, or
// falls back to the key's folder.
func flowLogID(key string) string {
	parts := strings.Split(path.Base(key), "_")
	if len(parts) >= 4 && parts[1] == "vpcflowlogs" {
		return parts[3]
	}
	return path.Dir(key)
}

func (w *work) cloudFront(o s3notify.Object, text io.Reader, t string) error {
	r := cloudfront.NewReader(text, 0)
	return w.emitRaw(t, r.Next, func(err error) bool {
		if errors.Is(err, cloudfront.ErrNoFields) && w.n == 0 {
			w.discard(o, "no #Fields header: not a CloudFront standard log")
			return true
		}
		return false
	})
}

// umbrella emits each CSV row raw, tagged by the key's log-type folder.
func (w *work) umbrella(o s3notify.Object, text io.Reader) error {
	svc := w.s.svc
	et := tag.Match(svc.EventTypePatterns, o.Key, svc.DefaultEventType)
	w.cyc.EventType(et)
	t := w.tags.main.Tag(et)
	return w.emitRaw(t, umbrella.NewReader(text, 0).Next, nil)
}
