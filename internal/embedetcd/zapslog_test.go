package embedetcd

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"go.uber.org/zap"
)

func TestSlogCoreLevelsFieldsAndQuiet(t *testing.T) {
	var buf bytes.Buffer
	core := newSlogCore(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})), zap.WarnLevel)
	lg := zap.New(core).Named("raft").With(zap.String("member", "m1"))
	lg.Info("dropped below warn")
	lg.Warn("slow fdatasync", zap.Duration("took", 2e9))
	lg.Error("lost leader", zap.Int("term", 3))
	lg.Warn("simple token is not cryptographically signed")
	core.quiet()
	lg.Error("closing")

	tests := map[string]string{
		"slow fdatasync": `level=WARN msg="slow fdatasync" logger=raft`,
		"lost leader":    `level=ERROR msg="lost leader" logger=raft`,
		"benign":         `level=DEBUG msg="simple token is not cryptographically signed"`,
		"after quiet":    `level=DEBUG msg=closing`,
	}
	out := buf.String()
	for name, want := range tests {
		if !strings.Contains(out, want) {
			t.Errorf("%s: output lacks %q:\n%s", name, want, out)
		}
	}
	for _, want := range []string{"member=m1", "took=2s", "term=3"} {
		if !strings.Contains(out, want) {
			t.Errorf("fields: output lacks %q", want)
		}
	}
	if strings.Contains(out, "dropped below warn") {
		t.Error("info record was logged")
	}
}
