// Package defaults fills in the zero fields of a configuration struct and rejects
// negative ones, with one wording for every package's Config.
package defaults

import (
	"fmt"
	"time"
)

// Number is what a defaulted field holds: a count, a size or a duration.
type Number interface{ ~int | ~int64 }

// Field is one field of a configuration: its name as the user writes it
// ("processor: Config.JoinTimeout"), where it is, and its default.
type Field[T Number] struct {
	Name    string
	Value   *T
	Default T
}

// Duration is a duration field.
type Duration = Field[time.Duration]

// Int is a count or size field.
type Int = Field[int]

// Apply sets every zero Value to its Default and returns an error naming the first
// negative one. A zero Default leaves the field zero, for fields whose default
// depends on another (set it afterwards).
func Apply[T Number](fields ...Field[T]) error {
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

// Durations is Apply for duration fields.
func Durations(fields ...Duration) error { return Apply(fields...) }

// Ints is Apply for count and size fields.
func Ints(fields ...Int) error { return Apply(fields...) }
