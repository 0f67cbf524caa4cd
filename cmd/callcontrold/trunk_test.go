package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTrunkFlags: the trunk's password comes from a file or the
// environment, never both, and the trunk settings need the sip switch.
func TestTrunkFlags(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "trunk-password")
	if err := os.WriteFile(pw, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sip := []string{"--switch=sip", "--sip-trunk=sip:192.0.2.10:5060"}
	c, err := parseConfig(append(sip, "--sip-trunk-user=acct", "--sip-trunk-password-file="+pw), env{}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if tc := c.trunk.config(); tc == nil || tc.URI != "sip:192.0.2.10:5060" || tc.Username != "acct" || tc.Password != "s3cret" {
		t.Errorf("trunk from a file: %+v", tc)
	}
	c, err = parseConfig(append(sip, "--sip-trunk-user=acct"), env{trunkPasswordEnv: "from-env"}.get, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if tc := c.trunk.config(); tc.Password != "from-env" {
		t.Errorf("trunk password from the environment: %q", tc.Password)
	}
	c, err = parseConfig([]string{"--switch=sip"}, env{}.get, io.Discard)
	if err != nil || c.trunk.config() != nil {
		t.Errorf("no trunk: %v %+v", err, c.trunk.config())
	}

	for _, tt := range []struct {
		name string
		args []string
		env  env
		want string
	}{
		{"trunk needs the sip switch", []string{"--sip-trunk=sip:192.0.2.10"}, nil, "--sip-trunk needs --switch sip"},
		{"user needs a trunk", []string{"--switch=sip", "--sip-trunk-user=acct"}, nil, "need --sip-trunk"},
		{"password needs a user", sip, env{trunkPasswordEnv: "x"}, "needs --sip-trunk-user"},
		{"file and environment", append(sip, "--sip-trunk-user=a", "--sip-trunk-password-file="+pw), env{trunkPasswordEnv: "x"}, "exclusive"},
		{"missing file", append(sip, "--sip-trunk-user=a", "--sip-trunk-password-file="+pw+".missing"), nil, "--sip-trunk-password-file"},
		{"empty file", append(sip, "--sip-trunk-user=a", "--sip-trunk-password-file="+empty), nil, "is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := tt.env
			if e == nil {
				e = env{}
			}
			_, err := parseConfig(tt.args, e.get, io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}
