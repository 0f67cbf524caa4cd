package benchkit

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the test child (child_test.go) when the test binary is
// re-executed as one, and the tests otherwise.
func TestMain(m *testing.M) {
	if role := os.Getenv(testChildEnv); role != "" {
		os.Exit(testChild(role))
	}
	goleak.VerifyTestMain(m)
}

func TestChecks(t *testing.T) {
	var cs Checks
	if !cs.AllMet() {
		t.Error("no targets: AllMet false, want true")
	}
	cs.Add("rate", 0.9, ">=", 0.9)
	cs.Add("p99 (ms)", 2.5, "<=", 2)
	cs.Add("dropped", 0, "<=", 0)
	want := []bool{true, false, true}
	for i, c := range cs {
		if c.Met != want[i] {
			t.Errorf("%s %g %s %g: met %v, want %v", c.Name, c.Value, c.Op, c.Target, c.Met, want[i])
		}
	}
	if cs.AllMet() {
		t.Error("one target missed: AllMet true, want false")
	}
	var b bytes.Buffer
	cs.WriteTable(&b)
	got := b.String()
	for _, line := range []string{
		"target    value  target  result  ",
		"rate      0.9    >= 0.9  met     ",
		"p99 (ms)  2.5    <= 2    MISSED  ",
		"dropped   0      <= 0    met     ",
	} {
		if !strings.Contains(got, line+"\n") {
			t.Errorf("table has no line %q:\n%s", line, got)
		}
	}
}

func TestRound3(t *testing.T) {
	for _, c := range []struct{ in, want float64 }{{1.23449, 1.234}, {1.2345, 1.235}, {0, 0}, {12000.0004, 12000}} {
		if got := Round3(c.in); got != c.want {
			t.Errorf("Round3(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{0.7}, 0.7}, {[]float64{0.9, 0.1, 0.5}, 0.5}, {[]float64{0.8, 0.6, 0.1, 2}, 0.7}, {[]float64{1, 2}, 1.5}} {
		in := slices.Clone(c.in)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		if !slices.Equal(in, c.in) {
			t.Errorf("Median reordered its argument: %v, was %v", c.in, in)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	file := filepath.Join(t.TempDir(), "out.json")
	var b bytes.Buffer
	b.WriteString("table\n")
	if err := WriteJSON(&b, map[string]int{"a": 1}, file); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"a\": 1\n}\n"
	if got := b.String(); got != "table\n\n"+want {
		t.Errorf("output %q, want the table, a blank line and %q", got, want)
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("file %q, want %q", got, want)
	}
	if err := WriteJSON(&b, func() {}, ""); err == nil {
		t.Error("a func as summary: no error")
	}
}

func TestMachine(t *testing.T) {
	m := ReadMachine()
	m.LoadAfter = LoadAvg()
	if m.NumCPU < 1 || m.GOMAXPROCS < 1 || m.Go == "" {
		t.Errorf("ReadMachine() = %+v", m)
	}
	if _, err := os.Stat("/proc/loadavg"); err == nil {
		if !regexp.MustCompile(`^[0-9.]+ [0-9.]+ [0-9.]+$`).MatchString(m.LoadBefore) {
			t.Errorf("LoadAvg() = %q, want three numbers", m.LoadBefore)
		}
	}
	line := m.Line("tool", 1.25)
	if !strings.HasPrefix(line, "tool: ") || !strings.Contains(line, "load average "+m.LoadBefore+" → ") || !strings.HasSuffix(line, "; 1.2s") {
		t.Errorf("Line() = %q", line)
	}
}
