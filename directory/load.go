package directory

import (
	"bytes"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultRingTimeout is how long a call rings before it ends with cause 19
// when the file does not say.
const DefaultRingTimeout = 30 * time.Second

// maxFileSize bounds what Parse accepts: a directory is configuration, and
// YAML decoding of hostile input grows with its size.
const maxFileSize = 8 << 20

//go:embed demo.yaml
var demoYAML []byte

// Action is what an external number does with a call to it (the
// simulated switch's far end).
type Action uint8

// The actions.
const (
	ActionUnspecified Action = iota
	ActionAnswer             // ring, then answer after the delay
	ActionBusy               // busy at once (cause 17)
	ActionNoAnswer           // ring until the ring timeout (cause 19)
	ActionReject             // ring, then reject after the delay with the cause
	ActionManual             // ring until driven through the simulator
)

var actionNames = [...]string{"unspecified", "answer", "busy", "no-answer", "reject", "manual"}

// String returns the action as written in the directory file.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return "invalid"
}

// ParseAction reads an action as written in the directory file.
func ParseAction(s string) (Action, bool) {
	for i, n := range actionNames {
		if i > 0 && n == s {
			return Action(i), true
		}
	}
	return ActionUnspecified, false
}

// Behaviour is how an external number handles calls to it.
type Behaviour struct {
	Action      Action
	AnswerDelay time.Duration // ringing time before answer or reject
	Cause       int32         // Q.850 cause for ActionReject; 0 means 21
}

// ExternalRule gives the behaviour of the external numbers matching
// Pattern (path.Match syntax: "*" any digits, "?" one digit).
type ExternalRule struct {
	Pattern string
	Behaviour
}

// Match reports whether number matches the rule's pattern.
func (r ExternalRule) Match(number string) bool {
	ok, err := path.Match(r.Pattern, number)
	return err == nil && ok
}

// Directory is a loaded, validated directory. It is never modified after
// loading, so its methods are safe for concurrent use; returned pointers
// and slices must not be modified by callers.
type Directory struct {
	name        string
	companies   []*Company
	companyBy   map[string]*Company
	users       []*User
	userBy      map[string]*User
	userByToken map[TokenHash]*User
	devices     []*Device // sorted by name
	deviceBy    map[string]*Device
	ownedBy     map[string][]*Device
	extensions  []*Extension // sorted by number
	extBy       map[string]*Extension
	extsOf      map[string][]string
	external    []ExternalRule
	ringTimeout time.Duration
	sipRealm    string

	deviceBySIPUser map[string]*Device
}

// Name is the file name the directory was loaded from ("demo.yaml" for
// the demo directory).
func (d *Directory) Name() string { return d.name }

// Company returns the company with that name.
func (d *Directory) Company(name string) (*Company, bool) { c, ok := d.companyBy[name]; return c, ok }

// Companies returns every company in file order.
func (d *Directory) Companies() []*Company { return d.companies }

// User returns the user with that login.
func (d *Directory) User(login string) (*User, bool) { u, ok := d.userBy[login]; return u, ok }

// UserByToken returns the user holding a token with that hash. The map
// lookup is not constant-time; callers that care compare the hash again
// with subtle.ConstantTimeCompare.
func (d *Directory) UserByToken(h TokenHash) (*User, bool) { u, ok := d.userByToken[h]; return u, ok }

// Users returns every user in file order.
func (d *Directory) Users() []*User { return d.users }

// Device returns the device with that name.
func (d *Directory) Device(name string) (*Device, bool) { v, ok := d.deviceBy[name]; return v, ok }

// Devices returns every device, sorted by name.
func (d *Directory) Devices() []*Device { return d.devices }

// DevicesOwnedBy returns the devices owned by a login, sorted by name.
func (d *Directory) DevicesOwnedBy(login string) []*Device { return d.ownedBy[login] }

// Extension returns the extension with that number.
func (d *Directory) Extension(number string) (*Extension, bool) {
	e, ok := d.extBy[number]
	return e, ok
}

// Extensions returns every extension, sorted by number.
func (d *Directory) Extensions() []*Extension { return d.extensions }

// ExtensionsOf returns the numbers of the extensions that ring a device
// (as a member, or as the park orbit or queue the device is), sorted.
func (d *Directory) ExtensionsOf(device string) []string { return d.extsOf[device] }

