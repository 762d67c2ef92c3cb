// Package defaults fills in the zero durations of a configuration struct and
// rejects negative ones, with one wording for every package's Config.
package defaults

import (
	"fmt"
	"time"
)

// Duration is one duration field of a configuration: its name as the user writes it
// (Config.JoinTimeout), where it is, and its default.
type Duration struct {
	Name    string
	Value   *time.Duration
	Default time.Duration
}

// Durations sets every zero Value to its Default and returns an error naming the
// first negative one. A zero Default leaves the field zero, for fields whose
// default depends on another (set it afterwards).
func Durations(fields ...Duration) error {
	for _, f := range fields {
		switch {
		case *f.Value < 0 && f.Default > 0:
			return fmt.Errorf("%s is %v; set it > 0, or leave it 0 for %v", f.Name, *f.Value, f.Default)
		case *f.Value < 0:
			return fmt.Errorf("%s is %v; set it > 0, or leave it 0 for the default", f.Name, *f.Value)
		case *f.Value == 0:
			*f.Value = f.Default
		}
	}
	return nil
}
