package config

import (
	"math"
	"time"
)

// Settings blocks that several kinds share. A kind lists the ones it reads
// in its registry entry (kindSpec.parts).

// SQSSettings are the settings of the kinds that read an SQS queue.
type SQSSettings struct {
	QueueName            string        // SQS queue name or https:// URL
	SQSMaxMessages       int           // extension sqs_max_messages, 1–10, default 10
	SQSWaitTime          time.Duration // extension sqs_wait_time_seconds, 0–20 s, default 20 s
	SQSVisibilityTimeout time.Duration // extension sqs_visibility_timeout; 0 (absent): the queue's own VisibilityTimeout
	MaxReceiveCount      int           // extension max_receive_count: delete as poison after this many receives
}

// sqsPart reads the SQS queue of the kinds that consume one: the queue key
// (A35–A37, B21–B23) and the SQS extensions.
var sqsPart = part{
	keys: func(def *builtin) []string {
		return []string{def.queueKey, "sqs_max_messages", "sqs_wait_time_seconds", "sqs_visibility_timeout", "max_receive_count"}
	},
	decode: func(b *block) {
		b.s.SQSSettings = SQSSettings{
			QueueName:            b.queue(),
			SQSMaxMessages:       b.d.integer(b.v, "sqs_max_messages", b.path, 10, 1, 10),
			SQSWaitTime:          seconds(b.d.integer(b.v, "sqs_wait_time_seconds", b.path, 20, 0, 20)),
			SQSVisibilityTimeout: seconds(b.d.integer(b.v, "sqs_visibility_timeout", b.path, 0, 1, 43200)),
			MaxReceiveCount:      b.d.integer(b.v, "max_receive_count", b.path, 5, 1, math.MaxInt32),
		}
	},
}

// queue reads the SQS queue-name key with the rows of the kind's section.
func (b *block) queue() string {
	key := b.def.queueKey
	args := []string{"sqs_queue_custom_name_key", key}
	qv, ok := b.v.get(key)
	switch {
	case !ok || qv.empty():
		b.fail(b.rows.queueMissing, key, args...)
	case qv.kind == kString:
		return qv.s
	case qv.kind == kMap || qv.kind == kList:
		b.fail(b.rows.queueNotScalar, key, args...)
	default:
		b.fail(b.rows.queueNotString, key, args...)
	}
	return ""
}

// derivePart reads auto_event_type: whether the event type level of the tag
// is derived from each event. The default comes from the definition.
var derivePart = autoEventType(false, false)

// fixedAutoPart accepts auto_event_type but always uses v; a user's true
// is warned about as having no effect.
func fixedAutoPart(v bool) part { return autoEventType(true, v) }

func autoEventType(fixed, fixedValue bool) part {
	return part{
		keys: func(def *builtin) []string { return []string{def.autoKey} },
		decode: func(b *block) {
			s, key := b.s, b.def.autoKey
			s.AutoEventType = b.def.autoDefault
			if av, ok := b.get(key); ok {
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
					b.fail(b.rows.autoType, key, "enable_auto_event_type_config_key", key).
						withHint("it must be a boolean: true or false (found " + describe(av) + ")")
				} else {
					s.AutoEventType = auto
				}
				if auto && fixed {
					b.warn(key, "has no effect on this service")
				}
			}
			if fixed {
				s.AutoEventType = fixedValue
			}
		},
	}
}

// startTimePart reads start_time, checked against the definition's regex
// with the rows of the kind's section (B25/B26, C31/C32, D19/D20, E15/E16).
var startTimePart = part{
	keys: keys("start_time"),
	decode: func(b *block) {
		sv, ok := b.get("start_time")
		if !ok {
			return
		}
		switch {
		case sv.kind != kString:
			b.fail(b.rows.startType, "start_time")
		case b.def.startRe != nil && !b.def.startRe.MatchString(sv.s):
			b.fail(b.rows.startFormat, "start_time", "start_time_regex", b.def.startRe.String())
		default:
			b.s.StartTime = sv.s
		}
	},
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
