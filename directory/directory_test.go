package directory

import (
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDemo(t *testing.T) {
	d := Demo()
	if got := len(d.Companies()); got != 2 {
		t.Fatalf("companies: got %d, want 2", got)
	}
	roles := map[string]Role{"admin": RoleAdmin, "sysadmin": RoleSysAdmin, "acme-admin": RoleCompanyAdmin, "alice": RoleUser, "bob": RoleUser}
	for login, role := range roles {
		u, ok := d.UserByToken(HashToken("demo-" + login))
		if !ok || u.Login != login {
			t.Fatalf("UserByToken(demo-%s): got %v, %v; want %s", login, u, ok, login)
		}
		if u.Role != role {
			t.Errorf("%s: role %v, want %v", login, u.Role, role)
		}
	}
	if _, ok := d.UserByToken(HashToken("demo-nobody")); ok {
		t.Error("unknown token found a user")
	}
	if u, _ := d.User("alice"); u.Company != DefaultCompany {
		t.Errorf("alice company %q, want default", u.Company)
	}
	if u, _ := d.User("bob"); u.Company != "acme" {
		t.Errorf("bob company %q, want acme", u.Company)
	}
	if u, _ := d.User("acme-admin"); !slices.Equal(u.Companies, []string{"acme"}) {
		t.Errorf("acme-admin companies %v", u.Companies)
	}
	var bobWebRTC bool
	for _, v := range d.DevicesOwnedBy("bob") {
		bobWebRTC = bobWebRTC || v.WebRTC
	}
	if !bobWebRTC {
		t.Error("bob owns no WebRTC device")
	}
	if got := names(d.DevicesOwnedBy("alice")); !slices.Equal(got, []string{"SIP/201", "SIP/201_2"}) {
		t.Errorf("alice devices %v", got)
	}
	if !slices.IsSortedFunc(d.Devices(), func(a, b *Device) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("Devices not sorted")
	}
	if got := d.ExtensionsOf("SIP/201"); !slices.Equal(got, []string{"201", "600", "610", "620"}) {
		t.Errorf("ExtensionsOf(SIP/201) = %v", got)
	}
	if got := d.ExtensionsOf("Park/701"); !slices.Equal(got, []string{"701"}) {
		t.Errorf("ExtensionsOf(Park/701) = %v", got)
	}
	for _, typ := range []ExtensionType{ExtensionDevice, ExtensionRingAll, ExtensionHunt, ExtensionQueue, ExtensionPark} {
		for _, c := range []string{"default", "acme"} {
			found := false
			for _, x := range d.Extensions() {
				found = found || x.Type == typ && x.Company == c
			}
			if !found {
				t.Errorf("no %v extension in %s", typ, c)
			}
		}
	}
	if d.RingTimeout() != 30*time.Second {
		t.Errorf("ring timeout %v", d.RingTimeout())
	}
	if r := d.ExternalRules(); len(r) == 0 || !r[0].Match("+15550111") || r[0].Action != ActionBusy {
		t.Errorf("external rules %+v", r)
	}
}

func names(ds []*Device) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return out
}

