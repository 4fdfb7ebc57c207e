package mqtt

import (
	"context"
	"log/slog"
)

// clientLog logs for one connection, adding its remote address and, once
// CONNECT was handled, its client identifier. It builds those attributes
// only for records the handler will write: a connection keeps no
// preformatted logger (slog's With) of its own, which would cost every
// idle connection about half a kilobyte.
type clientLog struct{ c *client }

func (l clientLog) log(level slog.Level, msg string, args []any) {
	lg := l.c.srv.log
	ctx := context.Background()
	if !lg.Enabled(ctx, level) {
		return
	}
	attrs := make([]any, 0, len(args)+4)
	attrs = append(attrs, "remote", l.c.conn.RemoteAddr().String())
	if l.c.id != "" {
		attrs = append(attrs, "client", l.c.id)
	}
	lg.Log(ctx, level, msg, append(attrs, args...)...)
}

func (l clientLog) Debug(msg string, args ...any) { l.log(slog.LevelDebug, msg, args) }
func (l clientLog) Info(msg string, args ...any)  { l.log(slog.LevelInfo, msg, args) }
func (l clientLog) Warn(msg string, args ...any)  { l.log(slog.LevelWarn, msg, args) }
func (l clientLog) Error(msg string, args ...any) { l.log(slog.LevelError, msg, args) }
