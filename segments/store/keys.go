package store

import (
	"strconv"
	"strings"
)

// Key layout; doc.go explains it. pt is "<project>:<trace>", the trace's hash tag.
// Every key starts with the buffer's prefix: span-buf: and, with a namespace,
// <namespace>: after it.
const basePrefix = "span-buf:"

// keyPrefix returns the prefix of every key of a buffer in namespace ns.
func keyPrefix(ns string) string {
	if ns == "" {
		return basePrefix
	}
	return basePrefix + ns + ":"
}

func traceTag(project uint64, trace string) string {
	return strconv.FormatUint(project, 10) + ":" + trace
}

// keys builds a buffer's keys.
type keys struct{ prefix string }

func (k keys) segment(pt, root string) string { return k.prefix + "s:{" + pt + "}:" + root }
func (k keys) redirect(pt string) string      { return k.prefix + "ssr:{" + pt + "}" }
func (k keys) payload(pt, salt string) string {
	return k.prefix + "s:{" + pt + ":" + salt + "}:" + salt
}
func (k keys) memberKeys(pt, root string) string { return k.prefix + "mk:{" + pt + "}:" + root }
func (k keys) count(seg string) string           { return k.prefix + "ic:" + seg }
func (k keys) bytes(seg string) string           { return k.prefix + "ibc:" + seg }
func (k keys) lock(seg string) string            { return k.prefix + "fl:" + seg }

// flushed is the trace's hash of the span ids flushed within the redelivery window;
// see Config.RedeliveryWindow.
func (k keys) flushed(pt string) string { return k.prefix + "fs:{" + pt + "}" }

// skipPrefix marks a member of a segment's member keys that is not a salt but the
// id of a span the flush must leave out: it was flushed already, and a copy read
// again came in a payload set with spans that were not. Span ids never hold a ~.
const skipPrefix = "~"

// marker is the key whose random value tells a buffer that Redis still holds what
// it wrote; see Buffer.checkMarkers. On a Cluster there is one per slot range,
// slotMarker, in a slot that tag hashes to.
func (k keys) marker() string               { return k.prefix + "marker" }
func (k keys) slotMarker(tag string) string { return k.prefix + "marker:{" + tag + "}" }

func (k keys) queue(slice string, shard int32) string {
	if slice == "" {
		return k.prefix + "q:" + strconv.FormatInt(int64(shard), 10)
	}
	return k.prefix + "q:" + slice + "-" + strconv.FormatInt(int64(shard), 10)
}

func (b *Buffer) queueKey(shard int32) string { return b.keys.queue(b.cfg.Slice, shard) }

// parseSegment splits <prefix>s:{P:T}:<root> into its parts.
func (k keys) parseSegment(key string) (pt string, project uint64, trace, root string, ok bool) {
	rest, found := strings.CutPrefix(key, k.prefix+"s:{")
	if !found {
		return "", 0, "", "", false
	}
	pt, root, found = strings.Cut(rest, "}:")
	if !found {
		return "", 0, "", "", false
	}
	p, trace, found := strings.Cut(pt, ":")
	if !found {
		return "", 0, "", "", false
	}
	project, err := strconv.ParseUint(p, 10, 64)
	if err != nil {
		return "", 0, "", "", false
	}
	return pt, project, trace, root, true
}