// ExternalRules returns the far-end rules for external numbers, in file
// order: the first match wins.
func (d *Directory) ExternalRules() []ExternalRule { return d.external }

// DeviceBySIPUser returns the device whose SIP account has that digest
// username.
func (d *Directory) DeviceBySIPUser(username string) (*Device, bool) {
	v, ok := d.deviceBySIPUser[username]
	return v, ok
}

// SIPRealm is the default digest realm of the file's SIP accounts.
func (d *Directory) SIPRealm() string { return d.sipRealm }

// RingTimeout is how long a call rings unanswered before it ends.
func (d *Directory) RingTimeout() time.Duration { return d.ringTimeout }

// Demo returns the embedded demo directory (see demo.yaml). Its tokens
// are public ("demo-<login>"): never serve it on a public address.
func Demo() *Directory {
	d, err := Parse(demoYAML, "demo.yaml")
	if err != nil {
		// The file is embedded and covered by tests: failing here is a
		// build defect, not a runtime condition.
		panic(err)
	}
	return d
}

// DemoYAML returns the embedded demo directory file, a starting point
// for a real one.
func DemoYAML() []byte { return bytes.Clone(demoYAML) }

// Load reads and validates a directory file. Errors name the file.
func Load(file string) (*Directory, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err // *PathError already names the file
	}
	return Parse(data, filepath.Base(file))
}

// The file format. Field names are the YAML keys; see demo.yaml.
type fileSchema struct {
	RingTimeout string         `yaml:"ring_timeout"`
	SIPRealm    string         `yaml:"sip_realm"`
	Companies   []companyEntry `yaml:"companies"`
	Users       []userEntry    `yaml:"users"`
	Devices     []deviceEntry  `yaml:"devices"`
	Extensions  []extEntry     `yaml:"extensions"`
	External    []ruleEntry    `yaml:"external"`
}

type companyEntry struct {
	Name        string `yaml:"name"`
	DisplayName string `yaml:"display_name"`
}

type userEntry struct {
	ID          int64    `yaml:"id"`
	Login       string   `yaml:"login"`
	Name        string   `yaml:"name"`
	Role        string   `yaml:"role"`
	Company     string   `yaml:"company"`
	Companies   []string `yaml:"companies"`
	TokenSHA256 []string `yaml:"token_sha256"`
}

type deviceEntry struct {
	Name        string    `yaml:"name"`
	DisplayName string    `yaml:"display_name"`
	Company     string    `yaml:"company"`
	Owner       string    `yaml:"owner"`
	WebRTC      bool      `yaml:"webrtc"`
	Features    []string  `yaml:"features"`
	Extension   string    `yaml:"extension"`
	SIP         *sipEntry `yaml:"sip"`
	Mailbox     struct {
		New int32 `yaml:"new"`
		Old int32 `yaml:"old"`
	} `yaml:"mailbox"`
}

type extEntry struct {
	Number  string   `yaml:"number"`
	Company string   `yaml:"company"`
	Name    string   `yaml:"name"`
	Type    string   `yaml:"type"`
	Members []string `yaml:"members"`
}

type ruleEntry struct {
	Pattern     string `yaml:"pattern"`
	Behaviour   string `yaml:"behaviour"`
	AnswerDelay string `yaml:"answer_delay"`
	Cause       int32  `yaml:"cause"`
}

var extTypeNames = map[string]ExtensionType{
	"device":   ExtensionDevice,
	"ring-all": ExtensionRingAll,
	"hunt":     ExtensionHunt,
	"queue":    ExtensionQueue,
	"park":     ExtensionPark,
}

// String returns the extension type as written in the directory file.
func (t ExtensionType) String() string {
	for n, v := range extTypeNames {
		if v == t {
			return n
		}
	}
	return "unspecified"
}

