package state

import (
	"errors"
	"fmt"
	"path/filepath"

	"github.com/lovoo/goka/storage"
	"go.uber.org/zap"

	"github.com/creekstream/creek/metrics"
)

// DefaultMaxInFlight is Config.MaxInFlight's default. It stays below franz-go's
// default buffer of 10,000 records, so that a changelog write never waits for room.
const DefaultMaxInFlight = 5000

// Config configures a keyed state. Name, Changelog and Codec (except for Count) are
// required, and Dir unless Storage is given.
type Config[V any] struct {
	// Name names the state in logs, metrics and the directories of its stores.
	Name string
	// Changelog is where every change goes and what the stores are restored from;
	// its partition p belongs to input partition p. NewKafkaChangelog makes one on
	// a compacted topic.
	Changelog Changelog
	// Codec encodes the values. Count defaults it to Int64.
	Codec Codec[V]
	// Dir is the directory under which each assigned partition keeps its LevelDB
	// store, in Name.<partition>. Give each member its own.
	Dir string
	// Storage builds the store of a partition instead of LevelDB in Dir, such as
	// goka's storage.MemoryBuilder() in tests. It is called with Name and the
	// partition.
	Storage storage.Builder
	// MaxInFlight is how many messages may wait for their changelog writes before
	// the step rejects more; DefaultMaxInFlight when zero.
	MaxInFlight int
	// Table, if set, gives reads of the current values from outside the pipeline
	// (see Table).
	Table *Table[V]
	// Logger and Metrics report restores and replays; they default to discarding.
	Logger  *zap.Logger
	Metrics metrics.Metrics
	// ReapplyReplayed turns off the offset check: messages delivered again after a
	// crash are applied again instead of skipped, as at-least-once state would. It
	// exists so that tests can show the overcount the check prevents.
	ReapplyReplayed bool
}

// resolved returns c with its defaults, or an error naming what to fix.
func (c Config[V]) resolved() (Config[V], error) {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("no Name: name the state"))
	}
	if c.Changelog == nil {
		errs = append(errs, errors.New("no Changelog: give the changelog (NewKafkaChangelog) the state is kept in"))
	}
	if c.Codec == nil {
		errs = append(errs, errors.New("no Codec: give the codec of the values, such as state.JSON"))
	}
	if c.Storage == nil {
		if c.Dir == "" {
			errs = append(errs, errors.New("no Dir and no Storage: give the directory of the LevelDB stores, or a storage.Builder"))
		} else {
			c.Storage = storage.DefaultBuilder(filepath.Clean(c.Dir))
		}
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, fmt.Errorf("negative MaxInFlight %d: give a positive limit, or 0 for %d", c.MaxInFlight, DefaultMaxInFlight))
	} else if c.MaxInFlight == 0 {
		c.MaxInFlight = DefaultMaxInFlight
	}
	if c.Logger == nil {
		c.Logger = zap.NewNop()
	}
	if c.Metrics == nil {
		c.Metrics = metrics.Noop{}
	}
	if err := errors.Join(errs...); err != nil {
		return c, fmt.Errorf("state: %s: %w", c.Name, err)
	}
	return c, nil
}
