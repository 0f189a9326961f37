package config

import (
	"fmt"
	"strings"
)

// Suggestions for misspelt keys and service names. A near miss is a
// mistake the user wants named, so the decoder turns it into an error with
// "did you mean …?" (rows P21, P22); a key that is not near any known one
// stays a warning, so keys meant for the reference collector still load.

// closest returns the candidate nearest to s and whether it is near enough
// to be a likely misspelling: at most one edit for names of up to four
// characters, two up to ten, three beyond. Case and the separators '-' and
// '_' are ignored when comparing, so "SQS-Queue-Name" is near
// "sqs_queue_name".
func closest(s string, candidates []string) (string, bool) {
	best, bestD := "", -1
	ns := normalizeName(s)
	for _, c := range candidates {
		if c == s {
			continue
		}
		d := editDistance(ns, normalizeName(c))
		if bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 {
		return "", false
	}
	limit := 3
	switch n := min(len(ns), len(normalizeName(best))); {
	case n <= 4:
		limit = 1
	case n <= 10:
		limit = 2
	}
	return best, bestD <= limit
}

func normalizeName(s string) string {
	return strings.NewReplacer("-", "", "_", "", " ", "").Replace(strings.ToLower(s))
}

// editDistance is the optimal-string-alignment distance: insertions,
// deletions, substitutions and swaps of two neighbours each count one.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev2 := make([]int, len(rb)+1)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(rb)]
}

// serviceWords maps words users write for an AWS feature to the predefined
// service that collects it, for service names that are no misspelling.
var serviceWords = []struct{ word, service string }{
	{"guardduty", "aws-guardduty"},
	{"securityhub", "sqs-cloudwatch-consumer"},
	{"cloudtrail", "audit-events-all"},
	{"audit", "audit-events-all"},
	{"flowlog", "non-cloudwatch-logs"},
	{"cloudfront", "non-cloudwatch-logs"},
	{"umbrella", "cisco-umbrella"},
	{"eventbridge", "service-events-all"},
	{"event", "service-events-all"},
	{"metric", "metrics-all"},
}

// suggestService names the predefined service a user most likely meant by
// name: a near spelling, else one whose AWS feature the name mentions.
// ok is false when nothing fits.
func suggestService(name string) (string, bool) {
	if s, ok := closest(name, PredefinedServices()); ok {
		return s, true
	}
	n := normalizeName(name)
	for _, w := range serviceWords {
		if strings.Contains(n, w.word) {
			return w.service, true
		}
	}
	return "", false
}

// didYouMean renders the hint of a suggestion.
func didYouMean(s string) string { return fmt.Sprintf("did you mean %q?", s) }