func TestLoad(t *testing.T) {
	p := filepath.Join(t.TempDir(), "dir.yaml")
	if err := os.WriteFile(p, DemoYAML(), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name() != "dir.yaml" {
		t.Errorf("name %q", d.Name())
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}
}

const base = `
companies: [{name: default}, {name: acme}]
users:
  - {id: 1, login: ann, role: user, company: default}
  - {id: 7, login: ca, role: company-admin, company: acme, companies: [acme]}
devices:
  - {name: SIP/201, company: default, owner: ann, extension: "201"}
  - {name: SIP/webrtc1, company: default, owner: ann, webrtc: true}
  - {name: Park/701, company: default}
  - {name: Queue/q_600, company: default}
extensions:
  - {number: "201", company: default, type: device, members: [SIP/201]}
  - {number: "701", company: default, type: park}
  - {number: "600", company: default, type: queue, members: [SIP/201]}
`

func TestParseValid(t *testing.T) {
	if _, err := Parse([]byte(base), "t.yaml"); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, `t.yaml: empty directory file`},
		{"syntax", `companies: [`, `t.yaml: yaml:`},
		{"unknown key", base + "\nfoo: 1\n", `field foo not found`},
		{"no companies", `users: []`, `t.yaml: no companies defined`},
		{"dup company", `companies: [{name: a}, {name: a}]`, `t.yaml: company "a": duplicate name (also defined at index 0)`},
		{"bad ring timeout", base + "ring_timeout: soon\n", `t.yaml: ring_timeout: "soon" is not a positive duration`},
		{"bad role", strings.Replace(base, "role: user", "role: boss", 1), `t.yaml: user "ann": bad role "boss"`},
		{"user unknown company", strings.Replace(base, "role: user, company: default", "role: user, company: nope", 1), `t.yaml: user "ann": unknown company "nope"`},
		{"company-admin without companies", strings.Replace(base, "companies: [acme]", "companies: []", 1), `t.yaml: user "ca": company-admin without companies`},
		{"user companies not admin", strings.Replace(base, "role: user, company: default", "role: user, company: default, companies: [acme]", 1), `t.yaml: user "ann": companies are only for company-admin`},
		{"dup login", strings.Replace(base, "login: ca", "login: ann", 1), `t.yaml: user "ann": duplicate login (also defined at index 0)`},
		{"dup id", strings.Replace(base, "id: 7", "id: 1", 1), `t.yaml: user "ca": duplicate id 1`},
		{"missing id", strings.Replace(base, "id: 7, ", "", 1), `t.yaml: user "ca": id must be a positive integer`},
		{"bad token hex", strings.Replace(base, "company: default}", "company: default, token_sha256: [xyz]}", 1), `t.yaml: user "ann": token_sha256[0]: want 64 hex digits`},
		{"short token", strings.Replace(base, "company: default}", "company: default, token_sha256: [abcd]}", 1), `t.yaml: user "ann": token_sha256[0]: want 64 hex digits`},
		{"dup token", strings.Replace(strings.Replace(base, "company: default}", "company: default, token_sha256: ["+strings.Repeat("ab", 32)+"]}", 1), "companies: [acme]}", "companies: [acme], token_sha256: ["+strings.Repeat("ab", 32)+"]}", 1), `t.yaml: user "ca": token_sha256[0]: same token as user at index 0`},
		{"missing login", strings.Replace(base, "login: ca, ", "", 1), `t.yaml: user #1: missing login`},
		{"device unknown company", strings.Replace(base, "{name: SIP/201, company: default", "{name: SIP/201, company: zzz", 1), `t.yaml: device "SIP/201": unknown company "zzz"`},
		{"device owner missing", strings.Replace(base, "owner: ann, extension", "owner: nobody, extension", 1), `t.yaml: device "SIP/201": owner "nobody" does not exist`},
		{"dup device", strings.Replace(base, "SIP/webrtc1, company: default, owner: ann, webrtc: true", "SIP/201, company: default", 1), `t.yaml: device "SIP/201": duplicate name (also defined at index 0)`},
		{"webrtc wrong name", strings.Replace(base, "SIP/webrtc1,", "SIP/webrtc2,", 1), `t.yaml: device "SIP/webrtc2": webrtc device of ann (id 1) must be named "SIP/webrtc1"`},
		{"webrtc no owner", strings.Replace(base, "owner: ann, webrtc", "webrtc", 1), `t.yaml: device "SIP/webrtc1": webrtc device needs an owner`},
		{"webrtc name reserved", strings.Replace(base, ", webrtc: true", "", 1), `t.yaml: device "SIP/webrtc1": SIP/webrtc<id> names are reserved`},
		{"bad device prefix", strings.Replace(base, "{name: Park/701,", "{name: Foo/1,", 1), `t.yaml: device "Foo/1": name must start with SIP/, Park/ or Queue/q_`},
		{"bad feature", strings.Replace(base, "owner: ann, extension", "owner: ann, features: [fly], extension", 1), `t.yaml: device "SIP/201": unknown feature "fly"`},
		{"device missing name", strings.Replace(base, "{name: SIP/201, ", "{", 1), `t.yaml: device #0: missing name`},
		{"device ext undefined", strings.Replace(base, `owner: ann, extension: "201"`, `owner: ann, extension: "299"`, 1), `t.yaml: device "SIP/201": extension "299" is not defined`},
		{"dup extension", strings.Replace(base, `{number: "701"`, `{number: "201"`, 1), `t.yaml: extension "201": duplicate number (also defined at index 0)`},
		{"extension unknown company", strings.Replace(base, `{number: "201", company: default`, `{number: "201", company: zz`, 1), `t.yaml: extension "201": unknown company "zz"`},
		{"extension bad type", strings.Replace(base, "type: device", "type: ivr", 1), `t.yaml: extension "201": bad type "ivr"`},
		{"extension member unknown", strings.Replace(base, "members: [SIP/201]}\n  - {number: \"701\"", "members: [SIP/999]}\n  - {number: \"701\"", 1), `t.yaml: extension "201": member device "SIP/999" is unknown`},
		{"extension bad number", strings.Replace(base, `{number: "701"`, `{number: "7x1"`, 1), `t.yaml: extension "7x1": number must be 2 to 8 digits`},
		{"queue without device", strings.Replace(base, "{name: Queue/q_600, company: default}", "{name: Queue/q_601, company: default}", 1), `t.yaml: extension "600": needs device "Queue/q_600"`},
		{"park with members", strings.Replace(base, "type: park}", "type: park, members: [SIP/201]}", 1), `t.yaml: extension "701": a park orbit has no members`},
		{"device ext two members", strings.Replace(base, "type: device, members: [SIP/201]", "type: device, members: [SIP/201, SIP/webrtc1]", 1), `t.yaml: extension "201": a device extension has exactly one member, got 2`},
		{"rule bad behaviour", base + "external: [{pattern: '+1*', behaviour: dance}]\n", `t.yaml: external rule "+1*": bad behaviour "dance"`},
		{"rule bad pattern", base + "external: [{pattern: '[', behaviour: busy}]\n", `t.yaml: external rule "[": bad pattern`},
		{"rule cause not reject", base + "external: [{pattern: '1*', behaviour: busy, cause: 17}]\n", `t.yaml: external rule "1*": cause is only for behaviour reject`},
		{"rule bad delay", base + "external: [{pattern: '1*', behaviour: answer, answer_delay: x}]\n", `t.yaml: external rule "1*": answer_delay "x" is not a duration`},
		{"two documents", base + "---\ncompanies: []\n", `t.yaml: more than one YAML document`},
		{"sip no ha1", withSIP("{}"), `t.yaml: device "SIP/201": sip needs ha1_md5 or ha1_sha256`},
		{"sip bad md5", withSIP("{ha1_md5: secret}"), `t.yaml: device "SIP/201": sip.ha1_md5: want 32 hex digits, got 6 characters`},
		{"sip bad sha256", withSIP("{ha1_sha256: " + strings.Repeat("ab", 16) + "}"), `t.yaml: device "SIP/201": sip.ha1_sha256: want 64 hex digits`},
		{"sip bad username", withSIP("{username: 'a b', ha1_md5: " + md5hex + "}"), `t.yaml: device "SIP/201": sip.username "a b" must be`},
		{"sip bad realm", withSIP("{realm: 'a\"b', ha1_md5: " + md5hex + "}"), `t.yaml: device "SIP/201": sip.realm`},
		{"sip bad file realm", base + "sip_realm: '\"'\n", `t.yaml: sip_realm:`},
		{"sip max registrations", withSIP("{ha1_md5: " + md5hex + ", max_registrations: 99}"), `t.yaml: device "SIP/201": sip.max_registrations: 99 is not between 1 and 32`},
		{"sip max dialogs", withSIP("{ha1_md5: " + md5hex + ", max_dialogs: -1}"), `t.yaml: device "SIP/201": sip.max_dialogs: -1 is not between 1 and 64`},
		{"sip remote answer", withSIP("{ha1_md5: " + md5hex + ", remote_answer: true}"), `t.yaml: device "SIP/201": sip.remote_answer "true" must be talk-event or none`},
		{"sip unknown key", withSIP("{ha1_md5: " + md5hex + ", password: x}"), `field password not found`},
		{"sip on park", strings.Replace(base, "{name: Park/701, company: default}", "{name: Park/701, company: default, sip: {ha1_md5: "+md5hex+"}}", 1), `t.yaml: device "Park/701": only SIP devices have sip credentials`},
		{"sip dup username", strings.Replace(withSIP("{ha1_md5: "+md5hex+"}"), "webrtc: true}", "webrtc: true, sip: {username: '201', ha1_md5: "+md5hex+"}}", 1), `t.yaml: device "SIP/webrtc1": sip.username "201" is also the username of device at index 0`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml), "t.yaml")
			if err == nil {
				t.Fatalf("got no error, want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "t.yaml: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

var md5hex = strings.Repeat("0f", 16)

// withSIP gives base's SIP/201 a sip block.
func withSIP(block string) string {
	return strings.Replace(base, `owner: ann, extension: "201"}`, `owner: ann, extension: "201", sip: `+block+`}`, 1)
}

func TestSIPAccounts(t *testing.T) {
	d := Demo()
	for _, name := range []string{"SIP/201", "SIP/201_2", "SIP/202", "SIP/203", "SIP/302", "SIP/303"} {
		v, _ := d.Device(name)
		a := v.SIP
		if a == nil {
			t.Fatalf("%s has no SIP account", name)
		}
		user := strings.TrimPrefix(name, "SIP/")
		// The demo's documented password is demo-sip-<username>.
		if a.Username != user || a.Realm != "callcontrold" || hex.EncodeToString(a.HA1MD5) != SIPHA1MD5(user, "callcontrold", "demo-sip-"+user) {
			t.Errorf("%s: account %v does not match the documented demo password", name, a)
		}
		if a.MaxRegistrations != DefaultMaxRegistrations || a.MaxDialogs != DefaultMaxDialogs || a.RemoteAnswer != RemoteAnswerNone {
			t.Errorf("%s: limits %d/%d remote answer %v", name, a.MaxRegistrations, a.MaxDialogs, a.RemoteAnswer)
		}
		if got, ok := d.DeviceBySIPUser(user); !ok || got != v {
			t.Errorf("DeviceBySIPUser(%s) = %v, %v", user, got, ok)
		}
	}
	if v, _ := d.Device("Park/701"); v.SIP != nil {
		t.Error("park orbit has a SIP account")
	}
	if _, ok := d.DeviceBySIPUser("webrtc11"); ok {
		t.Error("webrtc11 has a SIP account")
	}

	y := withSIP("{username: alice, realm: pbx.example, ha1_sha256: " + SIPHA1SHA256("alice", "pbx.example", "pw") + ", remote_answer: talk-event, max_registrations: 1, max_dialogs: 2}")
	d, err := Parse([]byte(y), "t.yaml")
	if err != nil {
		t.Fatal(err)
	}
	v, ok := d.DeviceBySIPUser("alice")
	if !ok || v.Name != "SIP/201" {
		t.Fatalf("DeviceBySIPUser(alice) = %v, %v", v, ok)
	}
	a := v.SIP
	if a.HA1MD5 != nil || len(a.HA1SHA256) != 32 || a.RemoteAnswer != RemoteAnswerTalkEvent || a.MaxRegistrations != 1 || a.MaxDialogs != 2 || a.Realm != "pbx.example" {
		t.Errorf("account %#v: %d %d", a, a.MaxRegistrations, a.MaxDialogs)
	}
	// No way of printing an account shows its HA1.
	secret := hex.EncodeToString(a.HA1SHA256)
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("x", "account", *a)
	for _, out := range []string{fmt.Sprint(a), fmt.Sprintf("%v %+v %#v %s", *a, *a, *a, a), logged.String()} {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprint(a.HA1SHA256[:4])) {
			t.Errorf("HA1 printed: %s", out)
		}
		if !strings.Contains(out, "alice") {
			t.Errorf("username not printed: %s", out)
		}
	}
	if d.SIPRealm() != DefaultSIPRealm {
		t.Errorf("default realm %q", d.SIPRealm())
	}
}

func FuzzParse(f *testing.F) {
	f.Add(DemoYAML())
	f.Add([]byte(base))
	f.Add([]byte(``))
	f.Add([]byte(`companies: [{name: a}]`))
	f.Add([]byte("users: [{id: 1, login: x, role: admin, token_sha256: [00]}]"))
	f.Add([]byte("companies: [{name: a}]\ndevices: [{name: SIP/webrtc1, company: a, webrtc: true}]"))
	f.Add([]byte(withSIP("{username: u, realm: r, ha1_md5: " + md5hex + ", max_dialogs: 2}")))
	f.Add([]byte("sip_realm: x\ncompanies: [{name: a}]\ndevices: [{name: SIP/1, company: a, sip: {ha1_sha256: " + strings.Repeat("0", 64) + "}}]"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yaml: ") {
				t.Fatalf("error does not name the file: %q", err)
			}
			return
		}
		// A directory that loaded is internally consistent.
		for _, v := range d.Devices() {
			if _, ok := d.Company(v.Company); !ok {
				t.Fatalf("device %s: unknown company", v.Name)
			}
			if v.Owner != "" {
				if _, ok := d.User(v.Owner); !ok {
					t.Fatalf("device %s: unknown owner", v.Name)
				}
			}
		}
		for _, v := range d.Devices() {
			if a := v.SIP; a != nil {
				if got, ok := d.DeviceBySIPUser(a.Username); !ok || got != v {
					t.Fatalf("device %s: SIP username %q does not find it", v.Name, a.Username)
				}
				if a.HA1MD5 == nil && a.HA1SHA256 == nil || a.MaxRegistrations < 1 || a.MaxDialogs < 1 {
					t.Fatalf("device %s: incomplete SIP account", v.Name)
				}
			}
		}
		for _, x := range d.Extensions() {
			for _, m := range x.Members {
				if _, ok := d.Device(m); !ok {
					t.Fatalf("extension %s: unknown member", x.Number)
				}
			}
		}
	})
}