// Parse reads and validates a directory from YAML. name (the file name)
// prefixes every error so that an operator knows which file to fix.
func Parse(data []byte, name string) (*Directory, error) {
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("%s: file larger than %d bytes", name, maxFileSize)
	}
	var f fileSchema
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // a misspelt key is an error, not a silent default
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%s: empty directory file", name)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%s: more than one YAML document", name)
	}
	b := &builder{name: name, d: &Directory{
		name:        name,
		companyBy:   map[string]*Company{},
		userBy:      map[string]*User{},
		userByToken: map[TokenHash]*User{},
		deviceBy:    map[string]*Device{},
		ownedBy:     map[string][]*Device{},
		extBy:       map[string]*Extension{},
		extsOf:      map[string][]string{},
		ringTimeout: DefaultRingTimeout,
		sipRealm:    DefaultSIPRealm,

		deviceBySIPUser: map[string]*Device{},
	}}
	if err := b.build(&f); err != nil {
		return nil, err
	}
	return b.d, nil
}

// builder turns the decoded file into a Directory, one section at a
// time; each step may rely on the sections built before it.
type builder struct {
	name string
	d    *Directory

	devIdx     map[string]int // device name -> index in the file
	sipUserIdx map[string]int // SIP username -> index of its device
}

func (b *builder) errf(kind, key string, index int, format string, args ...any) error {
	where := fmt.Sprintf("%s %q", kind, key)
	if key == "" {
		where = fmt.Sprintf("%s #%d", kind, index)
	}
	return fmt.Errorf("%s: %s: %s", b.name, where, fmt.Sprintf(format, args...))
}

func (b *builder) build(f *fileSchema) error {
	b.devIdx = map[string]int{}
	b.sipUserIdx = map[string]int{}
	steps := []func(*fileSchema) error{
		b.buildSettings,
		b.buildCompanies,
		b.buildUsers,
		b.buildDevices,
		b.buildExtensions,
		b.checkDeviceExtensions,
		b.buildExternal,
	}
	for _, step := range steps {
		if err := step(f); err != nil {
			return err
		}
	}
	return nil
}

// buildSettings reads the file-wide settings.
func (b *builder) buildSettings(f *fileSchema) error {
	if f.RingTimeout != "" {
		rt, err := time.ParseDuration(f.RingTimeout)
		if err != nil || rt <= 0 {
			return fmt.Errorf("%s: ring_timeout: %q is not a positive duration", b.name, f.RingTimeout)
		}
		b.d.ringTimeout = rt
	}
	if f.SIPRealm != "" {
		if !validRealm(f.SIPRealm) {
			return fmt.Errorf("%s: sip_realm: %q must be 1 to 128 printable characters without quotes or backslashes", b.name, f.SIPRealm)
		}
		b.d.sipRealm = f.SIPRealm
	}
	return nil
}

func (b *builder) buildCompanies(f *fileSchema) error {
	d := b.d
	if len(f.Companies) == 0 {
		return fmt.Errorf("%s: no companies defined", b.name)
	}
	companyIdx := map[string]int{}
	for i, e := range f.Companies {
		if e.Name == "" {
			return b.errf("company", "", i, "missing name")
		}
		if !validIdent(e.Name) {
			return b.errf("company", e.Name, i, "name must be letters, digits, '-' or '_'")
		}
		if j, dup := companyIdx[e.Name]; dup {
			return b.errf("company", e.Name, i, "duplicate name (also defined at index %d)", j)
		}
		companyIdx[e.Name] = i
		c := &Company{Name: e.Name, DisplayName: e.DisplayName}
		if c.DisplayName == "" {
			c.DisplayName = c.Name
		}
		d.companies = append(d.companies, c)
		d.companyBy[c.Name] = c
	}
	return nil
}

func (b *builder) buildUsers(f *fileSchema) error {
	userIdx := map[string]int{}
	idIdx := map[int64]int{}
	tokenIdx := map[TokenHash]int{}
	for i, e := range f.Users {
		if e.Login == "" {
			return b.errf("user", "", i, "missing login")
		}
		if !validIdent(e.Login) {
			return b.errf("user", e.Login, i, "login must be letters, digits, '-' or '_'")
		}
		if j, dup := userIdx[e.Login]; dup {
			return b.errf("user", e.Login, i, "duplicate login (also defined at index %d)", j)
		}
		userIdx[e.Login] = i
		if e.ID <= 0 {
			return b.errf("user", e.Login, i, "id must be a positive integer")
		}
		if j, dup := idIdx[e.ID]; dup {
			return b.errf("user", e.Login, i, "duplicate id %d (also used at index %d)", e.ID, j)
		}
		idIdx[e.ID] = i
		u, err := b.buildUser(e, i)
		if err != nil {
			return err
		}
		for k, t := range e.TokenSHA256 {
			raw, err := hex.DecodeString(strings.TrimSpace(t))
			if err != nil || len(raw) != len(TokenHash{}) {
				return b.errf("user", e.Login, i, "token_sha256[%d]: want 64 hex digits (a SHA-256), got %q", k, t)
			}
			h := TokenHash(raw)
			if j, dup := tokenIdx[h]; dup {
				return b.errf("user", e.Login, i, "token_sha256[%d]: same token as user at index %d", k, j)
			}
			tokenIdx[h] = i
			u.Tokens = append(u.Tokens, h)
			b.d.userByToken[h] = u
		}
		b.d.users = append(b.d.users, u)
		b.d.userBy[u.Login] = u
	}
	return nil
}

