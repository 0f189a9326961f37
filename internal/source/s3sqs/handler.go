package s3sqs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/klauspost/compress/gzip"

	"github.com/devo-aws-collector/devo-aws-collector/internal/config"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/cloudtrail"
	"github.com/devo-aws-collector/devo-aws-collector/internal/format/s3notify"
	"github.com/devo-aws-collector/devo-aws-collector/internal/pipeline"
	"github.com/devo-aws-collector/devo-aws-collector/internal/sqsengine"
	"github.com/devo-aws-collector/devo-aws-collector/internal/stats"
	"github.com/devo-aws-collector/devo-aws-collector/internal/tag"
)

// ErrTooLarge: an object decompressed to more than Options.MaxObjectBytes.
// A CloudTrail record above the reader's record cap counts as too large too.
var ErrTooLarge = errors.New("object larger than the decompressed size cap")

// ErrCorrupt: an object's content could not be read to its end (corrupt
// gzip, invalid or truncated JSON, a row left open at the end).
var ErrCorrupt = errors.New("object content is corrupt")

// ObjectError says which object failed and how. It unwraps to ErrTooLarge,
// ErrCorrupt, or the S3 or transport error.
type ObjectError struct {
	Bucket, Key string
	// Events is how many events were emitted before the error.
	Events int64
	Err    error
}

func (e *ObjectError) Error() string {
	return fmt.Sprintf("s3://%s/%s: %v (after %d events)", e.Bucket, e.Key, e.Err, e.Events)
}

func (e *ObjectError) Unwrap() error { return e.Err }

// tagSet holds the tag caches a message may need (the skeleton makes them
// once, with the account resolved at the first Run).
type tagSet struct {
	main    *tag.Cache // CloudTrail and Umbrella
	vpc, cf *tag.Cache // non-cloudwatch-logs; nil when the type is not enabled
}

func (s *Source) tagSet() *tagSet {
	ts := &tagSet{}
	if s.kind == config.S3Logs {
		if t, ok := s.svc.TypeTagTemplates["flowlogs"]; ok {
			ts.vpc = s.Tags(t)
		}
		if t, ok := s.svc.TypeTagTemplates["cloudfrontlogs"]; ok {
			ts.cf = s.Tags(t)
		}
	} else {
		ts.main = s.Tags(s.svc.TagTemplate)
	}
	return ts
}

// Handle implements sqsengine.Handler: one message, all the objects it
// names, every event into b.
func (s *Source) Handle(ctx context.Context, m sqsengine.Message, b *pipeline.Batch, out pipeline.Emitter) error {
	c := &s.counters
	c.Messages.Add(1)
	cyc := s.Cycle()
	cyc.AddReceived(1)
	n, err := s3notify.Parse([]byte(m.Body))
	if err != nil {
		c.BadMessages.Add(1)
		b.Fail()
		return sqsengine.Poison(fmt.Errorf("message %s: %w", m.ID, err))
	}
	if n.Test {
		c.TestEvents.Add(1)
		return nil
	}
	if n.Ignored > 0 {
		c.Ignored.Add(int64(n.Ignored))
	}
	w := &work{s: s, ctx: ctx, b: b, out: out, cyc: cyc, tags: s.tagSet(), msgID: m.ID}
	for _, o := range n.Objects {
		c.Objects.Add(1)
		if err := w.object(o); err != nil {
			// Whatever was emitted, the message must not count as
			// delivered: it is read again (or removed as poison).
			b.Fail()
			return err
		}
	}
	return nil
}

// work is the state of handling one message.
type work struct {
	s     *Source
	ctx   context.Context
	b     *pipeline.Batch
	out   pipeline.Emitter
	cyc   *stats.Cycle
	tags  *tagSet
	msgID string
	now   time.Time
	n     int64 // events emitted for the current object
}

func (w *work) emitEvent(ev *pipeline.Event) error {
	if err := w.out.Emit(w.ctx, ev); err != nil {
		return err
	}
	w.n++
	return nil
}

