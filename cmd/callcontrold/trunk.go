package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"callcontrold/pbx/sip"
)

// trunkPasswordEnv holds the trunk's digest password when no file is
// named. It is read from the environment only, never from a flag: a
// flag shows in the process list.
const trunkPasswordEnv = envPrefix + "SIP_TRUNK_PASSWORD"

// trunkFlags are the SIP trunk's settings (--switch sip).
type trunkFlags struct {
	uri          string
	user         string
	passwordFile string
	password     string // from passwordFile or trunkPasswordEnv; never logged
}

func addTrunkFlags(fs *flag.FlagSet, t *trunkFlags) {
	fs.StringVar(&t.uri, "sip-trunk", "", "sip switch: SIP trunk `URI` (sip:host[:port][;transport=udp|tcp]) external numbers go out through; INVITEs from its host's addresses are calls from outside. Empty: external numbers are refused (cause 3)")
	fs.StringVar(&t.user, "sip-trunk-user", "", "sip switch: digest `username` for the trunk's challenges")
	fs.StringVar(&t.passwordFile, "sip-trunk-password-file", "", "sip switch: `file` holding the trunk's digest password (else $"+trunkPasswordEnv+")")
}

// load reads the trunk's password: from the file, or the environment.
func (t *trunkFlags) load(getenv func(string) string) error {
	env := getenv(trunkPasswordEnv)
	if t.passwordFile == "" {
		t.password = env
		return nil
	}
	if env != "" {
		return fmt.Errorf("--sip-trunk-password-file and $%s are exclusive", trunkPasswordEnv)
	}
	data, err := os.ReadFile(t.passwordFile)
	if err != nil {
		return fmt.Errorf("--sip-trunk-password-file: %w", err)
	}
	t.password = strings.TrimRight(string(data), "\r\n")
	if t.password == "" {
		return fmt.Errorf("--sip-trunk-password-file %s is empty", t.passwordFile)
	}
	return nil
}

func (t *trunkFlags) validate(switchKind string) error {
	switch {
	case t.uri == "" && (t.user != "" || t.password != ""):
		return errors.New("--sip-trunk-user and the trunk's password need --sip-trunk")
	case t.uri != "" && switchKind != "sip":
		return errors.New("--sip-trunk needs --switch sip")
	case t.password != "" && t.user == "":
		return errors.New("the trunk's password needs --sip-trunk-user")
	}
	return nil
}

// config is the switch's trunk; nil without --sip-trunk.
func (t *trunkFlags) config() *sip.TrunkConfig {
	if t.uri == "" {
		return nil
	}
	return &sip.TrunkConfig{URI: t.uri, Username: t.user, Password: t.password}
}