// buildUser checks a user's role and companies.
func (b *builder) buildUser(e userEntry, i int) (*User, error) {
	role, ok := ParseRole(e.Role)
	if !ok {
		return nil, b.errf("user", e.Login, i, "bad role %q (want admin, sys-admin, company-admin or user)", e.Role)
	}
	u := &User{ID: e.ID, Login: e.Login, Name: e.Name, Role: role, Company: e.Company}
	if u.Company == "" {
		u.Company = DefaultCompany // the reference's home company default
	}
	if _, ok := b.d.companyBy[u.Company]; !ok {
		return nil, b.errf("user", e.Login, i, "unknown company %q", u.Company)
	}
	if u.Name == "" {
		u.Name = u.Login
	}
	for _, c := range e.Companies {
		if _, ok := b.d.companyBy[c]; !ok {
			return nil, b.errf("user", e.Login, i, "unknown administered company %q", c)
		}
	}
	switch {
	case role == RoleCompanyAdmin && len(e.Companies) == 0:
		return nil, b.errf("user", e.Login, i, "company-admin without companies")
	case role != RoleCompanyAdmin && len(e.Companies) > 0:
		return nil, b.errf("user", e.Login, i, "companies are only for company-admin (role is %s)", role)
	}
	u.Companies = slices.Clone(e.Companies)
	return u, nil
}

func (b *builder) buildDevices(f *fileSchema) error {
	d := b.d
	for i, e := range f.Devices {
		if e.Name == "" {
			return b.errf("device", "", i, "missing name")
		}
		if j, dup := b.devIdx[e.Name]; dup {
			return b.errf("device", e.Name, i, "duplicate name (also defined at index %d)", j)
		}
		b.devIdx[e.Name] = i
		v, err := b.buildDevice(e, i)
		if err != nil {
			return err
		}
		d.devices = append(d.devices, v)
		d.deviceBy[v.Name] = v
		if v.Owner != "" {
			d.ownedBy[v.Owner] = append(d.ownedBy[v.Owner], v)
		}
		if v.SIP != nil {
			d.deviceBySIPUser[v.SIP.Username] = v
		}
	}
	slices.SortFunc(d.devices, func(a, b *Device) int { return strings.Compare(a.Name, b.Name) })
	for _, l := range d.ownedBy {
		slices.SortFunc(l, func(a, b *Device) int { return strings.Compare(a.Name, b.Name) })
	}
	return nil
}

