// Package metrics defines how creek records metrics and provides the backends.
package metrics
