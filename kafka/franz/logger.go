package franz

// zapLogger is stateless beyond the *zap.Logger it wraps; kgo calls it from any of
// its goroutines, which zap allows.

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger adapts a *zap.Logger to kgo.Logger.
type zapLogger struct{ l *zap.Logger }

func (z zapLogger) Level() kgo.LogLevel {
	core := z.l.Core()
	switch {
	case core.Enabled(zapcore.DebugLevel):
		return kgo.LogLevelDebug
	case core.Enabled(zapcore.InfoLevel):
		return kgo.LogLevelInfo
	case core.Enabled(zapcore.WarnLevel):
		return kgo.LogLevelWarn
	case core.Enabled(zapcore.ErrorLevel):
		return kgo.LogLevelError
	default:
		return kgo.LogLevelNone
	}
}

func (z zapLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	var lvl zapcore.Level
	switch level {
	case kgo.LogLevelError:
		lvl = zapcore.ErrorLevel
	case kgo.LogLevelWarn:
		lvl = zapcore.WarnLevel
	case kgo.LogLevelInfo:
		lvl = zapcore.InfoLevel
	case kgo.LogLevelDebug:
		lvl = zapcore.DebugLevel
	default:
		return
	}
	ce := z.l.Check(lvl, msg)
	if ce == nil {
		return
	}
	fields := make([]zap.Field, 0, len(keyvals)/2+1)
	for i := 0; i+1 < len(keyvals); i += 2 {
		key, ok := keyvals[i].(string)
		if !ok {
			key = "key"
		}
		fields = append(fields, zap.Any(key, keyvals[i+1]))
	}
	if len(keyvals)%2 == 1 {
		fields = append(fields, zap.Any("extra", keyvals[len(keyvals)-1]))
	}
	ce.Write(fields...)
}
