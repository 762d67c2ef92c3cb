package store

import (
	"testing"

	"github.com/creekstream/creek/internal/redistest"
)

func TestMain(m *testing.M) { redistest.Main(m) }
