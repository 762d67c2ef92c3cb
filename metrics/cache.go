package metrics

import (
	"sync/atomic"
	"unsafe"
)

// The lookup cache lets a writer that passes the same name and tag slice as before
// find its series without building a key or hashing strings. It is indexed by the
// addresses of the caller's name and tags, which for string constants and reused tag
// slices stay the same from call to call, and every hit is confirmed by comparing the
// contents, so a stale or colliding entry can only cost a miss, never a wrong series.
// The addresses are only hashed, never dereferenced.

const (
	cacheSets = 256
	cacheWays = 4
)

// cacheEntry is immutable once published.
type cacheEntry struct {
	name string
	tags []Tag // in the caller's order
	s    *series
}

type lookupCache struct {
	slots [cacheSets * cacheWays]atomic.Pointer[cacheEntry]
}

func cacheSet(name string, tags []Tag) int {
	h := uint64(uintptr(unsafe.Pointer(unsafe.StringData(name))))
	h ^= uint64(uintptr(unsafe.Pointer(unsafe.SliceData(tags)))) * 0x9e3779b97f4a7c15
	h ^= uint64(len(name))<<32 | uint64(len(tags))
	h *= 0xff51afd7ed558ccd
	return int(h>>56) % cacheSets * cacheWays
}

// get returns the cached series for name and tags, or nil.
func (c *lookupCache) get(k kind, name string, tags []Tag) *series {
	set := cacheSet(name, tags)
	for i := set; i < set+cacheWays; i++ {
		e := c.slots[i].Load()
		if e != nil && e.s.kind == k && e.name == name && equalTags(e.tags, tags) {
			return e.s
		}
	}
	return nil
}

// put caches s for name and tags in the caller's order, replacing an entry of the
// set picked from the series' own address so that writers of different series
// spread over the ways.
func (c *lookupCache) put(name string, tags []Tag, s *series) {
	set := cacheSet(name, tags)
	way := int(uintptr(unsafe.Pointer(s))>>6) % cacheWays
	c.slots[set+way].Store(&cacheEntry{name: name, tags: append([]Tag(nil), tags...), s: s})
}

func equalTags(a, b []Tag) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
