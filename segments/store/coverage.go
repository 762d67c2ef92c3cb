package store

// BatchSalts returns, by partition, the payload sets Ingest writes for spans: one
// identity ("<project>:<trace>/<salt>") per subsegment holding a span of that
// partition. A flush that loads a payload set reports the same identity in
// FlushedSegment.Salts, so a caller can tell when every span of a batch has been
// flushed. The salt is a hash of the subsegment's span ids, so two batches with the
// same spans share their identities.
func BatchSalts(spans []Span) map[int32][]string {
	subs := group(spans)
	out := make(map[int32][]string, 4)
	for _, sub := range subs {
		id := saltKey(sub.pt, sub.salt)
		for _, shard := range sub.shards {
			out[shard] = append(out[shard], id)
		}
	}
	return out
}

func saltKey(pt, salt string) string { return pt + "/" + salt }

// Salts returns the identities of the payload sets the flush loaded into s, in the
// form BatchSalts gives.
func (s FlushedSegment) Salts() []string {
	out := make([]string, len(s.salts))
	for i, salt := range s.salts {
		out[i] = saltKey(s.pt, salt)
	}
	return out
}
