package store

import (
	"strconv"
	"strings"
)

// Key layout; doc.go explains it. pt is "<project>:<trace>", the trace's hash tag.
const (
	segmentPrefix = "span-buf:s:"
	queuePrefix   = "span-buf:q:"
)

func traceTag(project uint64, trace string) string {
	return strconv.FormatUint(project, 10) + ":" + trace
}

func segmentKey(pt, root string) string    { return segmentPrefix + "{" + pt + "}:" + root }
func redirectKey(pt string) string         { return "span-buf:ssr:{" + pt + "}" }
func payloadKey(pt, salt string) string    { return segmentPrefix + "{" + pt + ":" + salt + "}:" + salt }
func memberKeysKey(pt, root string) string { return "span-buf:mk:{" + pt + "}:" + root }
func countKey(seg string) string           { return "span-buf:ic:" + seg }
func bytesKey(seg string) string           { return "span-buf:ibc:" + seg }
func lockKey(seg string) string            { return "span-buf:fl:" + seg }

func (b *Buffer) queueKey(shard int32) string {
	if b.cfg.Slice == "" {
		return queuePrefix + strconv.FormatInt(int64(shard), 10)
	}
	return queuePrefix + b.cfg.Slice + "-" + strconv.FormatInt(int64(shard), 10)
}

// parseSegmentKey splits span-buf:s:{P:T}:<root> into its parts.
func parseSegmentKey(key string) (pt string, project uint64, trace, root string, ok bool) {
	rest, found := strings.CutPrefix(key, segmentPrefix+"{")
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