// object reads one object and emits its events. A nil error means the
// object is done (read, skipped, or gone).
func (w *work) object(o s3notify.Object) error {
	s, c := w.s, &w.s.counters
	if skip, reason := s.skipKey(o.Key); skip {
		c.Skipped.Add(1)
		w.cyc.AddDiscardedFiles(1)
		s.log.Debug("object skipped", "bucket", o.Bucket, "key", o.Key, "reason", reason)
		return nil
	}
	if o.Size == 0 {
		c.EmptyObjects.Add(1)
		s.log.Debug("object skipped", "bucket", o.Bucket, "key", o.Key, "reason", "announced empty")
		return nil
	}
	region := o.Region
	if region == "" {
		region = s.o.Region
	}
	body, err := w.get(region, o)
	if err != nil {
		var nsk *s3types.NoSuchKey
		if errors.As(err, &nsk) {
			c.MissingObjects.Add(1)
			s.log.Warn("object announced but gone, skipped", "bucket", o.Bucket, "key", o.Key, "message_id", w.msgID)
			return nil
		}
		if w.ctx.Err() != nil {
			return w.ctx.Err()
		}
		c.ReadErrors.Add(1)
		s.log.Error("cannot read object, message returned to the queue",
			"bucket", o.Bucket, "key", o.Key, "region", region, "code", errorCode(err), "err", err)
		return &ObjectError{Bucket: o.Bucket, Key: o.Key, Err: err}
	}
	defer body.Close()

	w.now, w.n = time.Now(), 0
	src := &sourceReader{r: body}
	rd := getReader()
	defer putReader(rd)
	err = w.read(o, rd, src)
	events := w.n
	if events > 0 {
		c.Events.Add(events)
		w.cyc.AddGenerated(events)
	}
	if err == nil {
		// One line per object, never per event.
		s.log.Debug("object read", "bucket", o.Bucket, "key", o.Key, "events", events,
			"bytes", rd.cap.n, "took", time.Since(w.now).Round(time.Millisecond))
		return nil
	}
	oe := &ObjectError{Bucket: o.Bucket, Key: o.Key, Events: events, Err: err}
	switch {
	case w.ctx.Err() != nil:
		return w.ctx.Err()
	case src.err != nil:
		// The connection failed, not the content: read it again.
		c.ReadErrors.Add(1)
		s.log.Error("object read failed, message returned to the queue",
			"bucket", o.Bucket, "key", o.Key, "events", events, "err", src.err)
		oe.Err = src.err
		return oe
	case errors.Is(err, ErrTooLarge), errors.Is(err, cloudtrail.ErrRecordTooLarge):
		c.TooLarge.Add(1)
		return sqsengine.Poison(oe)
	case isEmitError(err):
		return oe
	}
	c.Corrupt.Add(1)
	oe.Err = fmt.Errorf("%w: %w", ErrCorrupt, err)
	return sqsengine.Poison(oe)
}

// emitError marks an error from the pipeline (context ended while waiting
// for room), so it is not mistaken for corrupt content.
type emitError struct{ err error }

func (e *emitError) Error() string { return "emit: " + e.err.Error() }
func (e *emitError) Unwrap() error { return e.err }

func isEmitError(err error) bool {
	var e *emitError
	return errors.As(err, &e)
}

// get opens the object. For EventBridge notifications, whose key encoding
// is not documented, a NoSuchKey is retried once with the query-unescaped
// key (aws-formats §2).
func (w *work) get(region string, o s3notify.Object) (io.ReadCloser, error) {
	cl := w.s.o.S3(region)
	out, err := cl.GetObject(w.ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(o.Key)})
	if err == nil {
		return out.Body, nil
	}
	var nsk *s3types.NoSuchKey
	if o.EventName == "Object Created" && errors.As(err, &nsk) {
		if alt, uerr := url.QueryUnescape(o.KeyRaw); uerr == nil && alt != o.Key {
			out, err2 := cl.GetObject(w.ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(alt)})
			if err2 == nil {
				return out.Body, nil
			}
			return nil, err2
		}
	}
	return nil, err
}

func errorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// skipKey reports objects that are deleted unread.
func (s *Source) skipKey(key string) (bool, string) {
	switch s.kind {
	case config.CloudTrailS3:
		return skipCloudTrail(key)
	case config.S3Logs:
		if strings.HasSuffix(key, ".parquet") {
			if s.warnOnce("parquet") {
				s.log.Warn("parquet files are not supported, discarded", "key", key)
			}
			return true, "parquet"
		}
	}
	if key == "" || strings.HasSuffix(key, "/") {
		return true, "folder marker"
	}
	return false, ""
}

// sourceReader remembers the first error of the S3 body, so a failed
// connection is told apart from corrupt content.
type sourceReader struct {
	r   io.Reader
	err error
}

func (r *sourceReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF && r.err == nil {
		r.err = err
	}
	return n, err
}

// capReader fails with ErrTooLarge once more than max bytes come out.
type capReader struct {
	r        io.Reader
	n, max   int64
	overflow [1]byte
}

func (c *capReader) Read(p []byte) (int, error) {
	if c.n >= c.max {
		k, err := c.r.Read(c.overflow[:])
		if k > 0 {
			return 0, fmt.Errorf("%w (%d bytes)", ErrTooLarge, c.max)
		}
		return 0, err
	}
	if rest := c.max - c.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// objReader is the per-object reading machinery, pooled: a buffer over the
// S3 body to sniff the gzip magic, the gzip state, and a buffer over the
// decompressed (capped) stream to sniff the first line.
type objReader struct {
	raw  *bufio.Reader
	gz   gzip.Reader
	cap  capReader
	text *bufio.Reader
}

var readers = sync.Pool{New: func() any {
	return &objReader{raw: bufio.NewReaderSize(nil, 64<<10), text: bufio.NewReaderSize(nil, 64<<10)}
}}

func getReader() *objReader { return readers.Get().(*objReader) }

func putReader(r *objReader) {
	r.raw.Reset(nil)
	r.text.Reset(nil)
	r.cap = capReader{}
	readers.Put(r)
}

// open returns the decompressed, capped stream of body. empty reports an
// object with no bytes at all.
func (r *objReader) open(body io.Reader, max int64) (text *bufio.Reader, empty bool, err error) {
	r.raw.Reset(body)
	magic, err := r.raw.Peek(2)
	if len(magic) == 0 {
		if err == io.EOF {
			return nil, true, nil
		}
		return nil, false, err
	}
	var dec io.Reader = r.raw
	if len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		if err := r.gz.Reset(r.raw); err != nil {
			return nil, false, fmt.Errorf("gzip header: %w", err)
		}
		r.gz.Multistream(true)
		dec = &r.gz
	}
	r.cap = capReader{r: dec, max: max}
	r.text.Reset(&r.cap)
	return r.text, false, nil
}
