package metrics

// DefaultPrefix is put in front of every metric name by the DogStatsD and Prometheus
// backends when their configuration leaves Prefix empty.
const DefaultPrefix = "creek."

// resolvePrefix returns the prefix a backend puts in front of names: none with
// noPrefix, DefaultPrefix when prefix is empty.
func resolvePrefix(prefix string, noPrefix bool) string {
	switch {
	case noPrefix:
		return ""
	case prefix == "":
		return DefaultPrefix
	}
	return prefix
}
