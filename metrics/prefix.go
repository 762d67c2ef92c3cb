package metrics

// DefaultPrefix is put in front of every metric name by the DogStatsD and Prometheus
// backends when their configuration leaves Prefix empty.
const DefaultPrefix = "creek."
