package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// runResult is one contender's figures for one run. Every time is read on the
// monotonic clock of the harness; "start" is just before the contender creates its
// client, "assignment" the first moment its code learns that its group gave it the
// partitions (see each contender), "last" the moment it handles the last message.
type runResult struct {
	Round int `json:"round"`
	// MessagesPerSecond is the messages divided by Seconds, the time from the
	// assignment to the last message: the consumption rate, fetching and
	// prefetching included, since none can start before the assignment.
	MessagesPerSecond float64 `json:"messages_per_second"`
	Seconds           float64 `json:"seconds"`
	// JoinSeconds is the time from the start to the assignment: connecting and
	// joining the group.
	JoinSeconds float64 `json:"join_seconds"`
	// FirstToLastMessagesPerSecond counts from the first message handled to the
	// last. It flatters a client that fetches ahead before handing out the first
	// message, so it is reported for comparison only.
	FirstToLastMessagesPerSecond float64 `json:"first_to_last_messages_per_second"`
	// WallSeconds is the time from the start to the last message, join included.
	WallSeconds float64 `json:"wall_seconds"`
	// StopSeconds is the time from the last message to the contender having shut
	// down, final commit included.
	StopSeconds float64 `json:"stop_seconds"`
	// Load1 is the one-minute load average when the run ended (0 where unknown).
	Load1 float64 `json:"load1"`
	// Duplicates are messages handled more than once.
	Duplicates int64 `json:"duplicates"`
	// Committed reports whether the group's committed offsets reached the end of
	// every partition after the run.
	Committed bool `json:"committed"`
}

// contenderResult is one contender's runs and their medians. The ratios compare
// medians of MessagesPerSecond; a ratio is 0 (left out) when its baseline did not run.
type contenderResult struct {
	Name                    string      `json:"name"`
	MedianMessagesPerSecond float64     `json:"median_messages_per_second"`
	MinMessagesPerSecond    float64     `json:"min_messages_per_second"`
	MaxMessagesPerSecond    float64     `json:"max_messages_per_second"`
	MedianFirstToLast       float64     `json:"median_first_to_last_messages_per_second"`
	MedianJoinSeconds       float64     `json:"median_join_seconds"`
	MedianWallSeconds       float64     `json:"median_wall_seconds"`
	RatioToSarama           float64     `json:"ratio_to_sarama,omitempty"`
	RatioToFranz            float64     `json:"ratio_to_franz,omitempty"`
	Runs                    []runResult `json:"runs"`
}

type report struct {
	Date string `json:"date"`
	Go   string `json:"go"`
	// Commit is the creek revision measured, when the binary was built with VCS
	// stamping (go run -buildvcs=true).
	Commit  string `json:"commit,omitempty"`
	Machine struct {
		OS         string `json:"os"`
		Arch       string `json:"arch"`
		CPU        string `json:"cpu,omitempty"`
		NumCPU     int    `json:"num_cpu"`
		GOMAXPROCS int    `json:"gomaxprocs"`
	} `json:"machine"`
	Broker struct {
		Name  string   `json:"name"`
		Addrs []string `json:"addrs,omitempty"`
	} `json:"broker"`
	Topic struct {
		Messages       int     `json:"messages"`
		Partitions     int     `json:"partitions"`
		MessageBytes   int     `json:"message_bytes"`
		Compression    string  `json:"compression"`
		ProduceSeconds float64 `json:"produce_seconds"`
	} `json:"topic"`
	// Load is /proc/loadavg's 1, 5 and 15 minute load averages before the first
	// round and after the last ("" where unknown): the machine may be shared.
	Load struct {
		Before string `json:"before"`
		After  string `json:"after"`
	} `json:"load"`
	Sarama struct {
		Version           string `json:"version"`
		FetchDefaultBytes int32  `json:"fetch_default_bytes"`
		ChannelBufferSize int    `json:"channel_buffer_size"`
	} `json:"sarama"`
	Rounds     int               `json:"rounds"`
	Contenders []contenderResult `json:"contenders"`
}

