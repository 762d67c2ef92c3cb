package metrics

import (
	"slices"
	"strings"
)

// kind tells counters, gauges and timings apart, so that one name used as two kinds
// keeps two values.
type kind byte

const (
	kindCounter kind = 'c'
	kindGauge   kind = 'g'
	kindTiming  kind = 't'
)

// maxStackTags is how many tags are put in order without allocating. Metrics rarely
// carry more; beyond it the key is still correct, just built on the heap.
const maxStackTags = 8

// appendKey appends the identity of a metric to dst: its kind, its name and its tags
// sorted by key then value, so that the order in which a caller lists tags does not
// make a new series. Separators are bytes that do not occur in sane names, and every
// string is preceded by its length so that no two tag sets can produce the same key.
func appendKey(dst []byte, k kind, name string, tags []Tag) []byte {
	dst = append(dst, byte(k))
	dst = appendString(dst, name)
	if len(tags) <= maxStackTags {
		var order [maxStackTags]uint8
		n := sortTags(&order, tags)
		for _, i := range order[:n] {
			dst = appendString(dst, tags[i].Key)
			dst = appendString(dst, tags[i].Value)
		}
		return dst
	}
	sorted := slices.Clone(tags)
	slices.SortFunc(sorted, compareTags)
	for _, t := range sorted {
		dst = appendString(dst, t.Key)
		dst = appendString(dst, t.Value)
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	n := uint64(len(s))
	for n >= 0x80 {
		dst = append(dst, byte(n)|0x80)
		n >>= 7
	}
	dst = append(dst, byte(n))
	return append(dst, s...)
}

// sortTags writes into order the indexes of tags in sorted order, by insertion sort
// because tag lists are short and this must not allocate.
func sortTags(order *[maxStackTags]uint8, tags []Tag) int {
	n := len(tags)
	for i := 0; i < n; i++ {
		j := i
		for j > 0 && compareTags(tags[order[j-1]], tags[i]) > 0 {
			order[j] = order[j-1]
			j--
		}
		order[j] = uint8(i)
	}
	return n
}

func compareTags(a, b Tag) int {
	if c := strings.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return strings.Compare(a.Value, b.Value)
}

// normalizeTags returns a copy of tags in the order appendKey uses; the copy is kept
// by whoever stores the series because the caller may reuse its slice.
func normalizeTags(tags []Tag) []Tag {
	if len(tags) == 0 {
		return nil
	}
	sorted := slices.Clone(tags)
	slices.SortFunc(sorted, compareTags)
	return sorted
}
