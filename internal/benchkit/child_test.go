package benchkit

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

const testChildEnv = "BENCHKIT_TEST_CHILD"

// testChild is the child the tests start: it answers "echo X" with
// "X", exits with status 3 on "fail" (after a line on stderr), stops
// answering on "stall", and exits 0 when its stdin closes.
func testChild(role string) int {
	switch role {
	case "flag-help":
		ExitOnFlagError("tool", flag.ErrHelp)
		return 1
	case "flag-error":
		ExitOnFlagError("tool", errors.New("--x must be positive"))
		return 1
	case "flag-ok":
		ExitOnFlagError("tool", nil)
		return 0
	case "echo":
	default:
		return 1
	}
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch cmd := sc.Text(); {
		case strings.HasPrefix(cmd, "echo "):
			fmt.Println(strings.TrimPrefix(cmd, "echo "))
		case cmd == "fail":
			fmt.Fprintln(os.Stderr, "failing as asked")
			return 3
		case cmd == "stall":
			time.Sleep(time.Hour)
		}
	}
	return 0
}

func startTestChild(t *testing.T) *Child {
	t.Helper()
	c, err := StartChild(context.Background(), "test child", testChildEnv+"=echo", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestChildLines(t *testing.T) {
	c := startTestChild(t)
	for _, w := range []string{"ready 42", "done"} {
		if err := c.Send("echo %s", w); err != nil {
			t.Fatal(err)
		}
		if got, err := c.ReadLine(time.Minute); err != nil || got != w {
			t.Fatalf("ReadLine = %q, %v; want %q", got, err, w)
		}
	}
	if c.Pid() <= 0 {
		t.Errorf("Pid = %d", c.Pid())
	}
	if err := c.Finish(time.Minute); err != nil {
		t.Errorf("Finish after stdin closed: %v", err)
	}
}

func TestChildFails(t *testing.T) {
	c := startTestChild(t)
	if err := c.Send("fail"); err != nil {
		t.Fatal(err)
	}
	_, err := c.ReadLine(time.Minute)
	if err == nil || !strings.Contains(err.Error(), "exit status 3") || !strings.Contains(err.Error(), "failing as asked") || !strings.HasPrefix(err.Error(), "test child: ") {
		t.Errorf("ReadLine after the child failed: %v; want its name, exit status and stderr", err)
	}
}

func TestChildStalls(t *testing.T) {
	c := startTestChild(t)
	if err := c.Send("stall"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ReadLine(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "no answer in 100ms: killed") {
		t.Errorf("ReadLine of a stalled child: %v", err)
	}
	c2 := startTestChild(t)
	if err := c2.Send("stall"); err != nil {
		t.Fatal(err)
	}
	if err := c2.Finish(100 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Errorf("Finish of a stalled child: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	b := &TailBuffer{Max: 5}
	fmt.Fprint(b, "abc")
	fmt.Fprint(b, "defg")
	if got := b.String(); got != "cdefg" {
		t.Errorf("TailBuffer = %q, want the last 5 bytes %q", got, "cdefg")
	}
}

func TestParseFlags(t *testing.T) {
	fs := flag.NewFlagSet("tool", flag.ContinueOnError)
	n := fs.Int("n", 1, "a number")
	if err := ParseFlags(fs, []string{"-n", "3"}); err != nil || *n != 3 {
		t.Errorf("-n 3: n = %d, %v", *n, err)
	}
	if err := ParseFlags(fs, []string{"-n", "3", "extra"}); err == nil || !strings.Contains(err.Error(), `unexpected arguments: ["extra"]`) {
		t.Errorf("a positional argument: %v", err)
	}
}

// TestExitOnFlagError runs ExitOnFlagError in a child: help exits 0, an
// error exits 2 with "tool: error" on stderr, no error returns.
func TestExitOnFlagError(t *testing.T) {
	for role, want := range map[string]string{"flag-help": "", "flag-ok": "", "flag-error": "exit status 2"} {
		c, err := StartChild(context.Background(), role, testChildEnv+"="+role, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.ReadLine(time.Minute)
		c.Close()
		switch {
		case want == "" && (err == nil || strings.Contains(err.Error(), "exit status")):
			t.Errorf("%s: %v, want a clean exit", role, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "tool: --x must be positive")):
			t.Errorf("%s: %v, want %s and the error on stderr", role, err, want)
		}
	}
}

// TestChildReadJSON: a line of JSON decodes into the value; a line that
// is not JSON is an error that quotes it.
func TestChildReadJSON(t *testing.T) {
	c := startTestChild(t)
	var v struct{ N int }
	if err := c.Send(`echo {"N": 7}`); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadJSON(10*time.Second, &v); err != nil || v.N != 7 {
		t.Fatalf("ReadJSON: %+v, %v; want N 7", v, err)
	}
	if err := c.Send("echo not json"); err != nil {
		t.Fatal(err)
	}
	if err := c.ReadJSON(10*time.Second, &v); err == nil || !strings.Contains(err.Error(), `"not json"`) {
		t.Fatalf("ReadJSON of a line that is not JSON: %v, want an error quoting it", err)
	}
}