// buildDevice checks one device entry: its name, company, owner,
// features and SIP credentials.
func (b *builder) buildDevice(e deviceEntry, i int) (*Device, error) {
	if err := b.checkDeviceName(e, i); err != nil {
		return nil, err
	}
	if _, ok := b.d.companyBy[e.Company]; !ok {
		return nil, b.errf("device", e.Name, i, "unknown company %q", e.Company)
	}
	v := &Device{
		Name: e.Name, DisplayName: e.DisplayName, Company: e.Company, Owner: e.Owner,
		WebRTC: e.WebRTC, Extension: e.Extension, MailboxNew: e.Mailbox.New, MailboxOld: e.Mailbox.Old,
	}
	if v.DisplayName == "" {
		v.DisplayName = v.Name
	}
	if e.Mailbox.New < 0 || e.Mailbox.Old < 0 {
		return nil, b.errf("device", e.Name, i, "mailbox counts must not be negative")
	}
	if e.Owner != "" {
		if _, ok := b.d.userBy[e.Owner]; !ok {
			return nil, b.errf("device", e.Name, i, "owner %q does not exist", e.Owner)
		}
	}
	if e.WebRTC {
		u, ok := b.d.userBy[e.Owner]
		if !ok {
			return nil, b.errf("device", e.Name, i, "webrtc device needs an owner")
		}
		if want := "SIP/webrtc" + strconv.FormatInt(u.ID, 10); e.Name != want {
			return nil, b.errf("device", e.Name, i, "webrtc device of %s (id %d) must be named %q", u.Login, u.ID, want)
		}
	}
	for _, ft := range e.Features {
		switch ft {
		case "answer":
			v.Features.Answer = true
		case "hold":
			v.Features.Hold = true
		case "talk":
			v.Features.Talk = true
		default:
			return nil, b.errf("device", e.Name, i, "unknown feature %q (want answer, hold or talk)", ft)
		}
	}
	if !strings.HasPrefix(v.Name, "SIP/") && len(e.Features) > 0 {
		return nil, b.errf("device", e.Name, i, "only SIP devices have features")
	}
	if e.SIP != nil {
		a, err := b.buildSIPAccount(e, i)
		if err != nil {
			return nil, err
		}
		v.SIP = a
	}
	return v, nil
}

func (b *builder) buildExtensions(f *fileSchema) error {
	d := b.d
	extIdx := map[string]int{}
	for i, e := range f.Extensions {
		if e.Number == "" {
			return b.errf("extension", "", i, "missing number")
		}
		if !validExtNumber(e.Number) {
			return b.errf("extension", e.Number, i, "number must be 2 to 8 digits")
		}
		if j, dup := extIdx[e.Number]; dup {
			return b.errf("extension", e.Number, i, "duplicate number (also defined at index %d)", j)
		}
		extIdx[e.Number] = i
		x, err := b.buildExtension(e, i)
		if err != nil {
			return err
		}
		d.extensions = append(d.extensions, x)
		d.extBy[x.Number] = x
	}
	slices.SortFunc(d.extensions, func(a, b *Extension) int { return strings.Compare(a.Number, b.Number) })
	for k := range d.extsOf {
		slices.Sort(d.extsOf[k])
	}
	return nil
}

// buildExtension checks one extension entry against its type and records
// which devices it rings.
func (b *builder) buildExtension(e extEntry, i int) (*Extension, error) {
	d := b.d
	if _, ok := d.companyBy[e.Company]; !ok {
		return nil, b.errf("extension", e.Number, i, "unknown company %q", e.Company)
	}
	t, ok := extTypeNames[e.Type]
	if !ok {
		return nil, b.errf("extension", e.Number, i, "bad type %q (want device, ring-all, hunt, queue or park)", e.Type)
	}
	x := &Extension{Number: e.Number, Company: e.Company, Name: e.Name, Type: t, Members: slices.Clone(e.Members)}
	seen := map[string]bool{}
	for _, m := range e.Members {
		v, ok := d.deviceBy[m]
		if !ok {
			return nil, b.errf("extension", e.Number, i, "member device %q is unknown", m)
		}
		if seen[m] {
			return nil, b.errf("extension", e.Number, i, "member device %q listed twice", m)
		}
		seen[m] = true
		if !strings.HasPrefix(v.Name, "SIP/") {
			return nil, b.errf("extension", e.Number, i, "member %q is not a phone (SIP/...)", m)
		}
	}
	var own string // the device the extension itself is
	switch t {
	case ExtensionDevice:
		if len(e.Members) != 1 {
			return nil, b.errf("extension", e.Number, i, "a device extension has exactly one member, got %d", len(e.Members))
		}
	case ExtensionRingAll, ExtensionHunt:
		if len(e.Members) == 0 {
			return nil, b.errf("extension", e.Number, i, "a %s group needs members", e.Type)
		}
	case ExtensionQueue:
		own = "Queue/q_" + e.Number
	case ExtensionPark:
		own = "Park/" + e.Number
		if len(e.Members) > 0 {
			return nil, b.errf("extension", e.Number, i, "a park orbit has no members")
		}
	}
	if own != "" {
		v, ok := d.deviceBy[own]
		if !ok {
			return nil, b.errf("extension", e.Number, i, "needs device %q", own)
		}
		if v.Company != e.Company {
			return nil, b.errf("extension", e.Number, i, "device %q is in company %q, not %q", own, v.Company, e.Company)
		}
		d.extsOf[own] = append(d.extsOf[own], e.Number)
	}
	for _, m := range e.Members {
		d.extsOf[m] = append(d.extsOf[m], e.Number)
	}
	if x.Name == "" {
		x.Name = x.Number
	}
	return x, nil
}

