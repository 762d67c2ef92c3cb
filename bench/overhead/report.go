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

// runResult is one contender's figures for one run.
type runResult struct {
	Round int `json:"round"`
	// MessagesPerSecond counts from the first message handled to the last.
	MessagesPerSecond float64 `json:"messages_per_second"`
	Seconds           float64 `json:"seconds"`
	// WallSeconds also counts connecting and joining the group.
	WallSeconds float64 `json:"wall_seconds"`
	// StopSeconds is the time from the last message to the contender having shut
	// down, final commit included.
	StopSeconds float64 `json:"stop_seconds"`
	// Duplicates are messages handled more than once.
	Duplicates int64 `json:"duplicates"`
	// Committed reports whether the group's committed offsets reached the end of
	// every partition after the run.
	Committed bool `json:"committed"`
}

// contenderResult is one contender's runs and their medians.
type contenderResult struct {
	Name                    string      `json:"name"`
	MedianMessagesPerSecond float64     `json:"median_messages_per_second"`
	MedianWallSeconds       float64     `json:"median_wall_seconds"`
	RatioToSarama           float64     `json:"ratio_to_sarama,omitempty"`
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
		ProduceSeconds float64 `json:"produce_seconds"`
	} `json:"topic"`
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
	sc := baseSarama()
	r.Sarama.Version = sc.Version.String()
	r.Sarama.FetchDefaultBytes = sc.Consumer.Fetch.Default
	r.Sarama.ChannelBufferSize = sc.ChannelBufferSize
	r.Rounds = cfg.rounds

	var baseline float64
	for i := range results {
		c := &results[i]
		c.MedianMessagesPerSecond = median(c.Runs, func(r runResult) float64 { return r.MessagesPerSecond })
		c.MedianWallSeconds = median(c.Runs, func(r runResult) float64 { return r.WallSeconds })
		if c.Name == "sarama" {
			baseline = c.MedianMessagesPerSecond
		}
	}
	if baseline > 0 {
		for i := range results {
			results[i].RatioToSarama = results[i].MedianMessagesPerSecond / baseline
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

func (r report) writeMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "machine: %s/%s, %s, %d CPUs, GOMAXPROCS %d, %s\n", r.Machine.OS, r.Machine.Arch, orUnknown(r.Machine.CPU), r.Machine.NumCPU, r.Machine.GOMAXPROCS, r.Go)
	if r.Commit != "" {
		fmt.Fprintf(bw, "creek: %s\n", r.Commit)
	}
	fmt.Fprintf(bw, "broker: %s %v\n", r.Broker.Name, r.Broker.Addrs)
	fmt.Fprintf(bw, "topic: %d messages of %d bytes over %d partitions; sarama %s, fetch %d bytes, channel buffer %d; median of %d interleaved rounds\n\n",
		r.Topic.Messages, r.Topic.MessageBytes, r.Topic.Partitions, r.Sarama.Version, r.Sarama.FetchDefaultBytes, r.Sarama.ChannelBufferSize, r.Rounds)
	fmt.Fprintln(bw, "| contender | messages/s (median) | ratio to sarama | runs, messages/s | wall s with join (median) | offsets committed |")
	fmt.Fprintln(bw, "|---|---:|---:|---|---:|---|")
	for _, c := range r.Contenders {
		runs := make([]string, len(c.Runs))
		committed := "yes"
		for i, run := range c.Runs {
			runs[i] = fmt.Sprintf("%.0f", run.MessagesPerSecond)
			if !run.Committed {
				committed = "no"
			}
		}
		ratio := "n/a"
		if c.RatioToSarama > 0 {
			ratio = fmt.Sprintf("%.2f", c.RatioToSarama)
		}
		fmt.Fprintf(bw, "| %s | %.0f | %s | %s | %.2f | %s |\n", c.Name, c.MedianMessagesPerSecond, ratio, strings.Join(runs, ", "), c.MedianWallSeconds, committed)
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

func orUnknown(s string) string {
	if s == "" {
		return "unknown CPU"
	}
	return s
}
