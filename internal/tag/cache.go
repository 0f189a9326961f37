package tag

import "sync"

// cacheLimit bounds a Cache: event types come from data, and a hostile or
// broken source must not grow memory without end. Past the limit tags are
// still correct, just expanded each time.
const cacheLimit = 4096

// Cache holds the tags of one source instance: the template and the fixed
// values (account, region, environment, service) are set once, and each
// event type is expanded once. It is safe for concurrent use.
type Cache struct {
	t    *Template
	v    Values
	mu   sync.RWMutex
	tags map[string]string
}

// NewCache returns a cache expanding t with v and a per-call event type.
func NewCache(t *Template, v Values) *Cache {
	return &Cache{t: t, v: v, tags: make(map[string]string)}
}

// Tag returns the expanded tag for eventType.
func (c *Cache) Tag(eventType string) string {
	c.mu.RLock()
	s, ok := c.tags[eventType]
	c.mu.RUnlock()
	if ok {
		return s
	}
	v := c.v
	v.EventType = eventType
	s = c.t.Expand(v)
	c.mu.Lock()
	if len(c.tags) < cacheLimit {
		c.tags[eventType] = s
	}
	c.mu.Unlock()
	return s
}

// Len returns the number of cached tags.
func (c *Cache) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.tags)
}