// checkDeviceExtensions checks what needs both devices and extensions: a
// device's primary extension rings it, and every park orbit and queue
// device has its extension.
func (b *builder) checkDeviceExtensions(*fileSchema) error {
	d := b.d
	for _, v := range d.devices {
		if v.Extension == "" {
			continue
		}
		if _, ok := d.extBy[v.Extension]; !ok {
			return b.errf("device", v.Name, b.devIdx[v.Name], "extension %q is not defined", v.Extension)
		}
		if !slices.Contains(d.extsOf[v.Name], v.Extension) {
			return b.errf("device", v.Name, b.devIdx[v.Name], "extension %q does not ring this device", v.Extension)
		}
	}
	for _, v := range d.devices {
		if strings.HasPrefix(v.Name, "Park/") || strings.HasPrefix(v.Name, "Queue/") {
			if len(d.extsOf[v.Name]) == 0 {
				return b.errf("device", v.Name, b.devIdx[v.Name], "no extension defines this device")
			}
		}
	}
	return nil
}

func (b *builder) buildExternal(f *fileSchema) error {
	for i, e := range f.External {
		if e.Pattern == "" {
			return b.errf("external rule", "", i, "missing pattern")
		}
		if _, err := path.Match(e.Pattern, ""); err != nil || strings.ContainsAny(e.Pattern, "/\\") {
			return b.errf("external rule", e.Pattern, i, "bad pattern")
		}
		a, ok := ParseAction(e.Behaviour)
		if !ok {
			return b.errf("external rule", e.Pattern, i, "bad behaviour %q (want answer, busy, no-answer, reject or manual)", e.Behaviour)
		}
		r := ExternalRule{Pattern: e.Pattern, Behaviour: Behaviour{Action: a, Cause: e.Cause}}
		if e.AnswerDelay != "" {
			dl, err := time.ParseDuration(e.AnswerDelay)
			if err != nil || dl < 0 {
				return b.errf("external rule", e.Pattern, i, "answer_delay %q is not a duration", e.AnswerDelay)
			}
			r.AnswerDelay = dl
		}
		if e.Cause < 0 || e.Cause > 127 {
			return b.errf("external rule", e.Pattern, i, "cause %d is not a Q.850 cause (1-127)", e.Cause)
		}
		if e.Cause != 0 && a != ActionReject {
			return b.errf("external rule", e.Pattern, i, "cause is only for behaviour reject")
		}
		b.d.external = append(b.d.external, r)
	}
	return nil
}

func (b *builder) checkDeviceName(e deviceEntry, i int) error {
	n := e.Name
	var rest string
	switch {
	case strings.HasPrefix(n, "SIP/"):
		rest = n[len("SIP/"):]
	case strings.HasPrefix(n, "Park/"):
		rest = n[len("Park/"):]
		if !validExtNumber(rest) {
			return b.errf("device", n, i, "park orbit must be Park/<number>")
		}
	case strings.HasPrefix(n, "Queue/q_"):
		rest = n[len("Queue/q_"):]
		if !validExtNumber(rest) {
			return b.errf("device", n, i, "queue must be Queue/q_<number>")
		}
	default:
		return b.errf("device", n, i, "name must start with SIP/, Park/ or Queue/q_")
	}
	if !validIdent(rest) {
		return b.errf("device", n, i, "bad characters in name")
	}
	if strings.HasPrefix(rest, "webrtc") && !e.WebRTC {
		return b.errf("device", n, i, "SIP/webrtc<id> names are reserved for webrtc devices")
	}
	if e.WebRTC && !strings.HasPrefix(n, "SIP/") {
		return b.errf("device", n, i, "webrtc device must be SIP/webrtc<id>")
	}
	if !strings.HasPrefix(n, "SIP/") && e.Owner != "" {
		return b.errf("device", n, i, "park orbits and queues have no owner")
	}
	return nil
}

func validIdent(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}

func validExtNumber(s string) bool {
	if len(s) < 2 || len(s) > 8 {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