func newReport(cfg config, results []contenderResult) report {
	var r report
	r.Date = time.Now().UTC().Format(time.RFC3339)
	r.Go = runtime.Version()
	r.Commit = revision()
	r.Machine.OS, r.Machine.Arch = runtime.GOOS, runtime.GOARCH
	r.Machine.CPU = cpuModel()
	r.Machine.NumCPU, r.Machine.GOMAXPROCS = runtime.NumCPU(), runtime.GOMAXPROCS(0)
	r.Broker.Name, r.Broker.Addrs = cfg.brokerName, cfg.brokers
	r.Topic.Messages, r.Topic.Partitions, r.Topic.MessageBytes = cfg.messages, cfg.partitions, cfg.size
	r.Topic.Compression = cfg.compression
	sc := baseSarama()
	r.Sarama.Version = sc.Version.String()
	r.Sarama.FetchDefaultBytes = sc.Consumer.Fetch.Default
	r.Sarama.ChannelBufferSize = sc.ChannelBufferSize
	r.Rounds = cfg.rounds

	baselines := map[string]float64{}
	for i := range results {
		c := &results[i]
		rate := func(r runResult) float64 { return r.MessagesPerSecond }
		c.MedianMessagesPerSecond = median(c.Runs, rate)
		c.MinMessagesPerSecond, c.MaxMessagesPerSecond = spread(c.Runs, rate)
		c.MedianFirstToLast = median(c.Runs, func(r runResult) float64 { return r.FirstToLastMessagesPerSecond })
		c.MedianJoinSeconds = median(c.Runs, func(r runResult) float64 { return r.JoinSeconds })
		c.MedianWallSeconds = median(c.Runs, func(r runResult) float64 { return r.WallSeconds })
		baselines[c.Name] = c.MedianMessagesPerSecond
	}
	for i := range results {
		c := &results[i]
		if b := baselines["sarama"]; b > 0 {
			c.RatioToSarama = c.MedianMessagesPerSecond / b
		}
		if b := baselines["franz"]; b > 0 {
			c.RatioToFranz = c.MedianMessagesPerSecond / b
		}
	}
	r.Contenders = results
	return r
}

// median returns the median of f over runs; with an even count, the mean of the
// middle two.
func median(runs []runResult, f func(runResult) float64) float64 {
	if len(runs) == 0 {
		return 0
	}
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = f(r)
	}
	slices.Sort(v)
	mid := len(v) / 2
	if len(v)%2 == 0 {
		return (v[mid-1] + v[mid]) / 2
	}
	return v[mid]
}

// spread returns the smallest and the largest of f over runs.
func spread(runs []runResult, f func(runResult) float64) (lo, hi float64) {
	for i, r := range runs {
		v := f(r)
		if i == 0 || v < lo {
			lo = v
		}
		if i == 0 || v > hi {
			hi = v
		}
	}
	return lo, hi
}

func (r report) writeMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "machine: %s/%s, %s, %d CPUs, GOMAXPROCS %d, %s\n", r.Machine.OS, r.Machine.Arch, orUnknown(r.Machine.CPU), r.Machine.NumCPU, r.Machine.GOMAXPROCS, r.Go)
	if r.Commit != "" {
		fmt.Fprintf(bw, "creek: %s\n", r.Commit)
	}
	fmt.Fprintf(bw, "broker: %s %v\n", r.Broker.Name, r.Broker.Addrs)
	fmt.Fprintf(bw, "topic: %d messages of %d bytes over %d partitions, %s; sarama %s, fetch %d bytes, channel buffer %d; median of %d interleaved rounds\n",
		r.Topic.Messages, r.Topic.MessageBytes, r.Topic.Partitions, r.Topic.Compression, r.Sarama.Version, r.Sarama.FetchDefaultBytes, r.Sarama.ChannelBufferSize, r.Rounds)
	fmt.Fprintf(bw, "load average (1, 5, 15 min): %s before, %s after\n\n", orUnknownLoad(r.Load.Before), orUnknownLoad(r.Load.After))
	fmt.Fprintln(bw, "| contender | messages/s from assignment (median) | range | x bare sarama | x bare franz | first to last, messages/s (median) | join s (median) | wall s with join (median) | offsets committed |")
	fmt.Fprintln(bw, "|---|---:|---|---:|---:|---:|---:|---:|---|")
	for _, c := range r.Contenders {
		committed := "yes"
		for _, run := range c.Runs {
			if !run.Committed || run.Duplicates != 0 {
				committed = "no"
			}
		}
		fmt.Fprintf(bw, "| %s | %.0f | %.0f-%.0f | %s | %s | %.0f | %.3f | %.3f | %s |\n", c.Name, c.MedianMessagesPerSecond,
			c.MinMessagesPerSecond, c.MaxMessagesPerSecond, ratio(c.RatioToSarama), ratio(c.RatioToFranz),
			c.MedianFirstToLast, c.MedianJoinSeconds, c.MedianWallSeconds, committed)
	}
	return bw.Flush()
}

func (r report) writeJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("results: %w", err)
	}
	return nil
}

// revision returns the VCS revision the binary was built from, noting
// uncommitted changes, or "" when it was built without VCS stamping.
func revision() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return ""
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if modified == "true" {
		rev += " (with uncommitted changes in the tree)"
	}
	return rev
}

// cpuModel returns the processor's model name on Linux, or "".
func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return ""
	}
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func ratio(v float64) string {
	if v <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2f", v)
}

func orUnknownLoad(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// loadAverage returns the one-minute load average and /proc/loadavg's first three
// fields; ok is false where there is no /proc/loadavg.
func loadAverage() (load1 float64, fields string, ok bool) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, "", false
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return 0, "", false
	}
	if _, err := fmt.Sscan(f[0], &load1); err != nil {
		return 0, "", false
	}
	return load1, strings.Join(f[:3], " "), true
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}
